"""A simulated session starts with the token it is given (a shared car's own), in its very first PUT."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from adapters.ocpi.v2_2_1.schemas import Endpoint, InterfaceRole, ModuleID, VersionDetails
from sim.cpo.clock import ManualClock
from sim.cpo.config import CpoConfig
from sim.cpo.simulator import CpoSimulator
from sim.cpo.state import Connection

START = datetime(2024, 6, 12, 16, 0, tzinfo=UTC)


def _first_puts(token_uid: str | None) -> list[dict[str, Any]]:
    """Two sessions plugged in (the first with ``token_uid``): the bodies of the PUTs queued for the peer."""
    simulator = CpoSimulator(CpoConfig(evses=2, evses_per_location=2, auto_arrivals=False, seed=5),
                             clock=ManualClock(START))
    details = VersionDetails(version="2.2.1", endpoints=[
        Endpoint(identifier=ModuleID.SESSIONS, role=InterfaceRole.RECEIVER, url="http://peer/sessions")])
    simulator.connections["in"] = Connection(incoming_token="in", outgoing_token="out",
                                             versions_url="http://peer/versions", details=details)
    first, second = list(simulator.slots.values())
    simulator.plug_in(first.evse_uid, energy_kwh=20.0, connection_hours=8.0, token_uid=token_uid)
    simulator.plug_in(second.evse_uid, energy_kwh=20.0, connection_hours=8.0)
    return [item.body for item in simulator._outbox if item.method == "PUT"]


def test_the_session_put_carries_the_given_token_and_later_draws_stay_as_they_were() -> None:
    given = _first_puts("CS000001")
    drawn = _first_puts(None)

    # The bookings name the car by this uid: a session started under a random one never met its bookings.
    assert given[0]["cdr_token"]["uid"] == "CS000001"
    assert drawn[0]["cdr_token"]["uid"] != "CS000001"
    # The random token is drawn in any case, so the next session's token is the same in both runs.
    assert given[1]["cdr_token"]["uid"] == drawn[1]["cdr_token"]["uid"]
