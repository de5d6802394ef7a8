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


class _Backends:
    """The session's migrated database and engine per backend, made on first use and kept to the session's end.

    ``database_url`` is parametrized per backend, and a session-scoped fixture holds one value at a time: with
    ``--dist loadfile`` each file runs its SQLite tests, then its PostgreSQL ones, so the fixture went back and
    forth once per file, and every file created, migrated and dropped a PostgreSQL database and migrated a new
    SQLite file (34 files: 2-5 s each). Kept here, each backend is made and migrated once per worker; the tests
    still start from empty tables (``session_factory`` truncates after each test, as between the tests of a file)."""

    def __init__(self, tmp_path_factory: pytest.TempPathFactory) -> None:
        self.tmp_path_factory = tmp_path_factory
        self.urls: dict[str, str] = {}
        self.engines: dict[str, Engine] = {}
        self._postgres: Iterator[str] | None = None

    def url(self, backend: str) -> str:
        if backend not in self.urls:
            if backend == "sqlite":
                self.urls[backend] = f"sqlite:///{self.tmp_path_factory.mktemp('db') / 'test.sqlite3'}"
            else:
                databases = _fresh_postgres_database(require_service("VPP_TEST_DATABASE_URL", "PostgreSQL"))
                self.urls[backend] = next(databases)
                self._postgres = databases
        return self.urls[backend]

    def engine(self, url: str) -> Engine:
        if url not in self.engines:
            eng = create_db_engine(url, pool_size=5)
            migrate.upgrade(eng)
            self.engines[url] = eng
        return self.engines[url]

    def close(self) -> None:
        for eng in self.engines.values():
            eng.dispose()
        if self._postgres is not None:
            self._postgres.close()  # drops the database (the generator's finally)


@pytest.fixture(scope="session")
def _backends(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Backends]:
    backends = _Backends(tmp_path_factory)
    yield backends
    backends.close()


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, _backends: _Backends) -> str:
    """A database of each backend, fresh for this test session (migrated by the ``engine`` fixture)."""
    return _backends.url(request.param)


@pytest.fixture(scope="session")
def engine(database_url: str, _backends: _Backends) -> Engine:
    """A migrated engine, shared by the tests of one backend."""
    return _backends.engine(database_url)


def truncate_all(eng: Engine) -> None:
    """Empty every table (each test starts from a clean, migrated database)."""
    # The change marks stay (their triggers replace the tokens as the rows go): a reader that kept a frame of the
    # last test's rows reads afresh, as it would after any other write.
    # On PostgreSQL one batch of DELETEs (children first) and the sequences restarted: TRUNCATE gives every table
    # and index a new file, 0.3-0.5 s a test on a busy server against a few ms for the few rows a test leaves.
    tables = [t.name for t in reversed(metadata.sorted_tables) if t.name != "change_marks"]
    with eng.begin() as conn:
        if eng.dialect.name == "postgresql":
            conn.execute(text("; ".join(f"DELETE FROM {name}" for name in tables)))
            sequences = conn.scalars(text("SELECT sequencename FROM pg_sequences "
                                          "WHERE schemaname = current_schema() AND last_value IS NOT NULL")).all()
            if sequences:
                conn.execute(text("; ".join(f'ALTER SEQUENCE "{name}" RESTART' for name in sequences)))
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
