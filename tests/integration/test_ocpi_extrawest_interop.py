"""Interop with a third-party CPO: extrawest-ocpi 2025.7.16 (PyPI), served on localhost against our real service.

extrawest-ocpi pins pydantic 1 and an old FastAPI, so it runs in its own venv (``VPP_EXTRAWEST_VENV``, default
``/tmp/vpp-extrawest-ocpi-venv``), built on first use. Without that venv the tests are skipped, unless CI=true.
The library leaves storage and token lists to its user: ``extrawest_cpo/cpo_app.py`` is that small shim (dicts),
plus a few unauthenticated ``/shim`` controls for the test. Its known quirks are tolerated by connection flags:

* ``trailing_slash_urls``: its push helper PUTs to ``f"{our sessions url}{CC}/{PID}/{id}"``;
* ``ignore_link_header``: its ``Link`` to the next page always says ``https://`` (the peer speaks http here);
* ``CI_STRING_LOWERCASE_PREFERENCE=False`` on its side, else it lowercases every CiString (ids, parties).
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from adapters.ocpi.v2_2_1 import registration, sync
from adapters.ocpi.v2_2_1.context import OcpiContext
from adapters.ocpi.v2_2_1.transport import format_datetime
from tests.conftest import IN_CI, TEST_SECRET, make_key
from tests.conftest import TEST_KEYRING as KEYRING
from tests.integration.test_ocpi_support import RecordingQueue
from vpp.api.app import create_app
from vpp.config import Settings
from vpp.db import unit_of_work
from vpp.ocpi import service as connections
from vpp.ocpi.schemas import ConnectionFlags
from vpp.ocpi.settings import OcpiSettings
from vpp.sessions import service as sessions

pytestmark = pytest.mark.slow

PEER_PACKAGES = ("extrawest-ocpi==2025.7.16", "uvicorn<0.30")
SHIM = Path(__file__).resolve().parent / "extrawest_cpo" / "cpo_app.py"
FLAGS = ConnectionFlags(trailing_slash_urls=True, ignore_link_header=True)
PAGE_LIMIT = 2


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _fail_or_skip(reason: str) -> None:
    if IN_CI:
        pytest.fail(reason)
    pytest.skip(reason)


def _peer_python() -> Path:
    venv = Path(os.environ.get("VPP_EXTRAWEST_VENV", "/tmp/vpp-extrawest-ocpi-venv"))
    python = venv / "bin" / "python"
    check = [str(python), "-c", "import py_ocpi, uvicorn"]
    if python.exists() and subprocess.run(check, capture_output=True, check=False).returncode == 0:
        return python
    steps = [
        [sys.executable, "-m", "venv", "--clear", str(venv)],
        [str(python), "-m", "pip", "install", "--quiet", *PEER_PACKAGES],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, timeout=900, check=False)
        if done.returncode != 0:
            _fail_or_skip(f"cannot build the extrawest-ocpi venv: {' '.join(step[:4])}: {done.stderr[-400:]}")
    return python


def _b64(token: str) -> str:
    return base64.b64encode(token.encode()).decode()


@dataclass
class Cpo:
    """The running extrawest CPO: its base URL, the token A it accepts, and its log."""

    url: str
    token_a: str
    log: Path

    @property
    def versions_url(self) -> str:
        return f"{self.url}/ocpi/versions"

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def shim(self, method: str, path: str, **kwargs: Any) -> Any:
        answer = httpx.request(method, f"{self.url}/shim/{path}", timeout=20, **kwargs)
        assert answer.status_code == 200, f"{method} /shim/{path}: {answer.text}\n{self.tail()}"
        return answer.json()

    def push_session(self, session_id: str, *, receiver_details_url: str, receiver_token: str, token: str) -> Any:
        """Its own HTTP push helper: GET the receiver's endpoints, then PUT the session there."""
        answer = httpx.post(
            f"{self.url}/push/2.2.1",
            headers={"Authorization": f"Token {_b64(token)}"},
            json={
                "module_id": "sessions",
                "object_id": session_id,
                "receivers": [{"endpoints_url": receiver_details_url, "auth_token": receiver_token}],
            },
            timeout=20,
        )
        assert answer.status_code == 200, f"push: {answer.text}\n{self.tail()}"
        (result,) = answer.json()["receiver_responses"]
        return result


@pytest.fixture(scope="module")
def cpo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cpo]:
    python = _peer_python()
    workdir = tmp_path_factory.mktemp("extrawest")
    script = workdir / "cpo_app.py"
    shutil.copy(SHIM, script)
    port, token_a = _free_port(), secrets.token_urlsafe(16)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(workdir),
        "OCPI_HOST": f"127.0.0.1:{port}",
        "PROTOCOL": "http",
        "COUNTRY_CODE": "NL",
        "PARTY_ID": "CPO",
        "CI_STRING_LOWERCASE_PREFERENCE": "False",
        "GET_ACTIVE_PROFILE_AWAIT_TIME": "1",
        "NO_PROXY": "127.0.0.1,localhost",
    }
    log = workdir / "cpo.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [str(python), str(script), str(port), token_a], cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    peer = Cpo(f"http://127.0.0.1:{port}", token_a, log)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(peer.versions_url, headers={"Authorization": f"Token {_b64(token_a)}"}).is_success:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"extrawest CPO did not start:\n{peer.tail()}")
            time.sleep(0.1)
        yield peer
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


