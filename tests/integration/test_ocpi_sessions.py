import asyncio
import time

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from adapters.ocpi.v2_2_1 import sync
from adapters.ocpi.v2_2_1.transport import format_datetime
from tests.conftest import TEST_SECRET
from tests.integration.test_ocpi_support import (
    T0,
    connect,
    minutes,
    period,
    session_body,
    sim_registers_with_us,
    world,
)
from vpp.ocpi.schemas import ConnectionFlags
from vpp.sessions.tables import ChargingSession, SessionReading

URL = "/ocpi/2.2.1/sessions/NL/CPA/S1"


def _readings(app: FastAPI) -> int:
    with app.state.session_factory() as session:
        return int(session.scalar(select(func.count()).select_from(SessionReading)) or 0)


def test_put_creates_then_replaces_and_get_returns_the_stored_session(app: FastAPI, client: TestClient) -> None:
    peer = connect(app.state.session_factory, TEST_SECRET)
    created = client.put(URL, json=session_body(periods=[(T0, 7.0), (T0 + minutes(15), 11.0)]), headers=peer.headers)
    assert created.status_code == 201 and "data" not in created.json()
    replaced = client.put(URL, json=session_body(last_updated=T0 + minutes(20), periods=[(T0, 3.0)], kwh=5.0),
                          headers=peer.headers)
    assert replaced.status_code == 200
    stored = client.get(URL, headers=peer.headers).json()["data"]
    assert stored["kwh"] == 5.0 and len(stored["charging_periods"]) == 1
    assert {"type": "POWER", "volume": 3.0} in stored["charging_periods"][0]["dimensions"]
    assert client.get("/ocpi/2.2.1/sessions/NL/CPA/unknown", headers=peer.headers).status_code == 404


def test_patch_appends_charging_periods_deduplicated_by_start_time(app: FastAPI, client: TestClient) -> None:
    peer = connect(app.state.session_factory, TEST_SECRET)
    client.put(URL, json=session_body(periods=[(T0, 7.0)]), headers=peer.headers)
    for n in (1, 1, 2):
        body = {
            "kwh": n * 2.0,
            "charging_periods": [period(T0, 99.0), period(T0 + minutes(15 * n), 7.0 + n, soc=40 + n)],
            "last_updated": format_datetime(T0 + minutes(15 * n)),
        }
        assert client.patch(URL, json=body, headers=peer.headers).json()["status_code"] == 1000
    periods = client.get(URL, headers=peer.headers).json()["data"]["charging_periods"]
    assert [p["start_date_time"] for p in periods] == [
        format_datetime(T0), format_datetime(T0 + minutes(15)), format_datetime(T0 + minutes(30))
    ]
    assert {"type": "POWER", "volume": 7.0} in periods[0]["dimensions"]
    assert {"type": "STATE_OF_CHARGE", "volume": 42.0} in periods[2]["dimensions"]


def test_patch_without_last_updated_is_rejected_with_2001_and_writes_nothing(
    app: FastAPI, client: TestClient
) -> None:
    peer = connect(app.state.session_factory, TEST_SECRET)
    client.put(URL, json=session_body(), headers=peer.headers)
    before = _readings(app)
    answer = client.patch(URL, json={"kwh": 9.0, "charging_periods": [period(T0 + minutes(15), 5.0)]},
                          headers=peer.headers)
    assert answer.status_code == 200 and answer.json()["status_code"] == 2001
    assert "last_updated" in answer.json()["status_message"]
    assert _readings(app) == before
    assert client.get(URL, headers=peer.headers).json()["data"]["kwh"] == 0.0


def test_a_rejected_patch_leaves_nothing_half_written(app: FastAPI, client: TestClient) -> None:
    peer = connect(app.state.session_factory, TEST_SECRET)
    client.put(URL, json=session_body(), headers=peer.headers)
    before = _readings(app)
    body = {"status": "EXPLODED", "charging_periods": [period(T0 + minutes(15), 5.0)],
            "last_updated": format_datetime(T0 + minutes(15))}
    assert client.patch(URL, json=body, headers=peer.headers).json()["status_code"] == 2001
    assert _readings(app) == before


