"""The lean path of Session PATCH (adapters/ocpi/v2_2_1/routers/fast.py) answers exactly as the FastAPI route.

Each case is sent twice: to the API as built (lean path on) with one connection, and to the same API built with
``VPP_OCPI_FAST_SESSION_PATCH=false`` (every PATCH through the OCPI app's route) with another connection owning the
same party. Both must give the same HTTP status, envelope (timestamp aside), error headers and routing headers, and
leave the same session and readings behind.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from adapters.ocpi.v2_2_1.routers.fast import SessionPatchFastPath
from adapters.ocpi.v2_2_1.transport import format_datetime
from tests.conftest import TEST_SECRET
from tests.integration.test_ocpi_support import T0, Peer, connect, minutes, period, session_body
from vpp.api.app import create_app
from vpp.config import Settings
from vpp.observability import HTTP_REQUESTS
from vpp.ocpi.schemas import ConnectionFlags
from vpp.sessions.tables import ChargingSession, SessionReading

URL = "/ocpi/2.2.1/sessions/NL/CPA/S1"
ROUTE = "/ocpi/2.2.1/sessions/{country_code}/{party_id}/{session_id}"
UNLIMITED = ConnectionFlags(rate_limit_per_s=1e6, rate_limit_burst=1e6)


def _patch(n: int, **extra: Any) -> dict[str, Any]:
    return {"kwh": n * 1.5, "charging_periods": [period(T0 + minutes(15 * n), 7.0 + n)],
            "last_updated": format_datetime(T0 + minutes(15 * n)), **extra}


# (description, path, body or raw bytes, which headers: "peer", "none", "unknown" or "routed")
CASES: list[tuple[str, str, Any, str]] = [
    ("a fresh PATCH", URL, _patch(1), "peer"),
    ("the next one, with routing headers", URL, _patch(2, status="COMPLETED"), "routed"),
    ("a stale PATCH: fields ignored, reading kept", URL, _patch(1, kwh=99.0), "peer"),
    ("a trailing slash", URL + "/", _patch(3), "peer"),
    ("the id spelt in another case", "/ocpi/2.2.1/sessions/NL/CPA/s1", _patch(4), "peer"),
    ("no last_updated", URL, {"kwh": 1.0, "charging_periods": [period(T0 + minutes(90), 3.0)]}, "peer"),
    ("not JSON", URL, b"{not json", "peer"),
    ("JSON but not an object", URL, b"[1, 2]", "peer"),
    ("a status that does not exist", URL, _patch(5, status="EXPLODED"), "peer"),
    ("a period without dimensions", URL, {**_patch(5), "charging_periods": [{"start_date_time": "x"}]}, "peer"),
    ("an id in the body differing from the URL", URL, _patch(5, id="S2"), "peer"),
    ("a party in the body differing from the URL", URL, _patch(5, party_id="CPB"), "peer"),
    ("an explicit null location", URL, _patch(6, location_id=None), "peer"),
    ("a location id over 36 characters", URL, _patch(6, location_id="L" * 37), "peer"),
    ("an unknown session", "/ocpi/2.2.1/sessions/NL/CPA/NOPE", _patch(1), "peer"),
    ("a party the connection does not own", "/ocpi/2.2.1/sessions/NL/XXX/S1", _patch(7), "peer"),
    ("no Authorization header", URL, _patch(7), "none"),
    ("an unknown token", URL, _patch(7), "unknown"),
    ("one path segment too many", URL + "/extra", _patch(7), "peer"),
    ("one path segment too few", "/ocpi/2.2.1/sessions/NL/CPA", _patch(7), "peer"),
    ("an empty body", URL, b"", "peer"),
    ("the last good one", URL, _patch(8, kwh=12.5), "peer"),
]


def _headers(peer: Peer, kind: str) -> dict[str, str]:
    if kind == "none":
        return {}
    if kind == "unknown":
        return {"Authorization": "Token dW5rbm93bg=="}
    headers = dict(peer.headers)
    if kind == "routed":
        headers.update({"OCPI-from-country-code": "NL", "OCPI-from-party-id": "CPA",
                        "OCPI-to-country-code": "NL", "OCPI-to-party-id": "VPP"})
    return headers


def _send(client: TestClient, path: str, body: Any, headers: dict[str, str]) -> httpx.Response:
    if isinstance(body, bytes):
        return client.patch(path, content=body, headers={**headers, "Content-Type": "application/json"})
    return client.patch(path, json=body, headers=headers)


def _answer(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert body.pop("timestamp")
    kept = ("www-authenticate", "retry-after", "content-type", "ocpi-from-country-code", "ocpi-from-party-id",
            "ocpi-to-country-code", "ocpi-to-party-id")
    return {"http": response.status_code, "body": body,
            "headers": {name: response.headers[name] for name in kept if name in response.headers}}


def _stored(app: FastAPI, peer: Peer) -> dict[str, Any]:
    with app.state.session_factory() as db:
        row = db.scalars(select(ChargingSession).where(ChargingSession.connection_id == peer.connection_id)).one()
        readings = db.execute(
            select(SessionReading.start_at, SessionReading.power_kw, SessionReading.energy_kwh)
            .where(SessionReading.session_id == row.id).order_by(SessionReading.start_at)
        ).all()
        return {"kwh": row.energy_kwh, "status": row.status, "location_id": row.location_id,
                "last_updated": row.last_updated, "readings": [tuple(r) for r in readings]}


@pytest.fixture
def lean_off_app(settings: Settings, app: FastAPI, monkeypatch: pytest.MonkeyPatch) -> FastAPI:
    """The API without the lean path: every Session PATCH through the OCPI app's FastAPI route."""
    monkeypatch.setenv("VPP_OCPI_FAST_SESSION_PATCH", "false")
    return create_app(settings, engine=app.state.engine, session_factory=app.state.session_factory, background=False)


