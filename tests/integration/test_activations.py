"""aFRR setpoint intake, DSO limits and the pool response over HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from tests.conftest import make_key
from vpp.activations.tables import AfrrSetpoint, PoolResponse
from vpp.commitments import service as commitments
from vpp.db import unit_of_work
from vpp.dispatch import service as dispatch
from vpp.domain.commitments import CommitmentKind, CommitmentValue
from vpp.tables import metadata
from workers.bus import InProcessActivationBus

ISP = datetime(2025, 6, 2, 10, 0, tzinfo=UTC)
POOL = "zone:NL"


@pytest.fixture(autouse=True)
def _tables(engine: Engine) -> None:
    """Until the migration of these tables lands, create the missing ones (a no-op afterwards)."""
    metadata.create_all(engine)


@pytest.fixture
def market_headers(session_factory: sessionmaker[Session]) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_key(session_factory, 'market')}"}


@pytest.fixture
def dso_headers(session_factory: sessionmaker[Session]) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_key(session_factory, 'dso')}"}


@pytest.fixture
def awarded(session_factory: sessionmaker[Session]) -> None:
    with unit_of_work(session_factory) as session:
        commitments.record(session, [
            CommitmentValue(pool=POOL, isp_start=ISP, kind=CommitmentKind.AFRR_CAPACITY_UP, power_kw=2000.0,
                            source="test", reference="award-1"),
            CommitmentValue(pool=POOL, isp_start=ISP, kind=CommitmentKind.AFRR_CAPACITY_DOWN, power_kw=1000.0,
                            source="test", reference="award-1"),
        ])


def _setpoint(seq: int, mw: float, pool: str = POOL) -> dict[str, Any]:
    return {"pool": pool, "seq": seq, "timestamp": (ISP + timedelta(seconds=4 * seq)).isoformat(),
            "setpoint_mw": mw}


def _events(client: TestClient) -> list[Any]:
    bus = client.app.state.activation_bus  # type: ignore[attr-defined]
    assert isinstance(bus, InProcessActivationBus)
    with bus._lock:
        events = list(bus._events)
        bus._events.clear()
    return events


@pytest.mark.usefixtures("awarded")
def test_a_setpoint_is_stored_acknowledged_and_published(client: TestClient, market_headers: dict[str, str],
                                                        session_factory: sessionmaker[Session]) -> None:
    answer = client.post("/api/v1/market/afrr/setpoints", json=_setpoint(1, 1.5), headers=market_headers)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["setpoint_mw"] == 1.5 and not body["clipped"] and not body["duplicate"] and not body["stale"]
    assert [(e.kind, e.pool, e.seq) for e in _events(client)] == [("setpoint", POOL, 1)]
    with unit_of_work(session_factory) as session:
        latest = dispatch.latest_setpoint(session, POOL)
    assert latest is not None and latest.seq == 1 and latest.setpoint_mw == 1.5


@pytest.mark.usefixtures("awarded")
def test_a_setpoint_beyond_the_award_is_clipped_and_flagged(client: TestClient,
                                                            market_headers: dict[str, str]) -> None:
    up = client.post("/api/v1/market/afrr/setpoints", json=_setpoint(1, 5.0), headers=market_headers).json()
    down = client.post("/api/v1/market/afrr/setpoints", json=_setpoint(2, -5.0), headers=market_headers).json()
    assert (up["requested_mw"], up["setpoint_mw"], up["clipped"]) == (5.0, 2.0, True)
    assert (down["setpoint_mw"], down["clipped"]) == (-1.0, True)


@pytest.mark.usefixtures("awarded")
def test_a_repeated_seq_is_acknowledged_and_ignored(client: TestClient, market_headers: dict[str, str]) -> None:
    client.post("/api/v1/market/afrr/setpoints", json=_setpoint(7, 1.0), headers=market_headers)
    _events(client)
    again = client.post("/api/v1/market/afrr/setpoints", json=_setpoint(7, 1.9), headers=market_headers)
    assert again.status_code == 200
    assert again.json()["duplicate"] is True and again.json()["setpoint_mw"] == 1.0
    assert _events(client) == []


@pytest.mark.usefixtures("awarded")
def test_an_older_seq_is_stored_but_never_overrides_a_newer_one(
    client: TestClient, market_headers: dict[str, str], session_factory: sessionmaker[Session]
) -> None:
    client.post("/api/v1/market/afrr/setpoints", json=_setpoint(10, 1.0), headers=market_headers)
    late = client.post("/api/v1/market/afrr/setpoints", json=_setpoint(9, -0.5), headers=market_headers).json()
    assert late["stale"] is True and late["duplicate"] is False
    with unit_of_work(session_factory) as session:
        latest = dispatch.latest_setpoint(session, POOL)
    assert latest is not None and (latest.seq, latest.setpoint_mw) == (10, 1.0)


def test_an_unknown_pool_is_404_with_a_reason(client: TestClient, market_headers: dict[str, str]) -> None:
    answer = client.post("/api/v1/market/afrr/setpoints", json=_setpoint(1, 1.0, "zone:XX"), headers=market_headers)
    assert answer.status_code == 404
    assert "zone:XX" in answer.json()["error"]["message"]


def test_a_malformed_pool_is_422(client: TestClient, market_headers: dict[str, str]) -> None:
    answer = client.post("/api/v1/market/afrr/setpoints", json=_setpoint(1, 1.0, "nopool"), headers=market_headers)
    assert answer.status_code == 422


def test_a_seq_beyond_json_safe_integers_is_422_not_a_server_error(client: TestClient,
                                                                   market_headers: dict[str, str]) -> None:
    # Found by schemathesis' stateful phase: on PostgreSQL the one-statement write sent it to a BIGINT (500).
    for pool in (POOL, "zone:XX"):
        body = {**_setpoint(1, 1.0, pool), "seq": 2**63}  # 2**53 and more: refused alike
        answer = client.post("/api/v1/market/afrr/setpoints", json=body, headers=market_headers)
        assert answer.status_code == 422, answer.text


def test_the_wrong_role_is_403(client: TestClient, trader_headers: dict[str, str],
                               dso_headers: dict[str, str], market_headers: dict[str, str]) -> None:
    assert client.post("/api/v1/market/afrr/setpoints", json=_setpoint(1, 1.0),
                       headers=trader_headers).status_code == 403
    assert client.post("/api/v1/market/afrr/setpoints", json=_setpoint(1, 1.0),
                       headers=dso_headers).status_code == 403
    limit = {"congestion_point": "871685900000000001", "start": ISP.isoformat(),
             "end": (ISP + timedelta(minutes=30)).isoformat(), "max_kw": 100.0}
    assert client.post("/api/v1/dso/limits", json=limit, headers=market_headers).status_code == 403
    params = {"pool": POOL, "start": ISP.isoformat(), "end": (ISP + timedelta(hours=1)).isoformat()}
    assert client.get("/api/v1/market/afrr/response", params=params, headers=dso_headers).status_code == 403


def test_a_dso_limit_becomes_congestion_commitments_and_wakes_the_dispatcher(
    client: TestClient, dso_headers: dict[str, str], session_factory: sessionmaker[Session]
) -> None:
    body = {"congestion_point": "871685900000000001", "start": (ISP + timedelta(minutes=5)).isoformat(),
            "end": (ISP + timedelta(minutes=30)).isoformat(), "max_kw": 250.0}
    answer = client.post("/api/v1/dso/limits", json=body, headers=dso_headers)
    assert answer.status_code == 201, answer.text
    recorded = answer.json()
    assert recorded["id"].startswith("dso-limit:") and recorded["kind"] == "congestion_limit"
    assert recorded["pools"] == ["congestion_point:871685900000000001"] and len(recorded["isps"]) == 2
    assert [e.kind for e in _events(client)] == ["limits_changed"]
    with unit_of_work(session_factory) as session:
        limits = dispatch.limits_for(session, POOL, ISP + timedelta(minutes=20))
    assert limits.congestion_max_kw == {"congestion_point:871685900000000001": 250.0}


def test_a_reduction_is_a_flex_order_and_both_or_neither_is_422(client: TestClient,
                                                                dso_headers: dict[str, str]) -> None:
    base = {"congestion_point": "congestion_point:EAN1", "start": ISP.isoformat(),
            "end": (ISP + timedelta(minutes=15)).isoformat()}
    answer = client.post("/api/v1/dso/limits", json={**base, "reduction_kw": 40.0}, headers=dso_headers)
    assert answer.status_code == 201 and answer.json()["kind"] == "flex_order"
    both = client.post("/api/v1/dso/limits", json={**base, "reduction_kw": 1.0, "max_kw": 2.0}, headers=dso_headers)
    assert both.status_code == 422
    assert client.post("/api/v1/dso/limits", json=base, headers=dso_headers).status_code == 422


def test_a_curtailment_caps_devices_never_below_the_14a_floor(client: TestClient,
                                                              dso_headers: dict[str, str]) -> None:
    base = {"start": ISP.isoformat(), "end": (ISP + timedelta(minutes=15)).isoformat()}
    answer = client.post("/api/v1/dso/curtailments", json={**base, "devices": ["S1", "site:S2"],
                                                           "max_kw_per_device": 4.2}, headers=dso_headers)
    assert answer.status_code == 201, answer.text
    assert answer.json()["pools"] == ["site:S1", "site:S2"] and answer.json()["kind"] == "device_curtailment"
    low = client.post("/api/v1/dso/curtailments", json={**base, "devices": ["S1"], "max_kw_per_device": 3.0},
                      headers=dso_headers)
    assert low.status_code == 422
    neither = client.post("/api/v1/dso/curtailments", json={**base, "max_kw_per_device": 5.0}, headers=dso_headers)
    assert neither.status_code == 422


def test_the_pool_response_is_served_to_market_and_trader(
    client: TestClient, market_headers: dict[str, str], trader_headers: dict[str, str],
    session_factory: sessionmaker[Session]
) -> None:
    with unit_of_work(session_factory) as session:
        for k in range(3):
            session.add(PoolResponse(pool=POOL, at=ISP + timedelta(seconds=4 * k), setpoint_seq=k, requested_mw=1.0,
                                     supplied_mw=0.9, target_kw=900.0, measured_kw=1100.0, baseline_kw=2000.0,
                                     supplied_kw=-900.0))
    params = {"pool": POOL, "start": ISP.isoformat(), "end": (ISP + timedelta(seconds=8)).isoformat()}
    for headers in (market_headers, trader_headers):
        answer = client.get("/api/v1/market/afrr/response", params=params, headers=headers)
        assert answer.status_code == 200, answer.text
        assert [row["supplied_mw"] for row in answer.json()] == [0.9, 0.9]


@pytest.mark.usefixtures("awarded")
def test_the_one_statement_intake_stores_what_the_step_by_step_one_does(
    session_factory: sessionmaker[Session],
) -> None:
    # receive_setpoint_alone (one self-committing statement on PostgreSQL) against receive_setpoint (the steps),
    # each on a pool of its own with the same award: same clipping, stale flags, duplicates and unknown pools.
    from vpp.activations import service
    from vpp.domain.errors import NotFound

    twin = "zone:TWIN"
    with unit_of_work(session_factory) as session:
        commitments.record(session, [
            CommitmentValue(pool=twin, isp_start=ISP, kind=kind, power_kw=kw, source="test", reference="award-1")
            for kind, kw in ((CommitmentKind.AFRR_CAPACITY_UP, 2000.0), (CommitmentKind.AFRR_CAPACITY_DOWN, 1000.0))
        ])
        # Known pool, but no award in a later ISP: everything is clipped to 0.
        commitments.record(session, [CommitmentValue(pool=twin, isp_start=ISP + timedelta(hours=1),
                                                     kind=CommitmentKind.FLEX_ORDER, power_kw=1.0, source="test",
                                                     reference="other")])
        commitments.record(session, [CommitmentValue(pool=POOL, isp_start=ISP + timedelta(hours=1),
                                                     kind=CommitmentKind.FLEX_ORDER, power_kw=1.0, source="test",
                                                     reference="other")])
    cases = [(5, 1.5, 0), (6, 5.0, 0), (7, -5.0, 0), (4, 0.5, 0), (6, 0.1, 0), (8, 1.0, 3600), (9, -0.25, 3600)]

    def outcome(receive: Any, pool: str, seq: int, mw: float, shift: int) -> tuple[object, ...]:
        with unit_of_work(session_factory) as session:
            receipt = receive(session, pool=pool, seq=seq, timestamp=ISP + timedelta(seconds=4 * seq + shift),
                              setpoint_mw=mw)
            row = receipt.setpoint
            return (receipt.duplicate, row.seq, row.requested_mw, row.setpoint_mw, row.clipped, row.capacity_up_mw,
                    row.capacity_down_mw, row.stale)

    for seq, mw, shift in cases:
        assert outcome(service.receive_setpoint_alone, POOL, seq, mw, shift) == outcome(
            service.receive_setpoint, twin, seq, mw, shift)
    with unit_of_work(session_factory) as session, pytest.raises(NotFound):
        service.receive_setpoint_alone(session, pool="zone:NOPE", seq=1, timestamp=ISP, setpoint_mw=1.0)
    with unit_of_work(session_factory) as session:
        stored = {(r.pool, r.seq, r.setpoint_mw, r.stale) for r in session.scalars(select(AfrrSetpoint))}
    assert {(seq, mw, st) for pool, seq, mw, st in stored if pool == POOL} == {
        (seq, mw, st) for pool, seq, mw, st in stored if pool == twin}
    assert len(stored) == 12  # 6 distinct seqs per pool, nothing for the unknown pool