@dataclass
class Vpp:
    """Our service on a localhost port, with a task queue that only records."""

    app: FastAPI
    url: str
    queue: RecordingQueue

    @property
    def context(self) -> OcpiContext:
        context: OcpiContext = self.app.state.ocpi_app.state.ocpi
        return context

    @property
    def details_url(self) -> str:
        return f"{self.url}/ocpi/2.2.1"


@pytest.fixture
def vpp(settings: Settings, engine: Engine, session_factory: sessionmaker[Session]) -> Iterator[Vpp]:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    app = create_app(
        settings.model_copy(update={"public_url": url}), engine=engine, session_factory=session_factory,
        background=False,
    )
    queue = RecordingQueue()
    context: OcpiContext = app.state.ocpi_app.state.ocpi
    context.task_queue = queue
    context.settings = OcpiSettings(page_limit=PAGE_LIMIT)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name=f"vpp-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started, "our service did not start"
    try:
        yield Vpp(app, url, queue)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _session(session_id: str, last_updated: datetime, *, kw: tuple[float, ...] = (7.2,), status: str = "ACTIVE",
             end: datetime | None = None) -> dict[str, Any]:
    start = last_updated - timedelta(minutes=15 * len(kw))
    periods = [
        {"start_date_time": format_datetime(start + timedelta(minutes=15 * i)),
         "dimensions": [{"type": "POWER", "volume": p}, {"type": "ENERGY", "volume": round(p / 4, 3)}]}
        for i, p in enumerate(kw)
    ]
    return {
        "country_code": "NL", "party_id": "CPO", "id": session_id,
        "start_date_time": format_datetime(start),
        "end_date_time": format_datetime(end) if end else None,
        "kwh": round(sum(kw) / 4, 3),
        "cdr_token": {"country_code": "NL", "party_id": "EMS", "uid": "RFID01", "type": "RFID",
                      "contract_id": "NL-EMS-C00001"},
        "auth_method": "WHITELIST", "location_id": "LOC1", "evse_uid": "EVSE1", "connector_id": "1",
        "currency": "EUR", "charging_periods": periods, "status": status,
        "last_updated": format_datetime(last_updated),
    }


def _stored(factory: sessionmaker[Session], connection_id: str, session_id: str) -> dict[str, Any] | None:
    with unit_of_work(factory) as db:
        row = sessions.find(db, connection_id, "nl", "cpo", session_id)
        if row is None:
            return None
        readings = sessions.readings_of(db, row.id)
        return {
            "id": row.external_id, "status": row.status, "kwh": row.energy_kwh, "end": row.end_at is not None,
            "power_kw": [r.power_kw for r in readings],
        }


def _connection(factory: sessionmaker[Session], connection_id: str) -> dict[str, Any]:
    with unit_of_work(factory) as db:
        row = connections.get_or_raise(db, connection_id)
        return {
            "status": row.status, "initiated_by": row.initiated_by, "roles": row.roles, "flags": row.flags,
            "outgoing_token": connections.outgoing_token_of(row, KEYRING),
            "endpoints": {(e["module"], e["role"]): e["url"] for e in row.endpoints or []},
        }


def _push_and_pull(cpo: Cpo, vpp: Vpp, connection_id: str, *, cpo_token: str, our_token: str) -> None:
    """The CPO pushes a session twice (its helper only PUTs), then we pull its sessions page by page."""
    factory = vpp.context.session_factory
    now = datetime.now(UTC).replace(microsecond=0)

    cpo.shim("PUT", "sessions/S-PUSH-1", json=_session("S-PUSH-1", now - timedelta(minutes=30)))
    first = cpo.push_session("S-PUSH-1", receiver_details_url=vpp.details_url, receiver_token=our_token,
                             token=cpo_token)
    assert (first["status_code"], first["response"]["status_code"]) == (201, 1000), first
    assert _stored(factory, connection_id, "S-PUSH-1") == {
        "id": "S-PUSH-1", "status": "active", "kwh": 1.8, "end": False, "power_kw": [7.2]}

    finished = _session("S-PUSH-1", now - timedelta(minutes=10), kw=(7.2, 11.0), status="COMPLETED",
                        end=now - timedelta(minutes=10))
    cpo.shim("PUT", "sessions/S-PUSH-1", json=finished)
    second = cpo.push_session("S-PUSH-1", receiver_details_url=vpp.details_url, receiver_token=our_token,
                              token=cpo_token)
    assert (second["status_code"], second["response"]["status_code"]) == (200, 1000), second
    assert _stored(factory, connection_id, "S-PUSH-1") == {
        "id": "S-PUSH-1", "status": "completed", "kwh": 4.55, "end": True, "power_kw": [7.2, 11.0]}

    # Pull: four sessions in the first window (48 h), two pages of PAGE_LIMIT; one is too old to be asked for.
    for number, age in ((1, 20), (2, 15), (3, 5)):
        cpo.shim("PUT", f"sessions/S-PULL-{number}", json=_session(f"S-PULL-{number}", now - timedelta(minutes=age)))
    cpo.shim("PUT", "sessions/S-OLD", json=_session("S-OLD", now - timedelta(days=5), status="COMPLETED"))
    counts = asyncio.run(sync.pull_sessions(vpp.context, connection_id))
    assert counts == {"created": 3, "updated": 1}, cpo.tail()
    for number in (1, 2, 3):
        assert _stored(factory, connection_id, f"S-PULL-{number}") == {
            "id": f"S-PULL-{number}", "status": "active", "kwh": 1.8, "end": False, "power_kw": [7.2]}
    assert _stored(factory, connection_id, "S-OLD") is None
    with unit_of_work(factory) as db:
        assert connections.peer_access(db, connection_id, KEYRING).sessions_pulled_at is not None