def test_the_lean_path_is_installed_inside_the_request_context_and_can_be_turned_off(
    app: FastAPI, lean_off_app: FastAPI
) -> None:
    classes = [m.cls for m in app.user_middleware]
    assert SessionPatchFastPath in classes
    assert classes.index(SessionPatchFastPath) > [c.__name__ for c in classes].index("RequestContextMiddleware")
    assert SessionPatchFastPath not in [m.cls for m in lean_off_app.user_middleware]


def test_the_lean_path_takes_only_session_patches_it_can_route(app: FastAPI) -> None:
    lean = SessionPatchFastPath(app, ocpi_app=app.state.ocpi_app)

    def params(method: str, path: str, root_path: str = "") -> tuple[str, str, str] | None:
        return lean._params({"type": "http", "method": method, "path": path, "root_path": root_path})

    assert params("PATCH", URL) == ("NL", "CPA", "S1")
    assert params("PATCH", URL + "//") == ("NL", "CPA", "S1")
    assert params("PUT", URL) is None and params("GET", URL) is None
    assert params("PATCH", URL + "/x") is None and params("PATCH", "/ocpi/2.2.1/sessions/NL//S1") is None
    assert params("PATCH", "/ocpi/2.2.1/locations/NL/CPA/L1") is None
    assert params("PATCH", URL, root_path="/behind-a-proxy") is None


def test_every_answer_and_every_write_is_the_same_as_the_routes(app: FastAPI, lean_off_app: FastAPI) -> None:
    factory = app.state.session_factory
    lean_peer = connect(factory, TEST_SECRET, name="lean", flags=UNLIMITED)
    route_peer = connect(factory, TEST_SECRET, name="route", flags=UNLIMITED)
    with TestClient(app) as lean, TestClient(lean_off_app) as route:
        for client, peer in ((lean, lean_peer), (route, route_peer)):
            assert client.put(URL, json=session_body(), headers=peer.headers).status_code == 201
        for description, path, body, kind in CASES:
            lean_answer = _answer(_send(lean, path, body, _headers(lean_peer, kind)))
            route_answer = _answer(_send(route, path, body, _headers(route_peer, kind)))
            assert lean_answer == route_answer, description
            assert _stored(app, lean_peer) == _stored(app, route_peer), description
    final = _stored(app, lean_peer)
    # the PUT's period and five new ones
    assert final["kwh"] == 12.5 and final["status"] == "completed" and len(final["readings"]) == 6


def test_rate_limits_and_connection_states_answer_the_same(app: FastAPI, lean_off_app: FastAPI) -> None:
    factory = app.state.session_factory
    slow = ConnectionFlags(rate_limit_per_s=0.001, rate_limit_burst=2)
    routed = ConnectionFlags(rate_limit_per_s=1e6, rate_limit_burst=1e6, require_routing_headers=True)
    with TestClient(app) as lean, TestClient(lean_off_app) as route:
        answers = []
        for client, name in ((lean, "lean"), (route, "route")):
            limited = connect(factory, TEST_SECRET, name=f"{name}-limited", flags=slow)
            strict = connect(factory, TEST_SECRET, name=f"{name}-strict", flags=routed)
            client.put(URL, json=session_body(), headers=limited.headers)
            answers.append([
                _answer(_send(client, URL, _patch(n), limited.headers)) for n in (1, 2)
            ] + [
                _answer(_send(client, URL, _patch(1), strict.headers)),
            ])
        assert answers[0] == answers[1]
        assert [a["http"] for a in answers[0]] == [200, 429, 200]
        assert answers[0][2]["body"]["status_code"] == 2001


def test_a_lean_patch_is_counted_under_the_routes_template(app: FastAPI, client: TestClient) -> None:
    peer = connect(app.state.session_factory, TEST_SECRET, flags=UNLIMITED)
    client.put(URL, json=session_body(), headers=peer.headers)
    counter = HTTP_REQUESTS.labels("PATCH", ROUTE, "200")
    before = counter._value.get()
    answer = client.patch(URL, json=_patch(1), headers=peer.headers)
    assert answer.json()["status_code"] == 1000 and answer.headers["x-request-id"]
    assert counter._value.get() == before + 1
