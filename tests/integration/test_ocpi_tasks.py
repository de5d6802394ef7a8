import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from fastapi import FastAPI
from sqlalchemy import func, select

from sim.cpo.app import create_cpo_app, get_simulator
from sim.cpo.config import CpoConfig
from sim.cpo.simulator import CpoSimulator
from sim.cpo.state import Connection
from tests.conftest import TEST_SECRET
from tests.integration.test_ocpi_support import connect
from vpp.ocpi import service as connections
from vpp.ocpi.schemas import EndpointRef
from vpp.sessions.tables import ChargingSession
from workers.celery_app import get_celery_app
from workers.runtime import Runtime, set_runtime
from workers.schedule import periodic_jobs


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def served_cpo() -> Iterator[tuple[str, CpoSimulator]]:
    """A sim CPO served over real HTTP on a free port."""
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    app = create_cpo_app(CpoConfig(base_url=base, auto_arrivals=False, page_limit=2, evses=5, seed=3))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    yield base, get_simulator(app)
    server.should_exit = True
    thread.join(timeout=10)


def test_the_pull_task_resyncs_a_connections_locations_and_sessions_from_its_cpo(
    app: FastAPI, served_cpo: tuple[str, CpoSimulator]
) -> None:
    base, sim = served_cpo
    sim.connections["our-token"] = Connection(incoming_token="our-token", outgoing_token="-", versions_url="-")
    for _ in range(3):
        sim.plug_in(energy_kwh=20)
    module = f"{base}/ocpi/cpo/2.2.1"
    peer = connect(app.state.session_factory, TEST_SECRET, endpoints=[
        EndpointRef("sessions", "SENDER", f"{module}/sessions"),
        EndpointRef("locations", "SENDER", f"{module}/locations"),
        EndpointRef("cdrs", "SENDER", f"{module}/cdrs"),
        EndpointRef("chargingprofiles", "RECEIVER", f"{module}/chargingprofiles"),
    ])
    from vpp.db import unit_of_work
    from vpp.ocpi.tables import OcpiConnection

    with unit_of_work(app.state.session_factory) as session:
        row = session.get(OcpiConnection, peer.connection_id)
        assert row is not None
        connections.set_outgoing_token(row, "our-token", app.state.settings.token_keyring)
    set_runtime(Runtime(settings=app.state.settings, session_factory=app.state.session_factory))
    task = get_celery_app(app.state.settings).tasks["ocpi.pull_sessions"]
    first = task.apply(kwargs={"connection_id": peer.connection_id}).get()
    again = task.apply(kwargs={"connection_id": peer.connection_id}).get()
    assert first["locations"] == {"created": 1} and first["sessions"] == {"created": 3}
    assert "locations" not in again and again["sessions"] == {"updated": 3}
    with app.state.session_factory() as session:
        assert session.scalar(select(func.count()).select_from(ChargingSession)) == 3
    sim.unplug(next(iter(sim.sessions.values())).id)
    fanned_out = get_celery_app(app.state.settings).tasks["ocpi.pull_all"].apply().get()
    assert fanned_out == {"connections": [peer.connection_id]}
    from vpp.cdrs.tables import ChargeDetailRecord

    with app.state.session_factory() as session:
        assert session.scalar(select(func.count()).select_from(ChargeDetailRecord)) == 1


def test_resync_and_deadline_expiry_are_scheduled(app: FastAPI) -> None:
    jobs = {job.task_name for job in periodic_jobs(app.state.settings)}
    assert {"ocpi.pull_all", "ocpi.expire_limit_requests"} <= jobs
    assert {"ocpi.pull_sessions", "ocpi.pull_reference_data", "ocpi.pull_all", "ocpi.expire_limit_requests"} <= set(
        get_celery_app(app.state.settings).tasks
    )
