"""Fixtures of the congestion tests: the service with its UFTP endpoint, a simulated DSO on real HTTP, a fixed
flexibility source. No tests here.

Until the lead's Alembic revision for the congestion tables lands, the database comes from
``metadata.create_all``: a SQLite file, and on PostgreSQL a schema of its own (``vpp_congestion_test``) so that
the migrated database of the other suites is not disturbed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from adapters.markets.uftp import generate_signing_keypair
from adapters.markets.uftp.router import DEFAULT_PATH
from sim.dso import SimulatedDso, serve
from tests.conftest import TEST_SECRET
from vpp.api.app import create_app
from vpp.config import Settings
from vpp.congestion import participants
from vpp.congestion.flexsource import StaticFlexSource, configure_flex_source, reset_flex_source
from vpp.db import unit_of_work
from workers.celery_app import get_celery_app
from workers.runtime import Runtime, set_runtime

AGR_DOMAIN = "agr.vpp.test"
DSO_DOMAIN = "dso.grid.test"
POINT = "ean.871685900012636543"
POOL = "congestion_point:871685900012636543"
DAY = date(2030, 6, 3)


@pytest.fixture
def congestion_engine(engine: Engine) -> Engine:
    """The shared migrated database of the backend under test."""
    return engine


@pytest.fixture
def factory(session_factory: sessionmaker[Session]) -> sessionmaker[Session]:
    """Sessions on the shared database, emptied after the test."""
    return session_factory


@pytest.fixture
def flex() -> Iterator[StaticFlexSource]:
    """400 kW expected on the congestion point, 150 kW of it reducible; installed as the process's source."""
    source = StaticFlexSource(prognosis_kw={POOL: 400.0}, reduction_kw={POOL: 150.0})
    configure_flex_source(lambda _session: source)
    yield source
    reset_flex_source()


class InlineTaskQueue:
    """Runs each task through Celery (eager) at once, so a test sees its effect when the call returns."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.names: list[str] = []

    def enqueue(self, task_name: str, **kwargs: Any) -> None:
        self.names.append(task_name)
        get_celery_app(self.settings).tasks[task_name].apply(kwargs=kwargs).get(propagate=True)


@dataclass
class Stack:
    """The service, its client, the simulated DSO and the DSO's endpoint URL."""

    settings: Settings
    factory: sessionmaker[Session]
    client: TestClient
    dso: SimulatedDso
    dso_url: str
    queue: InlineTaskQueue


def make_settings(tmp_path: Path, engine: Engine, **overrides: Any) -> Settings:
    """Settings of the service under test with a fresh UFTP key."""
    values: dict[str, Any] = {
        "data_dir": tmp_path,
        "database_url": engine.url.render_as_string(hide_password=False),
        "secret_key": TEST_SECRET,
        "uftp_domain": AGR_DOMAIN,
        "uftp_signing_key": generate_signing_keypair().private_key_b64,
        "uftp_offer_price_eur_per_mwh": 200.0,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def stack(
    tmp_path: Path, congestion_engine: Engine, factory: sessionmaker[Session], flex: StaticFlexSource
) -> Iterator[Stack]:
    """Our service in-process, the simulated DSO served over HTTP on localhost and registered with us."""
    settings = make_settings(tmp_path, congestion_engine)
    app = create_app(settings, engine=congestion_engine, session_factory=factory, background=False)
    queue = InlineTaskQueue(settings)
    app.state.task_queue = queue
    set_runtime(Runtime(settings=settings, session_factory=factory))
    with TestClient(app) as client:
        dso = SimulatedDso(
            domain=DSO_DOMAIN, agr_domain=AGR_DOMAIN, agr_url=f"http://testserver{DEFAULT_PATH}",
            agr_public_key_b64=settings.uftp_public_key_b64, http=client, penalty_eur_per_mw=50.0,
        )
        with serve(dso.app) as dso_url:
            with unit_of_work(factory) as session:
                participants.upsert(session, domain=DSO_DOMAIN, public_key_b64=dso.public_key_b64,
                                    endpoint_url=dso_url, congestion_points=[POINT], penalty_eur_per_mw=50.0)
            yield Stack(settings, factory, client, dso, dso_url, queue)


__all__ = ["congestion_engine", "factory", "flex", "stack"]