def test_we_register_with_extrawest_then_it_pushes_sessions_and_we_pull_them(cpo: Cpo, vpp: Vpp) -> None:
    cpo.shim("POST", "reset")
    connection_id = asyncio.run(registration.register_with(
        vpp.context, name="extrawest", versions_url=cpo.versions_url, token_a=cpo.token_a, flags=FLAGS))

    ours = _connection(vpp.context.session_factory, connection_id)
    assert (ours["status"], ours["initiated_by"]) == ("connected", "us")
    assert ours["roles"] == [{"role": "CPO", "country_code": "NL", "party_id": "CPO", "name": "extrawest CPO"}]
    assert ours["endpoints"][("sessions", "SENDER")] == f"{cpo.url}/ocpi/cpo/2.2.1/sessions/"
    assert ("chargingprofiles", "RECEIVER") in ours["endpoints"]
    assert ConnectionFlags.model_validate(ours["flags"]) == FLAGS
    (theirs,) = cpo.shim("GET", "registrations")
    # The CPO stored our credentials (token B, our versions URL, SCSP role) and the endpoints it read with token B.
    assert theirs["token"] == ours["outgoing_token"] != cpo.token_a
    assert theirs["credentials"]["url"] == f"{vpp.url}/ocpi/versions"
    assert theirs["credentials"]["roles"][0]["role"] == "SCSP"
    advertised = {(e["identifier"], e["role"]): e["url"] for e in theirs["endpoints"]["endpoints"]}
    assert advertised[("sessions", "RECEIVER")] == f"{vpp.url}/ocpi/2.2.1/sessions/"
    assert vpp.queue.tasks == [("ocpi.pull_sessions", {"connection_id": connection_id})]

    _push_and_pull(cpo, vpp, connection_id, cpo_token=theirs["token"], our_token=theirs["credentials"]["token"])


def test_extrawest_registers_with_us_then_it_pushes_sessions_and_we_pull_them(
    cpo: Cpo, vpp: Vpp, session_factory: sessionmaker[Session]
) -> None:
    cpo.shim("POST", "reset")
    admin = {"Authorization": f"Bearer {make_key(session_factory, 'admin', TEST_SECRET)}"}
    invited = httpx.post(f"{vpp.url}/api/v1/ocpi/connections", headers=admin, timeout=10,
                         json={"name": "extrawest", "flags": FLAGS.model_dump(exclude_none=True)})
    assert invited.status_code == 201, invited.text
    invite = invited.json()

    # The shim plays the credentials Sender (the library has no client for it); we then read the library's
    # versions and details with the token B it sent, and answer with token C.
    registered = cpo.shim("POST", "register", json={"versions_url": invite["versions_url"],
                                                    "token_a": invite["token_a"]})
    ours = _connection(session_factory, invite["connection_id"])
    assert (ours["status"], ours["initiated_by"]) == ("connected", "peer")
    assert ours["outgoing_token"] == registered["token_b"]
    assert ours["endpoints"][("sessions", "SENDER")] == f"{cpo.url}/ocpi/cpo/2.2.1/sessions/"
    assert registered["credentials"]["roles"][0]["role"] == "SCSP"
    token_c = registered["credentials"]["token"]
    # Token C works on our modules; once the CPO has called with it, token A is spent (until then a CPO that
    # missed our answer may register again with token A).
    assert httpx.get(f"{vpp.url}/ocpi/2.2.1/credentials", headers={"Authorization": f"Token {_b64(token_c)}"}
                     ).json()["data"]["token"] == token_c
    assert httpx.get(invite["versions_url"], headers={"Authorization": f"Token {_b64(invite['token_a'])}"}
                     ).status_code == 401
    assert vpp.queue.tasks == [("ocpi.pull_sessions", {"connection_id": invite["connection_id"]})]

    _push_and_pull(cpo, vpp, invite["connection_id"], cpo_token=registered["token_b"], our_token=token_c)
