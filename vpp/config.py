"""Settings: every knob comes from the environment (prefix ``VPP_``), with embedded defaults.

Embedded mode (no ``VPP_REDIS_URL``, SQLite database) runs the whole service in one process with nothing
installed beside the package. Production points ``VPP_DATABASE_URL`` at PostgreSQL and ``VPP_REDIS_URL`` at
Redis; there the secrets have no usable defaults.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from vpp.keyring import Keyring

DEFAULT_DATA_DIR = Path("var")


class Settings(BaseSettings):
    """Process configuration, read once per process by its composition root."""

    model_config = SettingsConfigDict(env_prefix="VPP_", env_file=None, extra="ignore", frozen=True)

    data_dir: Path = Field(DEFAULT_DATA_DIR, description="Where the embedded database and artefacts live.")
    database_url: str | None = Field(None, description="SQLAlchemy URL; default: SQLite file under data_dir.")
    redis_url: str | None = Field(None, description="Redis URL for broker, leases and streams; none = embedded.")
    secret_key: SecretStr | None = Field(None, description="Signs and peppers tokens; required outside embedded.")
    token_key: SecretStr | None = Field(
        None, description="Base64 SecretBox key sealing tokens we present to CPOs (`vpp secrets generate-key`); "
        "default: derived from VPP_SECRET_KEY.")
    token_keys_previous: SecretStr | None = Field(
        None, description="Comma-separated older token keys, accepted for decryption during a key rotation.")
    public_url: str = Field("http://127.0.0.1:8000", description="Base URL peers use to reach this service.")
    market_timezone: str = "Europe/Amsterdam"
    log_level: str = "INFO"
    log_format: Literal["json", "text"] = "json"
    db_pool_size: int = 10
    api_rate_limit_per_minute: int = Field(6000, ge=1, description="Requests a minute per API key (per process).")
    api_rate_limit_per_role: dict[str, int] = Field(
        default_factory=dict, description='Per-role limits overriding the default, JSON: {"market": 60000}.')
    housekeeping_interval_seconds: float = 3600.0
    partition_retention_days: int = Field(
        90, ge=7, description="PostgreSQL: days of readings and 4-second dispatch rows kept; a day's partitions are "
        "dropped after this only once every day settlement reads them for is settled.")
    partition_ahead_days: int = Field(7, ge=1, description="PostgreSQL: daily partitions created this far ahead.")
    partition_interval_seconds: float = Field(3600.0, description="How often beat runs the partition job.")
    api_key_last_used_resolution_seconds: float = 60.0
    uftp_domain: str = Field("agr.vpp.localhost", description="Our UFTP (Shapeshifter) domain in the AGR role.")
    uftp_signing_key: SecretStr | None = Field(
        None, description="Base64 libsodium Ed25519 secret key (64 bytes); generated under data_dir if embedded."
    )
    uftp_offer_reliability: float = Field(0.95, description="Offer the reduction available at this reliability.")
    uftp_offer_price_eur_per_mwh: float = Field(200.0, description="Price of offered reduction energy.")
    uftp_offer_price_eur_per_mw: float = Field(0.0, description="Price per MW of offered reduction and ISP.")
    uftp_outbox_interval_seconds: float = 10.0
    uftp_retry_base_seconds: float = 10.0
    uftp_retry_max_delay_seconds: float = 900.0
    uftp_retry_give_up_seconds: float = Field(3600.0, description="Retry a message at least this long.")
    uftp_d_prognosis_interval_seconds: float = 3600.0
    plan_imbalance_eur_per_mwh: float = Field(
        50.0, ge=0.0, description="Planner's price of every MWh off the committed day-ahead position (either way).")
    end_soc_smallest_battery_kwh: float = Field(
        32.0, gt=0, description="The smallest battery a car without a state of charge may have (the shipped EV "
        "models' smallest): a need that would leave such a car above its learned end of charge is planned full.")
    end_soc_least_arrival_soc: float = Field(
        0.05, ge=0, lt=1, description="The least state of charge (fraction) a car is taken to arrive with.")
    end_soc_first_read_per_cpo: int = Field(
        500, ge=1, description="The first read of the learned end of charge judges at most this many of each "
        "CPO's newest completed sessions.")
    dispatch_interval_seconds: float = Field(4.0, description="Dispatcher cycle period per pool (aFRR step).")
    dispatch_deadband_kw: float = Field(0.5, description="A session limit is resent only beyond this change ...")
    dispatch_deadband_pct: float = Field(5.0, description="... and beyond this share of the previous limit.")
    dispatch_send_timeout_seconds: float = Field(3.0, description="Time box of one batch of limits to a CPO.")
    dispatch_snapshot_max_age_seconds: float = Field(
        10.0, description="How old the fleet read a cycle plans with may be; it is read again between cycles.")
    dispatch_lease_ttl_seconds: float = Field(
        6.0, description="Pool lease lifetime; renewed every third of it. A dead dispatcher's pools are re-owned "
                         "within about TTL + TTL/3 + one cycle (the soak's goal: 10 s).")
    dispatch_unavailable_seconds: float = Field(60.0, description="How long a failed session sits out.")
    dispatch_too_often_backoff_seconds: float = Field(30.0, description="Backoff after TOO_OFTEN without a hint.")
    dispatch_follow_cycles: int = Field(4, description="Cycles off its limit before a session is discounted.")
    dispatch_follow_tolerance_kw: float = Field(1.0, description="Measured minus limit above this is off-limit.")
    afrr_setpoint_max_age_seconds: float = Field(60.0, description="An older latest setpoint counts as zero.")
    dispatch_plan_floors: bool = Field(
        True, description="Hold a planned car at its plan below its even pace while its laxity (taper and the "
                          "least a car may draw included) allows: the plan's price response (docs/scenarios.md); "
                          "off: each car at least at its even pace.")
    bids_dayahead_min_price_eur_per_mwh: float = Field(-500.0, description="Harmonised SDAC minimum price.")
    bids_dayahead_max_price_eur_per_mwh: float = Field(4000.0, description="Harmonised SDAC maximum price.")
    bids_dayahead_area_code: str = "NL"
    bids_dayahead_portfolio: str = "VPP-EV"
    bids_dayahead_build_from_hour: int = Field(8, description="Beat builds day-ahead drafts from this local hour.")
    bids_forecast_weeks: int = Field(4, description="Same-weekday weeks averaged by the price forecast.")
    bids_reliability: float = Field(0.9, description="Reliability quantile of forecast sessions in bids.")
    bids_afrr_product_hours: int = Field(4, description="aFRR capacity product length.")
    bids_afrr_energy_price_limit_eur_per_mwh: float = Field(15000.0, description="aFRR energy price limit (+/-).")
    bids_afrr_margin_eur_per_mwh: float = Field(10.0, description="Default margin on aFRR energy bids.")
    bids_afrr_capacity_margin_eur_per_mw_per_h: float = Field(5.0, description="Default aFRR capacity price margin.")
    bids_afrr_energy_lead_hours: int = Field(1, description="Beat builds aFRR energy drafts this far ahead.")
    bids_bsp_eic: str = Field("10XVPP-AGGREG--X", description="Our EIC as balancing service provider.")
    bids_tso_eic: str = Field("10X1001A1001A361", description="EIC of the connecting TSO (TenneT NL).")
    bids_afrr_domain_eic: str = Field("10YNL----------L", description="EIC of the aFRR acquiring domain.")
    bids_build_interval_seconds: float = Field(900.0, description="How often beat builds bid drafts.")

    @model_validator(mode="after")
    def _secrets_required_outside_embedded(self) -> Settings:
        if not self.embedded and self.secret_key is None:
            raise ValueError(
                "VPP_SECRET_KEY must be set when VPP_REDIS_URL or a non-SQLite VPP_DATABASE_URL is configured"
            )
        if self.token_key is not None:
            from vpp.keyring import parse_key

            parse_key(self.token_key.get_secret_value())
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
        return self._data_dir_secret("secret.key", lambda: secrets.token_urlsafe(32))

    @cached_property
    def token_keyring(self) -> Keyring:
        """The keys sealing outgoing OCPI tokens: VPP_TOKEN_KEY (or one derived from the secret) and older ones."""
        from vpp.keyring import Keyring, derive_key, parse_key

        derived = derive_key(self.secret)
        if self.token_key is None:
            current = derived
            previous: list[bytes] = []
        else:
            current = parse_key(self.token_key.get_secret_value())
            previous = [derived]
        if self.token_keys_previous is not None:
            previous = [parse_key(k) for k in self.token_keys_previous.get_secret_value().split(",") if k.strip()]
            previous.append(derived)
        return Keyring.of(current, previous)

    @cached_property
    def uftp_private_key_b64(self) -> str:
        """Our UFTP signing key; a per-data-dir generated one in embedded mode."""
        if self.uftp_signing_key is not None:
            return self.uftp_signing_key.get_secret_value()
        if not self.embedded and not (self.data_dir / "uftp_signing.key").exists():
            raise ValueError("VPP_UFTP_SIGNING_KEY must be set when not running embedded (see `vpp uftp keygen`)")
        from nacl.bindings import crypto_sign_keypair

        return self._data_dir_secret(
            "uftp_signing.key", lambda: base64.b64encode(crypto_sign_keypair()[1]).decode("ascii")
        )

    def _data_dir_secret(self, name: str, generate: Callable[[], str]) -> str:
        """A secret kept in the data directory: read it, or generate and store it (mode 600) on first use."""
        path = self.data_dir / name
        if path.exists():
            return path.read_text().strip()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        value = generate()
        path.write_text(value)
        path.chmod(0o600)
        return value

    @property
    def uftp_public_key_b64(self) -> str:
        """The public half of our UFTP key (libsodium secret keys end with it)."""
        return base64.b64encode(base64.b64decode(self.uftp_private_key_b64)[32:]).decode("ascii")
