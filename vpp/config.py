"""Settings: every knob comes from the environment (prefix ``VPP_``), with embedded defaults.

Embedded mode (no ``VPP_REDIS_URL``, SQLite database) runs the whole service in one process with nothing
installed beside the package. Production points ``VPP_DATABASE_URL`` at PostgreSQL and ``VPP_REDIS_URL`` at
Redis; there the secrets have no usable defaults.
"""

from __future__ import annotations

import secrets
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATA_DIR = Path("var")


class Settings(BaseSettings):
    """Process configuration, read once per process by its composition root."""

    model_config = SettingsConfigDict(env_prefix="VPP_", env_file=None, extra="ignore", frozen=True)

    data_dir: Path = Field(DEFAULT_DATA_DIR, description="Where the embedded database and artefacts live.")
    database_url: str | None = Field(None, description="SQLAlchemy URL; default: SQLite file under data_dir.")
    redis_url: str | None = Field(None, description="Redis URL for broker, leases and streams; none = embedded.")
    secret_key: SecretStr | None = Field(None, description="Signs and peppers tokens; required outside embedded.")
    public_url: str = Field("http://127.0.0.1:8000", description="Base URL peers use to reach this service.")
    market_timezone: str = "Europe/Amsterdam"
    log_level: str = "INFO"
    log_format: Literal["json", "text"] = "json"
    db_pool_size: int = 10
    api_rate_limit_per_minute: int = 6000
    housekeeping_interval_seconds: float = 3600.0
    api_key_last_used_resolution_seconds: float = 60.0

    @model_validator(mode="after")
    def _secrets_required_outside_embedded(self) -> Settings:
        if not self.embedded and self.secret_key is None:
            raise ValueError(
                "VPP_SECRET_KEY must be set when VPP_REDIS_URL or a non-SQLite VPP_DATABASE_URL is configured"
            )
        return self

    @property
    def embedded(self) -> bool:
        """True when running with the embedded defaults: SQLite and the in-process worker."""
        return self.redis_url is None and self.resolved_database_url.startswith("sqlite")

    @property
    def resolved_database_url(self) -> str:
        """The database URL, defaulting to a SQLite file in the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'vpp.sqlite3').resolve()}"

    @cached_property
    def secret(self) -> str:
        """The secret used to pepper token hashes; a per-data-dir random one in embedded mode."""
        if self.secret_key is not None:
            return self.secret_key.get_secret_value()
        path = self.data_dir / "secret.key"
        if path.exists():
            return path.read_text().strip()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        value = secrets.token_urlsafe(32)
        path.write_text(value)
        path.chmod(0o600)
        return value
