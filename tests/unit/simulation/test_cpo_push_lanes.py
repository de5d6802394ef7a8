"""A simulated CPO's pushes go out side by side in session lanes, each session's in order."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta

import httpx

from adapters.ocpi.v2_2_1.schemas import Endpoint, InterfaceRole, ModuleID, VersionDetails
from sim.cpo.clock import ManualClock
from sim.cpo.config import CpoConfig
from sim.cpo.simulator import CpoSimulator
from sim.cpo.state import Connection

START = datetime(2024, 6, 12, 16, 0, tzinfo=UTC)


def _pushes(concurrency: int) -> tuple[list[tuple[str, str, str]], int]:
    """Six sessions plugged in, an hour of 5-minute periods, then every car leaves: the requests the peer got
    (method, session id, kind) in arrival order, and the most it had in flight at once."""
    received: list[tuple[str, str, str]] = []
    in_flight = 0
    most = 0
    jitter = random.Random(3)

    async def peer(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(jitter.uniform(0.0, 0.004))
        in_flight -= 1
        path = request.url.path.rstrip("/").split("/")
        if path[1] == "cdrs":
            session_id = httpx.Response(200, content=request.content).json()["session_id"]
            received.append((request.method, session_id, "cdr"))
        else:
            received.append((request.method, path[-1], "session"))
        return httpx.Response(200, json={"status_code": 1000, "timestamp": "2024-06-12T16:00:00Z"})

    async def run() -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(peer)) as http:
            simulator = CpoSimulator(CpoConfig(evses=6, evses_per_location=3, auto_arrivals=False, period_s=300,
                                               push_concurrency=concurrency, seed=5),
                                     clock=ManualClock(START), http=http)
            details = VersionDetails(version="2.2.1", endpoints=[
                Endpoint(identifier=ModuleID.SESSIONS, role=InterfaceRole.RECEIVER, url="http://peer/sessions"),
                Endpoint(identifier=ModuleID.CDRS, role=InterfaceRole.RECEIVER, url="http://peer/cdrs")])
            simulator.connections["in"] = Connection(incoming_token="in", outgoing_token="out",
                                                     versions_url="http://peer/versions", details=details)
            for slot in list(simulator.slots.values()):
                simulator.plug_in(slot.evse_uid, energy_kwh=30.0, connection_hours=1.0)
            await simulator.run_until(START + timedelta(hours=1, minutes=5))

    asyncio.run(run())
    return received, most


def test_each_sessions_pushes_arrive_in_order_while_sessions_go_out_side_by_side() -> None:
    received, most = _pushes(concurrency=4)

    assert 1 < most <= 4
    sessions = {sid for _, sid, _ in received}
    assert len(sessions) == 6
    for sid in sessions:
        own = [(method, kind) for method, s, kind in received if s == sid]
        # The session's PUT first, its PATCHes (every period, then the completed one), its CDR last.
        assert own[0] == ("PUT", "session")
        assert own[-1] == ("POST", "cdr")
        assert set(own[1:-1]) == {("PATCH", "session")} and len(own) >= 2 + 12


def test_one_lane_sends_in_the_order_of_the_outbox() -> None:
    received, most = _pushes(concurrency=1)

    assert most == 1
    # The outbox's order: every session's PUT before any PATCH.
    kinds = [method for method, _, _ in received]
    assert kinds[:6] == ["PUT"] * 6 and "PUT" not in kinds[6:]