def test_a_stale_put_does_not_overwrite_newer_data(app: FastAPI, client: TestClient) -> None:
    peer = connect(app.state.session_factory, TEST_SECRET)
    client.put(URL, json=session_body(last_updated=T0 + minutes(30), kwh=8.0), headers=peer.headers)
    stale = client.put(URL, json=session_body(last_updated=T0, kwh=1.0, status="PENDING"), headers=peer.headers)
    assert stale.status_code == 200 and "ignored" in stale.json()["status_message"]
    stale_patch = client.patch(URL, json={"kwh": 0.5, "last_updated": format_datetime(T0)}, headers=peer.headers)
    assert stale_patch.json()["status_code"] == 1000
    stored = client.get(URL, headers=peer.headers).json()["data"]
    assert stored["kwh"] == 8.0 and stored["status"] == "ACTIVE"


def test_ids_match_case_insensitively_and_keep_their_spelling(app: FastAPI, client: TestClient) -> None:
    peer = connect(app.state.session_factory, TEST_SECRET)
    client.put("/ocpi/2.2.1/sessions/NL/CPA/Sess-AbC", json=session_body("Sess-AbC"), headers=peer.headers)
    patched = client.patch("/ocpi/2.2.1/sessions/nl/cpa/SESS-abc",
                           json={"kwh": 1.0, "last_updated": format_datetime(T0 + minutes(1))}, headers=peer.headers)
    assert patched.json()["status_code"] == 1000
    stored = client.get("/ocpi/2.2.1/sessions/nl/cpa/sess-abc", headers=peer.headers).json()["data"]
    assert stored["id"] == "Sess-AbC" and stored["party_id"] == "CPA" and stored["kwh"] == 1.0


def test_a_cpo_cannot_write_sessions_of_another_party(app: FastAPI, client: TestClient) -> None:
    peer = connect(app.state.session_factory, TEST_SECRET)
    foreign = client.put("/ocpi/2.2.1/sessions/DE/XYZ/S1", json=session_body(country_code="DE", party_id="XYZ"),
                         headers=peer.headers)
    assert foreign.status_code == 404 and foreign.json()["status_code"] == 2001
    mismatch = client.put(URL, json=session_body("S2"), headers=peer.headers)
    assert mismatch.status_code == 200 and mismatch.json()["status_code"] == 2001
    with app.state.session_factory() as session:
        assert session.scalar(select(func.count()).select_from(ChargingSession)) == 0


def test_a_patch_of_an_unknown_session_is_404(app: FastAPI, client: TestClient) -> None:
    peer = connect(app.state.session_factory, TEST_SECRET)
    answer = client.patch(URL, json={"kwh": 1.0, "last_updated": format_datetime(T0)}, headers=peer.headers)
    assert answer.status_code == 404 and answer.json()["status_code"] == 2000


def test_a_lenient_peer_may_patch_without_last_updated(app: FastAPI, client: TestClient) -> None:
    peer = connect(app.state.session_factory, TEST_SECRET, flags=ConnectionFlags(lenient_last_updated=True))
    client.put(URL, json=session_body(), headers=peer.headers)
    assert client.patch(URL, json={"kwh": 3.0}, headers=peer.headers).json()["status_code"] == 1000


def test_sessions_pushed_and_pulled_from_the_sim_cpo_arrive_with_their_readings(app: FastAPI) -> None:
    w = world(app, page_limit=2, evses=6, period_s=900)

    async def run() -> dict[str, int]:
        connection_id = await sim_registers_with_us(w, TEST_SECRET)
        for _ in range(5):
            w.sim.plug_in(energy_kwh=30)
        await w.sim.flush()
        await w.sim.step(1800)
        counts = await sync.pull_sessions(w.context, connection_id, http=w.http, date_from=T0.replace(year=2000))
        await w.close()
        return counts

    counts = asyncio.run(run())
    assert counts == {"updated": 5}
    with app.state.session_factory() as session:
        assert session.scalar(select(func.count()).select_from(ChargingSession)) == 5
        powers = session.scalars(select(SessionReading.power_kw)).all()
    assert len(powers) == 10 and all(p is not None and p > 0 for p in powers)


