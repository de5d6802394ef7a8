import csv
import io
import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from tests.conftest import make_key
from tests.integration.portfolio_support import add_cpo, add_location, add_session
from vpp.algorithms.scheduling import solve_instance
from vpp.db import unit_of_work
from vpp.domain.isp import floor_to_isp
from vpp.portfolio import topology
from vpp.portfolio.fleet import load_fleet
from vpp.portfolio.service import PortfolioService, dispatch_snapshot

NOW = floor_to_isp(datetime.now(UTC))


@pytest.fixture(autouse=True)
def _now_of_this_test() -> None:
    """NOW is the ISP of each test's start, not of the import: the service reads the real clock, and a slow run
    that crossed a quarter-hour left the sessions' times an ISP behind it (a need then looked unmeetable)."""
    global NOW
    NOW = floor_to_isp(datetime.now(UTC))


TOPOLOGY = """ean,dso,site_id,site_capacity_kw,party,location_id,category
871000000000000001,Stedin,depot,30,NL/CPA,LOC1,workplace
871000000000000001,Stedin,street,,NL/CPA,LOC2,public
"""


def _fleet(factory: sessionmaker[Session], *, v2g: bool = False) -> dict[str, str]:
    cid = add_cpo(factory, discharge_profiles=v2g)
    add_location(factory, cid, location_id="LOC1", evses=3, v2g=v2g, at=NOW - timedelta(days=1))
    add_location(factory, cid, location_id="LOC2", evses=2, at=NOW - timedelta(days=1))
    ids = {}
    for k in range(3):
        ids[f"d{k}"] = add_session(factory, cid, session_id=f"S-D{k}", location_id="LOC1", evse=k,
                                   start=NOW - timedelta(hours=1), delivered_kwh=2.0, power_kw=11.0, soc_pct=40,
                                   token_uid=f"CAR{k}")
    ids["s0"] = add_session(factory, cid, session_id="S-S0", location_id="LOC2", evse=0,
                            start=NOW - timedelta(minutes=30), token_uid="CARX")
    with unit_of_work(factory) as db:
        topology.import_topology_csv(db, TOPOLOGY)
    return ids


def _auth(factory: sessionmaker[Session], role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_key(factory, role)}"}


