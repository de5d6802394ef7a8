"""Shared fixtures: a migrated database per backend (SQLite always, PostgreSQL when configured), apps, keys.

Integration tests that take ``database_url`` (directly or through ``app``/``client``) run once per backend.
PostgreSQL runs when ``VPP_TEST_DATABASE_URL`` is set and Redis tests when ``VPP_TEST_REDIS_URL`` is set; under
``CI=true`` an unset or unreachable service fails the test instead of skipping it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, make_url, text
from sqlalchemy.orm import Session, sessionmaker

from vpp import migrate
from vpp.api.app import create_app
from vpp.apikeys import service as apikeys
from vpp.config import Settings
from vpp.db import create_db_engine, create_session_factory, unit_of_work
from vpp.dispatch.service import LIMITS_SENT
from vpp.keyring import Keyring, derive_key
from vpp.portfolio.end_soc import END_SOC
from vpp.tables import metadata

IN_CI = os.environ.get("CI", "").lower() == "true"
TEST_SECRET = "test-secret-not-for-production"
# What Settings(secret_key=TEST_SECRET) seals outgoing OCPI tokens with (no VPP_TOKEN_KEY: derived from the secret).
TEST_KEYRING = Keyring.of(derive_key(TEST_SECRET))


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist each worker flushes and fills a Redis database of its own (15, 13, 12, ...; 14 is
    tests/e2e/test_deploy_local.py's stack), so one worker's flush never empties another's streams and leases.
    PostgreSQL needs nothing: every run of ``_fresh_postgres_database`` makes its own database."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    url = os.environ.get("VPP_TEST_REDIS_URL")
    if url and worker.startswith("gw") and worker[2:].isdigit() and int(worker[2:]) > 0:
        database = 14 - int(worker[2:])
        assert database >= 0, f"Redis has 16 databases: too many xdist workers ({worker})"
        os.environ["VPP_TEST_REDIS_URL"] = urlsplit(url)._replace(path=f"/{database}").geturl()


def require_service(env_var: str, what: str) -> str:
    """The URL of a test service, or a skip (a failure under CI) when it is not configured."""
    url = os.environ.get(env_var)
    if not url:
        if IN_CI:
            pytest.fail(f"{env_var} must be set in CI: the suite runs against real {what}")
        pytest.skip(f"{env_var} not set: {what} tests skipped")
    return url


def _fresh_postgres_database(url: str) -> Iterator[str]:
    """A new, empty database on the configured server for this test run, dropped afterwards.

    Each run gets its own database, so concurrent runs (two developers, a developer and CI) never share state.
    """
    base = make_url(url)
    name = f"{base.database or 'vpp_test'}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        admin.dispose()
        if IN_CI:
            pytest.fail(f"PostgreSQL at {url} is unreachable: {exc}")
        pytest.skip(f"PostgreSQL unreachable: {exc}")
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh database of each backend (migrated by the ``engine`` fixture)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.sqlite3'}"
        return
    yield from _fresh_postgres_database(require_service("VPP_TEST_DATABASE_URL", "PostgreSQL"))


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    """A migrated engine, shared by the tests of one backend."""
    eng = create_db_engine(database_url, pool_size=5)
    migrate.upgrade(eng)
    yield eng
    eng.dispose()


def truncate_all(eng: Engine) -> None:
    """Empty every table (each test starts from a clean, migrated database)."""
    # The change marks stay (their triggers replace the tokens as the rows go): a reader that kept a frame of the
    # last test's rows reads afresh, as it would after any other write.
    tables = [t.name for t in reversed(metadata.sorted_tables) if t.name != "change_marks"]
    with eng.begin() as conn:
        if eng.dialect.name == "postgresql":
            conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for name in tables:
                conn.execute(text(f"DELETE FROM {name}"))


@pytest.fixture
def session_factory(engine: Engine) -> Iterator[sessionmaker[Session]]:
    """A session factory on the migrated database, emptied after the test (with what was learned from it)."""
    yield create_session_factory(engine)
    truncate_all(engine)
    END_SOC.clear()
    LIMITS_SENT.clear()


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    """Settings for the backend under test, without Redis."""
    return Settings(data_dir=tmp_path, database_url=database_url, secret_key=TEST_SECRET)  # type: ignore[arg-type]


@pytest.fixture
def app(settings: Settings, engine: Engine, session_factory: sessionmaker[Session]) -> FastAPI:
    """The API on the backend under test, without background threads."""
    return create_app(settings, engine=engine, session_factory=session_factory, background=False)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    """An HTTP client for the app."""
    with TestClient(app) as test_client:
        yield test_client


def make_key(factory: sessionmaker[Session], role: str, pepper: str = TEST_SECRET) -> str:
    """Create an API key of ``role`` and return it."""
    with unit_of_work(factory) as session:
        _row, key = apikeys.create(session, name=f"test {role}", role=role, pepper=pepper)
    return key


@pytest.fixture
def admin_headers(session_factory: sessionmaker[Session]) -> dict[str, str]:
    """Authorization headers of an admin key."""
    return {"Authorization": f"Bearer {make_key(session_factory, 'admin')}"}


@pytest.fixture
def trader_headers(session_factory: sessionmaker[Session]) -> dict[str, str]:
    """Authorization headers of a trader key."""
    return {"Authorization": f"Bearer {make_key(session_factory, 'trader')}"}


@pytest.fixture(scope="session")
def redis_url() -> str:
    """A reachable Redis (database 15, or the xdist worker's own, flushed), or a skip (a failure under CI)."""
    import redis

    url = require_service("VPP_TEST_REDIS_URL", "Redis")
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=2)
        client.ping()
        client.flushdb()
        client.close()
    except Exception as exc:
        if IN_CI:
            pytest.fail(f"Redis at {url} is unreachable: {exc}")
        pytest.skip(f"Redis unreachable: {exc}")
    return url