def test_a_thousand_sessions_with_readings_are_visible_to_traders(
    app: FastAPI, client: TestClient, trader_headers: dict[str, str]
) -> None:
    unlimited = ConnectionFlags(rate_limit_per_s=1e6, rate_limit_burst=1e6)
    peer = connect(app.state.session_factory, TEST_SECRET, parties=[("NL", "CPA"), ("NL", "CPB")], flags=unlimited)
    started = time.perf_counter()
    for n in range(1000):
        party = "CPA" if n % 2 else "CPB"
        body = session_body(f"S{n:04d}", party_id=party, location_id=f"LOC{n % 10}",
                            status="ACTIVE" if n % 4 else "COMPLETED",
                            periods=[(T0 + minutes(15 * k), 3.0 + k) for k in range(3)])
        answer = client.put(f"/ocpi/2.2.1/sessions/NL/{party}/S{n:04d}", json=body, headers=peer.headers)
        assert answer.status_code == 201
    assert time.perf_counter() - started < 60
    page = client.get("/api/v1/sessions", params={"limit": 50, "offset": 100}, headers=trader_headers).json()
    assert page["total"] == 1000 and len(page["items"]) == 50 and page["offset"] == 100
    active = client.get("/api/v1/sessions", params={"status": "active", "cpo": "cpo", "location": "loc3"},
                        headers=trader_headers).json()
    assert active["total"] == 100 and {s["location_id"] for s in active["items"]} == {"LOC3"}
    party = client.get("/api/v1/sessions", params={"cpo": "NL/CPB", "limit": 1}, headers=trader_headers).json()
    assert party["total"] == 500
    detail = client.get(f"/api/v1/sessions/{page['items'][0]['id']}", headers=trader_headers).json()
    assert [r["power_kw"] for r in detail["readings"]] == [3.0, 4.0, 5.0]
    assert client.get("/api/v1/sessions/nope", headers=trader_headers).status_code == 404
    assert client.get("/api/v1/sessions").status_code == 401


def test_a_stale_patch_keeps_the_newer_fields_but_its_readings_are_kept(app: FastAPI, client: TestClient) -> None:
    peer = connect(app.state.session_factory, TEST_SECRET)
    client.put(URL, json=session_body(last_updated=T0 + minutes(60), kwh=8.0), headers=peer.headers)
    late = {"kwh": 2.0, "status": "COMPLETED", "charging_periods": [period(T0 + minutes(15), 6.0)],
            "last_updated": format_datetime(T0 + minutes(15))}
    answer = client.patch(URL, json=late, headers=peer.headers).json()
    assert answer["status_code"] == 1000 and "ignored" in answer["status_message"]
    stored = client.get(URL, headers=peer.headers).json()["data"]
    assert stored["kwh"] == 8.0 and stored["status"] == "ACTIVE"
    assert [p["start_date_time"] for p in stored["charging_periods"]] == [format_datetime(T0),
                                                                          format_datetime(T0 + minutes(15))]
    ended = {"kwh": 9.5, "status": "COMPLETED", "end_date_time": format_datetime(T0 + minutes(90)),
             "last_updated": format_datetime(T0 + minutes(90))}
    assert client.patch(URL, json=ended, headers=peer.headers).json()["status_code"] == 1000
    final = client.get(URL, headers=peer.headers).json()["data"]
    assert (final["kwh"], final["status"], final["end_date_time"]) == (9.5, "COMPLETED",
                                                                       format_datetime(T0 + minutes(90)))


def test_concurrent_patches_of_one_session_lose_no_reading_and_keep_the_newest_fields(app: FastAPI) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from vpp.db import unit_of_work
    from vpp.sessions import service as sessions
    from vpp.sessions.values import Reading, SessionChanges

    peer = connect(app.state.session_factory, TEST_SECRET)
    with TestClient(app) as client:
        client.put(URL, json=session_body(periods=[]), headers=peer.headers)

    def patch(n: int) -> str:
        changes = SessionChanges(fields={"energy_kwh": float(n)}, last_updated=T0 + minutes(n),
                                 readings=(Reading(T0 + minutes(5 * n), power_kw=float(n), extra={"n": n}),))
        with unit_of_work(app.state.session_factory) as session:
            return sessions.update_alone(session, peer.connection_id, "NL", "CPA", "S1", changes)

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(patch, range(1, 41)))
    assert set(outcomes) <= {"updated", "stale"} and "updated" in outcomes
    with app.state.session_factory() as session:
        row = session.scalars(select(ChargingSession)).one()
        readings = list(session.scalars(select(SessionReading).order_by(SessionReading.start_at)))
    assert row.energy_kwh == 40.0 and row.last_updated == T0 + minutes(40)
    assert [r.power_kw for r in readings] == [float(n) for n in range(1, 41)]
    assert readings[6].extra == {"n": 7}