def test_an_explicit_need_is_stored_and_an_unmeetable_one_is_flagged_with_the_most_deliverable(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    ids = _fleet(session_factory)
    partner = _auth(session_factory, "partner")
    departure = (NOW + timedelta(hours=2)).isoformat()
    ok = client.put(f"/api/v1/sessions/{ids['d0']}/charging-need", headers=partner,
                    json={"departure": departure, "energy_kwh": 20})
    assert ok.status_code == 200, ok.text
    assert ok.json()["feasible"] is True
    assert ok.json()["source"] == "explicit"
    too_much = client.put(f"/api/v1/sessions/{ids['d1']}/charging-need", headers=partner,
                          json={"departure": departure, "energy_kwh": 500})
    assert too_much.status_code == 200
    body = too_much.json()
    assert body["feasible"] is False
    assert 0 < body["max_deliverable_kwh"] < 500
    hours_left = (NOW + timedelta(hours=2) - datetime.now(UTC)).total_seconds() / 3600
    assert math.isclose(body["max_deliverable_kwh"], 11.04 * hours_left, rel_tol=0.02)


def test_bad_needs_are_refused_with_the_reason(client: TestClient, session_factory: sessionmaker[Session]) -> None:
    ids = _fleet(session_factory)
    partner = _auth(session_factory, "partner")
    past = client.put(f"/api/v1/sessions/{ids['d0']}/charging-need", headers=partner,
                      json={"departure": (NOW - timedelta(hours=1)).isoformat(), "energy_kwh": 5})
    assert past.status_code == 422
    assert "past" in past.json()["error"]["message"]
    negative = client.put(f"/api/v1/sessions/{ids['d0']}/charging-need", headers=partner,
                          json={"departure": (NOW + timedelta(hours=1)).isoformat(), "energy_kwh": -1})
    assert negative.status_code == 422
    unknown = client.put("/api/v1/sessions/nope/charging-need", headers=partner,
                         json={"departure": (NOW + timedelta(hours=1)).isoformat(), "energy_kwh": 5})
    assert unknown.status_code == 404
    dso = client.put(f"/api/v1/sessions/{ids['d0']}/charging-need", headers=_auth(session_factory, "dso"),
                     json={"departure": (NOW + timedelta(hours=1)).isoformat(), "energy_kwh": 5})
    assert dso.status_code == 403


def test_needs_resolve_explicit_then_booking_then_defaults(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    ids = _fleet(session_factory)
    partner = _auth(session_factory, "partner")
    client.put(f"/api/v1/sessions/{ids['d0']}/charging-need", headers=partner,
               json={"departure": (NOW + timedelta(hours=3)).isoformat(), "energy_kwh": 12})
    booked = client.put("/api/v1/bookings/B1", headers=partner,
                        json={"vehicle_id": "car-1", "vehicle_token_uid": "car1",
                              "start": (NOW + timedelta(hours=5)).isoformat(),
                              "end": (NOW + timedelta(hours=8)).isoformat()})
    assert booked.status_code == 200, booked.text
    with session_factory() as db:
        fleet = load_fleet(db, NOW)
    by_id = dict(zip(fleet.session_ids, range(fleet.n), strict=True))
    d0, d1, s0 = by_id[ids["d0"]], by_id[ids["d1"]], by_id[ids["s0"]]
    assert fleet.need_source[d0] == "explicit"
    assert math.isclose(fleet.energy_needed_kwh[d0], 10.0)
    assert fleet.departure[d0] == NOW + timedelta(hours=3)
    assert fleet.need_source[d1] == "booking"
    assert fleet.departure[d1] == NOW + timedelta(hours=5)
    assert fleet.need_source[s0] == "default"
    assert fleet.energy_needed_kwh[s0] > 0
    assert fleet.need_confidence[s0] < fleet.need_confidence[d1] < fleet.need_confidence[d0]


def test_a_booking_states_its_energy_as_the_need_of_the_session_before_it(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    """The next booking's energy is the session's need, net of what the car took in (2 kWh here): 15 - 2 = 13 kWh.
    A later booking's energy and a cancelled earlier one's do not count; a booking without energy leaves the
    estimate."""
    ids = _fleet(session_factory)
    partner = _auth(session_factory, "partner")

    def book(booking: str, token: str, hours: float, energy: float | None, cancelled: bool = False) -> None:
        body = {"vehicle_id": token, "vehicle_token_uid": token, "cancelled": cancelled,
                "start": (NOW + timedelta(hours=hours)).isoformat(),
                "end": (NOW + timedelta(hours=hours + 2)).isoformat()}
        if energy is not None:
            body["energy_kwh"] = energy
        assert client.put(f"/api/v1/bookings/{booking}", headers=partner, json=body).status_code == 200

    book("B0", "car0", 4, 40.0, cancelled=True)
    book("B1", "car0", 5, 15.0)
    book("B2", "car0", 9, 30.0)
    book("B3", "car1", 6, None)
    with session_factory() as db:
        fleet = load_fleet(db, NOW)
    by_id = dict(zip(fleet.session_ids, range(fleet.n), strict=True))
    d0, d1 = by_id[ids["d0"]], by_id[ids["d1"]]
    assert fleet.need_source[d0] == "booking"
    assert fleet.departure[d0] == NOW + timedelta(hours=5)
    assert math.isclose(fleet.energy_needed_kwh[d0], 13.0)
    assert fleet.need_source[d1] == "booking"
    assert fleet.departure[d1] == NOW + timedelta(hours=6)
    assert fleet.energy_needed_kwh[d1] > 0


def test_sessions_belong_to_zone_cpo_site_and_congestion_point_pools(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    _fleet(session_factory)
    pools = {p["pool"]: p for p in client.get("/api/v1/portfolio/pools",
                                              headers=_auth(session_factory, "trader")).json()}
    assert pools["zone:NL"]["sessions"] == 4
    assert pools["cpo:NL-CPA"]["sessions"] == 4
    assert pools["site:depot"]["sessions"] == 3
    assert pools["site:depot"]["capacity_kw"] == 30
    assert pools["congestion_point:871000000000000001"]["sessions"] == 4


def test_a_dispatch_snapshot_carries_site_caps_and_v2g_only_with_every_consent(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    ids = _fleet(session_factory, v2g=True)
    partner = _auth(session_factory, "partner")
    client.put(f"/api/v1/sessions/{ids['d0']}/charging-need", headers=partner,
               json={"departure": (NOW + timedelta(hours=6)).isoformat(), "energy_kwh": 20, "battery_kwh": 60,
                     "discharge_allowed": True, "min_soc_pct": 20})
    client.put(f"/api/v1/sessions/{ids['d1']}/charging-need", headers=partner,
               json={"departure": (NOW + timedelta(hours=6)).isoformat(), "energy_kwh": 20, "battery_kwh": 60})
    with session_factory() as db:
        fleet = load_fleet(db, NOW)
    snap = dispatch_snapshot(fleet, "site:depot", NOW, {})
    position = {sid: k for k, sid in enumerate(snap.session_ids)}
    assert snap.min_kw[position[ids["d0"]]] < 0
    assert snap.min_kw[position[ids["d1"]]] == 0
    assert "site:depot" in snap.groups.group_ids
    site = snap.groups.group_ids.index("site:depot")
    assert snap.groups.max_kw[site] == 30
    assert np.sum(snap.groups.member_group == site) == 3
    assert np.allclose(snap.max_kw, 11.04, atol=0.01)


def test_pool_flexibility_is_served_as_json_and_csv_and_unknown_pools_are_404(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    _fleet(session_factory)
    trader = _auth(session_factory, "trader")
    end = NOW + timedelta(hours=48)
    response = client.get("/api/v1/portfolio/pools/site:depot/flexibility", headers=trader,
                          params={"start": NOW.isoformat(), "end": end.isoformat()})
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["isp_starts"]) == 192
    assert body["sessions_now"] == 3
    assert all(lo <= base + 1e-6 and base <= hi + 1e-6
               for lo, base, hi in zip(body["min_kw"], body["baseline_kw"], body["max_kw"], strict=True))
    assert max(body["baseline_kw"]) <= 3 * 11.04 + 1e-6
    as_csv = client.get("/api/v1/portfolio/pools/site:depot/flexibility", headers=trader,
                        params={"start": NOW.isoformat(), "end": end.isoformat(), "format": "csv"})
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert len(rows) == 192
    assert float(rows[0]["baseline_kw"]) == body["baseline_kw"][0]
    assert client.get("/api/v1/portfolio/pools/site:nowhere/flexibility", headers=trader).status_code == 404
    assert client.get("/api/v1/portfolio/pools/bogus/flexibility", headers=trader).status_code == 422
    off_grid = client.get("/api/v1/portfolio/pools/site:depot/flexibility", headers=trader,
                          params={"start": (NOW + timedelta(minutes=7)).isoformat()})
    assert off_grid.status_code == 422


def test_the_pool_as_a_scheduling_instance_is_solvable_and_meets_every_need(
    session_factory: sessionmaker[Session]
) -> None:
    _fleet(session_factory)
    service = PortfolioService(session_factory)
    instance = service.dayahead_instance("zone:NL", NOW, NOW + timedelta(hours=24),
                                         prices_eur_per_mwh=[50.0 + (k % 8) for k in range(96)])
    result = solve_instance(instance)
    assert result["status"] in ("optimal", "feasible")
    assert len(instance["sessions"]) == 4
    assert all(abs(v) < 1e-3 for v in result["unmet_kwh"].values())


def test_topology_import_refuses_a_bad_row_and_writes_nothing(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    admin = _auth(session_factory, "admin")
    bad = "ean,dso,site_id,site_capacity_kw,party,location_id\n1,D,s1,10,NL/CPA,L1\n2,D,s2,lots,NL/CPA,L2\n"
    response = client.post("/api/v1/portfolio/topology/import", content=bad, headers={**admin,
                                                                                       "Content-Type": "text/csv"})
    assert response.status_code == 422
    assert "line 3" in response.json()["error"]["message"]
    with session_factory() as db:
        assert topology.list_sites(db) == []
    good = client.post("/api/v1/portfolio/topology/import", content=TOPOLOGY,
                       headers={**admin, "Content-Type": "text/csv"})
    assert good.status_code == 200
    assert good.json() == {"congestion_points": 1, "sites": 2, "locations": 2}


def test_the_pool_forecast_learns_arrivals_from_completed_sessions(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    cid = add_cpo(session_factory)
    add_location(session_factory, cid, location_id="LOC1", evses=3, at=NOW - timedelta(days=8))
    with unit_of_work(session_factory) as db:
        topology.import_topology_csv(db, TOPOLOGY)
    arrival = NOW + timedelta(hours=3)
    for day in range(1, 7):
        for evse in range(2):
            start = arrival - timedelta(days=day)
            add_session(session_factory, cid, session_id=f"H-{day}-{evse}", location_id="LOC1", evse=evse,
                        start=start, delivered_kwh=12.0, token_uid=f"CAR{evse}", status="completed",
                        end=start + timedelta(hours=4))
    trader = _auth(session_factory, "trader")
    response = client.get("/api/v1/portfolio/pools/site:depot/forecast", headers=trader,
                          params={"start": NOW.isoformat(), "end": (NOW + timedelta(hours=24)).isoformat()})
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["isp_starts"]) == 96 and body["days_of_history"] >= 2  # weekdays and weekends apart
    at = 12  # the horizon starts at NOW; the cars came at NOW + 3 h on each of the six days before
    # Two cars arrive at that ISP every day; nothing arrives at the others.
    assert body["arrivals_p50"][at] == 2.0, body["arrivals_p50"][at - 2:at + 3]
    assert sum(body["arrivals_p50"]) == 2.0
    assert body["plugged_in_p50"][at + 4] == 2.0 and body["plugged_in_p50"][at + 20] == 0.0


def test_fast_session_patches_give_the_dispatcher_each_readings_period_and_a_late_older_one_does_not_replace_it(
    session_factory: sessionmaker[Session],
) -> None:
    from vpp.sessions import service as sessions
    from vpp.sessions.values import Reading, SessionChanges

    cid = add_cpo(session_factory)
    add_location(session_factory, cid, location_id="LOC1", evses=1, at=NOW - timedelta(days=1))
    start = NOW - timedelta(minutes=10)
    add_session(session_factory, cid, session_id="S-FAST", location_id="LOC1", evse=0, start=start,
                power_kw=11.0)
    periods = [start + timedelta(minutes=9) + timedelta(seconds=10 * k) for k in range(4)]

    def patch(k: int, power_kw: float) -> None:
        with unit_of_work(session_factory) as db:
            sessions.update(db, cid, "NL", "CPA", "S-FAST", SessionChanges(
                fields={}, last_updated=periods[k] + timedelta(seconds=10),
                readings=(Reading(start=periods[k], power_kw=power_kw, energy_kwh=None, soc_pct=None),)))

    for k, kw in ((0, 7.0), (1, 7.1), (3, 7.3), (2, 1.0)):  # the period of k=2 arrives late
        patch(k, kw)
    with session_factory() as db:
        fleet = load_fleet(db, NOW)
    snap = dispatch_snapshot(fleet, fleet.zone_pool[0], NOW, {})
    assert snap.reading_start_s is not None and snap.reading_end_s is not None
    assert snap.current_kw[0] == 7.3
    assert snap.reading_start_s[0] == periods[3].timestamp()
    assert snap.reading_end_s[0] == (periods[3] + timedelta(seconds=10)).timestamp()
