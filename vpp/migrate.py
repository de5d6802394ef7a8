"""Run Alembic migrations programmatically (``vpp migrate``, ``vpp serve`` in embedded mode, tests)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

if TYPE_CHECKING:
    from vpp.keyring import Keyring

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    """An Alembic config pointing at our migrations and ``url``."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.set_main_option("path_separator", "os")
    return cfg


def upgrade(engine: Engine, revision: str = "head", *, token_keyring: Keyring | None = None) -> None:
    """Migrate the database behind ``engine`` up to ``revision``.

    ``token_keyring`` seals stored tokens where a migration needs it (default: from the environment's settings).
    """
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        cfg.attributes["token_keyring"] = token_keyring
        command.upgrade(cfg, revision)


def downgrade(engine: Engine, revision: str = "base", *, token_keyring: Keyring | None = None) -> None:
    """Roll the database behind ``engine`` back to ``revision``."""
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        cfg.attributes["token_keyring"] = token_keyring
        command.downgrade(cfg, revision)


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (None when never migrated)."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str | None:
    """The newest revision in the code."""
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
