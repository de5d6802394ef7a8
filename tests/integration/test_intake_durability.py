"""A reading the service acknowledged survives a PostgreSQL crash: the OCPI Session intake commits durably.

The intake used to commit with ``synchronous_commit`` off (the WAL flushed up to 0.6 s later): `vpp soak` crashed
PostgreSQL twice in 12 minutes at 44 PATCH/s and 11 acknowledged readings were gone after recovery. Here a private
cluster (initdb into a temporary directory, never the machine's server) takes PATCHes and is crashed
(``pg_ctl -m immediate``) right after the last one was answered; every acknowledged reading must be there.
"""

import shutil
import tempfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from adapters.ocpi.v2_2_1.transport import format_datetime
from sim.soak.services import LocalPostgres, binaries_available
from tests.conftest import TEST_SECRET
from tests.integration.test_ocpi_support import T0, connect, session_body
from vpp.api.app import create_app
from vpp.config import Settings
from vpp.db import create_db_engine, create_session_factory, unit_of_work
from vpp.ocpi.schemas import ConnectionFlags
from vpp.sessions.tables import SessionReading
from vpp.tables import metadata

pytestmark = [
    pytest.mark.soak,
    pytest.mark.skipif(not binaries_available(), reason="needs initdb/pg_ctl (a private cluster to crash)"),
]
PATCHES = 300
PATH = "/ocpi/2.2.1/sessions/NL/CPA/S1"


@pytest.fixture
def crashable() -> Iterator[LocalPostgres]:
    root = Path(tempfile.mkdtemp(prefix="vpp-durability-"))
    root.chmod(0o711)  # the postgres user reaches its own directory inside
    cluster = LocalPostgres(root / "pg")
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.cleanup()
        shutil.rmtree(root, ignore_errors=True)


def _patch(k: int) -> dict[str, object]:
    start = T0 + timedelta(minutes=k)
    return {"charging_periods": [{"start_date_time": format_datetime(start),
                                  "dimensions": [{"type": "POWER", "volume": 11.0}]}],
            "last_updated": format_datetime(start + timedelta(minutes=1))}


def test_readings_acknowledged_right_before_a_postgres_crash_are_there_after_recovery(
    crashable: LocalPostgres, tmp_path: Path
) -> None:
    engine = create_db_engine(crashable.url)
    metadata.create_all(engine)
    factory = create_session_factory(engine)
    settings = Settings(data_dir=tmp_path, database_url=crashable.url, secret_key=TEST_SECRET)  # type: ignore[arg-type]
    app = create_app(settings, engine=engine, session_factory=factory, background=False)
    peer = connect(factory, TEST_SECRET, flags=ConnectionFlags(rate_limit_per_s=1e5, rate_limit_burst=1e5))
    acknowledged = 0
    with TestClient(app) as client:
        assert client.put(PATH, json=session_body("S1", periods=()), headers=peer.headers).status_code in (200, 201)
        for k in range(PATCHES):
            answer = client.patch(PATH, json=_patch(k), headers=peer.headers)
            assert answer.status_code == 200 and answer.json()["status_code"] == 1000
            acknowledged += 1
        crashable.restart(down_s=0.0)  # immediate: no checkpoint, no flush; recovery replays the WAL
    engine.dispose()
    engine = create_db_engine(crashable.url)
    try:
        with unit_of_work(create_session_factory(engine)) as session:
            stored = session.scalar(select(func.count()).select_from(SessionReading))
    finally:
        engine.dispose()
    assert stored == acknowledged == PATCHES
