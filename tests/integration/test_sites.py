"""Sites behind the meter on a real database: the API and CSV refuse bad equipment and write nothing, and a pool
re-plan hands the cars of an equipped site to the site planner."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from tests.conftest import make_key
from tests.integration.portfolio_support import add_cpo, add_location, add_session
from vpp.algorithms.dispatch import PoolLimits
from vpp.algorithms.site_planning import SitePlan
from vpp.db import unit_of_work
from vpp.dispatch.cycle import PoolDispatch
from vpp.domain.isp import ISP, IspHorizon, floor_to_isp
from vpp.domain.sites import power_series
from vpp.portfolio import needs, sites, topology
from vpp.portfolio.needs import NeedInput
from vpp.portfolio.planning import PlanSettings, replan
from vpp.portfolio.service import PortfolioService, site_loads_kw
from vpp.portfolio.tables import Site, SiteEquipmentRow, SiteLoad, SitePlanRow, SiteSeriesRow

NOW = floor_to_isp(datetime.now(UTC))
TOPOLOGY = """ean,dso,site_id,site_capacity_kw,party,location_id,category
871000000000000001,Stedin,depot,,NL/CPA,LOC1,workplace
"""
FLAT = {"energy": "tou", "periods": [{"name": "all day", "start": "00:00", "end": "24:00", "price_eur_per_kwh": 0.3}]}


@pytest.fixture(autouse=True)
def _now_of_this_test() -> None:
    global NOW
    NOW = floor_to_isp(datetime.now(UTC))


def _admin(factory: sessionmaker[Session]) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_key(factory, 'admin')}"}


def _site(factory: sessionmaker[Session]) -> None:
    with unit_of_work(factory) as db:
        topology.import_topology_csv(db, TOPOLOGY)


def _put(client: TestClient, headers: dict[str, str], body: dict[str, Any], site: str = "depot") -> Any:
    return client.put(f"/api/v1/portfolio/sites/{site}/equipment", json=body, headers=headers)


def test_bad_equipment_is_refused_with_its_reason_and_nothing_is_written(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    _site(session_factory)
    admin = _admin(session_factory)
    cases = [
        ({"battery": {"capacity_kwh": 5, "power_kw": 3, "max_soc_pct": 120}},
         "max_soc_pct 120 is outside its capacity"),
        ({"tariff": {"periods": [{"name": "off-peak", "start": "21:00", "end": "06:00", "price_eur_per_kwh": 0.2},
                                 {"name": "peak", "start": "06:00", "end": "22:00", "price_eur_per_kwh": 0.27}]}},
         "overlap at 21:00-22:00"),
        ({"subscription_kva": 0.0}, "subscription_kva must be positive"),
    ]
    for body, reason in cases:
        response = _put(client, admin, body)
        assert response.status_code == 422, body
        assert reason in response.json()["error"]["message"]
    with session_factory() as db:
        assert db.get(SiteEquipmentRow, "depot") is None
    # A subscription below the building's own base load, stated before.
    load = client.put("/api/v1/portfolio/sites/depot/series/load", headers=admin,
                      json={"start": NOW.isoformat(), "values": [4.0, 5.0, 6.0]})
    assert load.status_code == 200
    low = _put(client, admin, {"subscription_kva": 3.0})
    assert low.status_code == 422 and "below the building's own base load of 4 kW" in low.json()["error"]["message"]
    ok = _put(client, admin, {"subscription_kva": 12.0, "pv_kwp": 4.0, "tariff": FLAT,
                              "battery": {"capacity_kwh": 5, "power_kw": 3, "min_soc_pct": 10}})
    assert ok.status_code == 200
    with session_factory() as db:
        assert db.get(Site, "depot").capacity_kw == 12.0  # type: ignore[union-attr]
        row = db.get(SiteEquipmentRow, "depot")
        assert row is not None and row.battery_min_soc_kwh == pytest.approx(0.5)
    # And later loads are held to it as well.
    high = client.put("/api/v1/portfolio/sites/depot/series/load", headers=admin,
                      json={"start": NOW.isoformat(), "values": [13.0, 14.0]})
    assert high.status_code == 422


def test_a_pv_series_of_the_wrong_length_or_unit_is_refused(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    _site(session_factory)
    admin = _admin(session_factory)
    assert _put(client, admin, {"pv_kwp": 4.0}).status_code == 200
    url = "/api/v1/portfolio/sites/depot/series/pv"
    short = client.put(url, headers=admin, json={"start": NOW.isoformat(), "end": (NOW + 4 * ISP).isoformat(),
                                                 "values": [0.0, 1.0, 2.0]})
    assert short.status_code == 422 and "3 values but" in short.json()["error"]["message"]
    watts = client.put(url, headers=admin, json={"start": NOW.isoformat(), "values": [0.0, 2500.0]})
    assert watts.status_code == 422 and "unit is wrong" in watts.json()["error"]["message"]
    unit = client.put(url, headers=admin, json={"start": NOW.isoformat(), "values": [1.0], "unit": "MW"})
    assert unit.status_code == 422
    ok = client.put(url, headers=admin, json={"start": NOW.isoformat(), "values": [0.0, 2500.0], "unit": "W"})
    assert ok.status_code == 200 and ok.json() == {"points": 2}


def test_a_topology_csv_with_bad_equipment_writes_nothing(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    admin = {**_admin(session_factory), "Content-Type": "text/csv"}
    header = "ean,dso,site_id,site_capacity_kw,party,location_id,pv_kwp,battery_kwh,battery_kw,battery_min_soc_pct\n"
    bad = header + "1,D,home1,,FR/CLM,L1,4,,,\n2,D,home2,,FR/CLM,L2,4,5,3,150\n"
    response = client.post("/api/v1/portfolio/topology/import", content=bad, headers=admin)
    assert response.status_code == 422
    assert "line 3" in response.json()["error"]["message"] and "outside its capacity" in response.text
    with session_factory() as db:
        assert topology.list_sites(db) == []
    good = header + "1,D,home1,,FR/CLM,L1,4,,,\n2,D,home2,,FR/CLM,L2,4,5,3,20\n"
    assert client.post("/api/v1/portfolio/topology/import", content=good, headers=admin).status_code == 200
    with session_factory() as db:
        home2 = db.get(SiteEquipmentRow, "home2")
        assert home2 is not None and home2.battery_min_soc_kwh == pytest.approx(1.0) and home2.pv_kwp == 4.0


def _three_cars_at_the_depot(session_factory: sessionmaker[Session]) -> None:
    """Three cars plugged in at the depot an hour ago, each needing 11.04 kWh more within 3 hours."""
    cid = add_cpo(session_factory)
    add_location(session_factory, cid, location_id="LOC1", evses=3, at=NOW - timedelta(days=1))
    ids = [add_session(session_factory, cid, session_id=f"S{k}", location_id="LOC1", evse=k,
                       start=NOW - timedelta(hours=1), delivered_kwh=2.0, power_kw=11.0, soc_pct=30.0,
                       token_uid=f"CAR{k}")
           for k in range(3)]
    _site(session_factory)
    with unit_of_work(session_factory) as db:
        # At 30 % of 60 kWh the need ends far below the taper near full.
        for sid in ids:
            needs.put_need(db, sid, NeedInput(departure=NOW + timedelta(hours=3), energy_kwh=2.0 + 11.04,
                                              battery_kwh=60.0), now=NOW)


def test_a_replan_gives_the_cars_of_an_equipped_site_their_site_plan(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    _three_cars_at_the_depot(session_factory)
    admin = _admin(session_factory)
    assert _put(client, admin, {"pv_kwp": 40.0, "tariff": FLAT}).status_code == 200
    # 33.12 kW of PV in the second hour only: the three cars' 11.04 kWh each fit into it exactly.
    pv = [0.0] * 4 + [33.12] * 4 + [0.0] * 4
    assert client.put("/api/v1/portfolio/sites/depot/series/pv", headers=admin,
                      json={"start": NOW.isoformat(), "values": pv}).status_code == 200
    portfolio = PortfolioService(session_factory)
    with unit_of_work(session_factory) as db:
        row = replan(db, portfolio, "zone:NL", NOW, PlanSettings(),
                     price_forecast=lambda isps: np.full(len(isps), 80.0))
        assert row is not None and row.method.endswith("+sites")
        assert row.pool_kw[:4] == pytest.approx([0.0] * 4, abs=1e-6)
        assert row.pool_kw[4:8] == pytest.approx([33.12] * 4, abs=1e-3)
    with session_factory() as db:
        plan = db.get(SitePlanRow, "depot")
        assert plan is not None and plan.import_kw[:8] == pytest.approx([0.0] * 8, abs=1e-6)
        assert plan.bill_eur["energy"] == pytest.approx(0.0, abs=1e-6)
        # The dispatcher's cap of the site counts the PV as room (no load, no battery), cautiously: not more than
        # the last ISP's PV (0 before hour two), so 0 kW at its start and -33.12 kW once an ISP of it has passed.
        assert site_loads_kw(db, NOW + timedelta(hours=1))["site:depot"] == pytest.approx(0.0)
        assert site_loads_kw(db, NOW + timedelta(hours=1, minutes=15))["site:depot"] == pytest.approx(-33.12)
    read = client.get("/api/v1/portfolio/sites/depot/plan", headers=admin)
    assert read.status_code == 200 and read.json()["cars_kw"][4] == pytest.approx(33.12, abs=1e-3)


def _site_plan(isps: int, scale: float) -> SitePlan:
    ramp = np.arange(isps, dtype=np.float64) * scale / 3.0
    return SitePlan(car_kw=np.vstack([ramp, ramp / 7.0]), battery_kw=-ramp, battery_soc_kwh=ramp + 1.0,
                    import_kw=ramp * 2.0, export_kw=np.zeros(isps), curtailed_kw=np.zeros(isps),
                    unserved_kw=np.zeros(isps), unmet_kwh=np.zeros(2), peak_kw=np.zeros(1),
                    bill_eur={"energy": scale / 3.0, "total": scale / 7.0}, status="optimal")


def test_site_plans_stored_together_are_the_rows_stored_one_by_one(session_factory: sessionmaker[Session]) -> None:
    # Two sites, one with a stored plan and one without: storing both at once replaces the first (UPDATE) and adds
    # the second (INSERT), column for column as the one-row path stores them.
    with unit_of_work(session_factory) as db:
        topology.import_topology_csv(db, TOPOLOGY + "871000000000000002,Stedin,home,,NL/CPA,LOC2,home\n")
        sites.store_site_plan(db, "depot", NOW - ISP, NOW - ISP, _site_plan(5, 1.0))
    first, second = _site_plan(8, 2.0), _site_plan(8, 5.0)
    with unit_of_work(session_factory) as db:
        sites.store_site_plans(db, NOW, NOW, {"depot": first, "home": second})
    columns = [c.key for c in SitePlanRow.__table__.columns]
    with session_factory() as db:
        together = {sid: {c: getattr(db.get(SitePlanRow, sid), c) for c in columns} for sid in ("depot", "home")}
    with unit_of_work(session_factory) as db:
        db.query(SitePlanRow).delete()
    with unit_of_work(session_factory) as db:
        sites.store_site_plan(db, "depot", NOW, NOW, first)
        sites.store_site_plan(db, "home", NOW, NOW, second)
    with session_factory() as db:
        one_by_one = {sid: {c: getattr(db.get(SitePlanRow, sid), c) for c in columns} for sid in ("depot", "home")}
    assert together == one_by_one
    assert len(together["depot"]["import_kw"]) == 8 and together["depot"]["bill_eur"]["energy"] == 0.6667
    assert together["home"]["cars_kw"][3] == pytest.approx(5.0 * 8.0 / 7.0, abs=1e-4)


def test_the_dispatchers_site_load_counts_the_planned_battery_of_a_site_with_a_battery_only(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    _site(session_factory)
    admin = _admin(session_factory)
    assert _put(client, admin, {"battery": {"capacity_kwh": 10, "power_kw": 5}}).status_code == 200
    plan = _site_plan(4, 3.0)  # the battery discharges 0, 1, 2, 3 kW in the four ISPs from NOW
    with unit_of_work(session_factory) as db:
        sites.store_site_plan(db, "depot", NOW, NOW, plan)
        db.add(SiteLoad(site_id="depot", isp_start=NOW + 2 * ISP, load_kw=4.0))
    with session_factory() as db:
        assert site_loads_kw(db, NOW + 2 * ISP)["site:depot"] == pytest.approx(4.0 - 2.0)
    # Without its battery now, the site has no battery power to count, whatever its last plan said.
    assert _put(client, admin, {"subscription_kva": 12.0}).status_code == 200
    with session_factory() as db:
        assert site_loads_kw(db, NOW + 2 * ISP)["site:depot"] == pytest.approx(4.0)


def test_a_site_without_cars_plans_its_battery_on_request(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    _site(session_factory)
    admin = _admin(session_factory)
    peak = {"energy": "tou", "periods": [{"name": "cheap", "start": "00:00", "end": "12:00", "price_eur_per_kwh": 0.1},
                                         {"name": "dear", "start": "12:00", "end": "24:00", "price_eur_per_kwh": 0.4}],
            "timezone": "UTC"}
    assert _put(client, admin, {"tariff": peak, "battery": {"capacity_kwh": 10, "power_kw": 5, "soc_kwh": 0.0}}
                ).status_code == 200
    start = datetime.combine(NOW.date(), datetime.min.time(), tzinfo=UTC)
    assert client.put("/api/v1/portfolio/sites/depot/series/load", headers=admin,
                      json={"start": start.isoformat(), "values": [2.0] * 192}).status_code == 200
    response = client.post("/api/v1/portfolio/sites/depot/plan", headers=admin)
    assert response.status_code == 200
    plan = response.json()
    battery = np.asarray(plan["battery_kw"])
    hours = [(datetime.fromisoformat(plan["start"]) + k * ISP).hour for k in range(battery.size)]
    dear = np.asarray([h >= 12 for h in hours])
    # It charges only at 0.10 and discharges only at 0.40.
    assert (battery[dear] <= 1e-6).all() and (battery[~dear] >= -1e-6).all()
    assert battery[dear].min() < -0.1
    stress = client.post("/api/v1/portfolio/signals", headers=admin, json={
        "kind": "outage", "start": NOW.isoformat(), "end": (NOW - ISP).isoformat()})
    assert stress.status_code == 422


def test_meter_readings_of_many_sites_are_stored_at_once_or_not_at_all(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    _site(session_factory)
    admin = _admin(session_factory)
    assert _put(client, admin, {"pv_kwp": 4.0, "battery": {"capacity_kwh": 5, "power_kw": 3}}).status_code == 200
    good = {"site_id": "depot", "isp_start": NOW.isoformat(), "load_kw": 1.0, "pv_kw": 2.0, "import_kw": 0.0,
            "export_kw": 1.0, "battery_soc_kwh": 2.5}
    bad = {**good, "isp_start": (NOW + ISP).isoformat(), "pv_kw": -1.0}
    refused = client.post("/api/v1/portfolio/site-readings", headers=admin, json=[good, bad])
    assert refused.status_code == 422 and "pv" in refused.json()["error"]["message"]
    with session_factory() as db:
        assert sites.series_forecast(db, "depot", "pv", IspHorizon(NOW, 1), "UTC")[0] == 0.0
    unknown = client.post("/api/v1/portfolio/site-readings", headers=admin,
                          json=[good, {**good, "site_id": "nowhere"}])
    assert unknown.status_code == 404 and "nowhere" in unknown.json()["error"]["message"]
    with session_factory() as db:
        assert sites.series_forecast(db, "depot", "pv", IspHorizon(NOW, 1), "UTC")[0] == 0.0
    assert client.post("/api/v1/portfolio/site-readings", headers=admin, json=[good]).json() == {"readings": 1}
    with session_factory() as db:
        assert sites.series_forecast(db, "depot", "pv", IspHorizon(NOW, 1), "UTC")[0] == 2.0
        # The next day, with nothing stated, the forecast is the same ISP of the day before.
        assert sites.series_forecast(db, "depot", "load", IspHorizon(NOW + timedelta(days=1), 1), "UTC")[0] == 1.0
        row = db.get(SiteEquipmentRow, "depot")
        assert row is not None and row.battery_soc_kwh == 2.5


def test_in_an_outage_the_dispatcher_has_the_v2g_car_feed_the_house_and_the_other_stop(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    cid = add_cpo(session_factory, discharge_profiles=True)
    add_location(session_factory, cid, location_id="LOC1", evses=2, v2g=True, at=NOW - timedelta(days=1))
    ids = [add_session(session_factory, cid, session_id=f"S{k}", location_id="LOC1", evse=k,
                       start=NOW - timedelta(hours=1), delivered_kwh=2.0, power_kw=7.0, soc_pct=60.0,
                       token_uid=f"CAR{k}") for k in range(2)]
    _site(session_factory)
    with unit_of_work(session_factory) as db:
        # S0 may discharge down to 20 % of 60 kWh (24 kWh of room at 60 %); S1 may not.
        needs.put_need(db, ids[0], NeedInput(departure=NOW + timedelta(hours=10), energy_kwh=2.0 + 10.0,
                                             battery_kwh=60.0, discharge_allowed=True, min_soc_pct=20.0), now=NOW)
        needs.put_need(db, ids[1], NeedInput(departure=NOW + timedelta(hours=3), energy_kwh=2.0 + 15.0), now=NOW)
    admin = _admin(session_factory)
    assert _put(client, admin, {"tariff": FLAT, "subscription_kva": 12}).status_code == 200
    assert client.put("/api/v1/portfolio/sites/depot/series/load", headers=admin,
                      json={"start": (NOW - ISP).isoformat(), "values": [2.5] * 8}).status_code == 200
    portfolio = PortfolioService(session_factory)
    snapshot, _ = portfolio.planned_snapshot("zone:NL", NOW)
    assert snapshot is not None
    site = snapshot.groups.group_ids.index("site:depot")
    # Before the outage: the cars share the house's connection and charge.
    assert snapshot.groups.max_kw[site] > 0 and (snapshot.max_kw > 6).all()
    assert snapshot.follows_plan_discharge is not None and snapshot.follows_plan_discharge.all()
    assert snapshot.stress_signal is None
    # An Ecowatt-like signal for the bidding zone asking to discharge: the site's cars follow their plan's discharge.
    assert client.post("/api/v1/portfolio/signals", headers=admin, json={
        "kind": "grid_stress", "bidding_zone": "NL", "mode": "discharge", "start": NOW.isoformat(),
        "end": (NOW + 4 * ISP).isoformat()}).status_code < 300
    stressed, _ = portfolio.planned_snapshot("zone:NL", NOW)
    assert stressed is not None and stressed.stress_signal is not None and stressed.stress_signal.all()
    assert client.post("/api/v1/portfolio/signals", headers=admin, json={
        "kind": "outage", "site_id": "depot", "start": NOW.isoformat(),
        "end": (NOW + 6 * ISP).isoformat()}).status_code < 300
    snapshot, _ = portfolio.planned_snapshot("zone:NL", NOW)
    assert snapshot is not None
    # The island: nothing imported, the cars give the house's 2.5 kW and charge not at all.
    assert snapshot.groups.max_kw[site] == pytest.approx(-2.5)
    assert snapshot.islanded is not None and snapshot.islanded.all()
    position = {sid: k for k, sid in enumerate(snapshot.session_ids)}
    # They can charge only outside the 1.5-h outage: 10 h to departure leave 8.5 h, 3 h leave 1.5 h.
    hours = snapshot.hours_to_departure
    assert hours[position[ids[0]]] == pytest.approx(8.5, abs=0.01)
    assert hours[position[ids[1]]] == pytest.approx(1.5, abs=0.01)
    result = PoolDispatch("zone:NL").plan(snapshot, None, PoolLimits())
    setpoints = dict(zip(result.session_ids, result.setpoints_kw, strict=True))
    assert setpoints[ids[0]] == pytest.approx(-2.5)
    assert setpoints[ids[1]] == pytest.approx(0.0)
    assert snapshot.min_kw[position[ids[1]]] == 0.0


def test_a_load_metered_hourly_is_forecast_from_the_nearest_isp_of_the_day_before_not_an_older_day(
    session_factory: sessionmaker[Session]
) -> None:
    # The day before has the load only at :45 (a meter read hourly); three days before has the exact ISP, at a
    # lower load (a weekend). The forecast for 08:00 takes 07:45 of the day before (276 kW), not the old 96.6 kW.
    _site(session_factory)
    at = datetime(2024, 6, 11, 8, tzinfo=UTC)
    with unit_of_work(session_factory) as db:
        db.add(SiteLoad(site_id="depot", isp_start=at - timedelta(days=1, minutes=15), load_kw=276.0))
        db.add(SiteLoad(site_id="depot", isp_start=at - timedelta(days=3), load_kw=96.6))
    with session_factory() as db:
        forecast = sites.series_forecast(db, "depot", "load", IspHorizon(at, 2), "UTC")
    np.testing.assert_allclose(forecast, [276.0, 276.0])


def test_under_a_capacity_tariff_the_site_plans_its_cars_as_the_dispatcher_can_follow_them(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    # The replan case above with a power tariff: each car is planned at no more than 90 % of its 11 kW (9.9 kW,
    # what its need floors count on) and done one ISP before it leaves, so the 33.12 kW of PV is no longer
    # taken whole (29.7 kW at most) and nothing is planned in the last ISP.
    _three_cars_at_the_depot(session_factory)
    admin = _admin(session_factory)
    tariff = {**FLAT, "capacity_eur_per_kw": 4.0, "capacity_period": "month"}
    assert _put(client, admin, {"pv_kwp": 40.0, "tariff": tariff}).status_code == 200
    assert client.put("/api/v1/portfolio/sites/depot/series/pv", headers=admin,
                      json={"start": NOW.isoformat(), "values": [0.0] * 4 + [33.12] * 4 + [0.0] * 4}).status_code == 200
    portfolio = PortfolioService(session_factory)
    with unit_of_work(session_factory) as db:
        row = replan(db, portfolio, "zone:NL", NOW, PlanSettings(),
                     price_forecast=lambda isps: np.full(len(isps), 80.0))
        assert row is not None
    with session_factory() as db:
        plan = db.get(SitePlanRow, "depot")
        assert plan is not None
        assert max(plan.cars_kw) <= 29.7 + 1e-3
        assert plan.cars_kw[11] == pytest.approx(0.0, abs=1e-6)
        assert sum(plan.cars_kw[:12]) * 0.25 == pytest.approx(33.12, abs=1e-2)


def _walk_forecast(known: dict[datetime, float], horizon: IspHorizon, tz: str) -> list[float]:
    """The forecast's definition, ISP by ISP (the walk ``series_forecast`` did before it was vectorised): the
    stated value, else the same local time on the latest of the seven days before, or that day's nearest ISP
    within 45 minutes, else 0."""
    zone = ZoneInfo(tz)
    out = []
    for k in range(horizon.count):
        at = horizon.start + ISP * k
        value = known.get(at)
        back = 1
        while value is None and back <= 7:
            earlier = (at.astimezone(zone) - timedelta(days=back)).astimezone(UTC)
            value = next((known[x] for x in (earlier + ISP * d for d in sites.NEAREST_ISPS) if x in known), None)
            back += 1
        out.append(value or 0.0)
    return out


@pytest.mark.parametrize("day", [datetime(2024, 3, 31, tzinfo=UTC), datetime(2024, 6, 11, 8, 15, tzinfo=UTC),
                                 datetime(2024, 10, 27, tzinfo=UTC)])
def test_the_forecast_of_a_patchy_history_is_the_walk_isp_by_isp_across_clock_changes(
    session_factory: sessionmaker[Session], day: datetime
) -> None:
    # A week of PV and load with holes (whole days, hours metered only hourly, single ISPs), a few values stated
    # ahead, and horizons across the clock changes of Europe/Paris: the vectorised forecast must be the walk.
    _site(session_factory)
    rng = np.random.default_rng(int(day.timestamp()))
    known: dict[str, dict[datetime, float]] = {"pv": {}, "load": {}}
    with unit_of_work(session_factory) as db:
        for kind, values in known.items():
            for k in range(-8 * 96, 2 * 96):
                at = day + ISP * k
                lost = (at.day % 3 == 0 and kind == "load") or (at.hour % 4 == 1 and at.minute != 45)
                if (k >= 0 and rng.random() > 0.05) or lost or rng.random() < 0.1:
                    continue
                values[at] = round(float(rng.random() * 3), 3) if rng.random() > 0.1 else 0.0
                if kind == "load":
                    db.add(SiteLoad(site_id="depot", isp_start=at, load_kw=values[at]))
                else:
                    db.add(SiteSeriesRow(site_id="depot", kind=kind, isp_start=at, power_kw=values[at]))
    with session_factory() as db:
        for kind, values in known.items():
            for start, count in ((day, 192), (day - 2 * ISP, 7), (day + 30 * ISP, 150)):
                horizon = IspHorizon(start, count)
                forecast = sites.series_forecast(db, "depot", kind, horizon, "Europe/Paris")
                assert forecast.tolist() == _walk_forecast(values, horizon, "Europe/Paris"), (kind, start)


def _meter(factory: sessionmaker[Session], rng: np.random.Generator, known: dict[str, dict[datetime, float]],
           at: datetime) -> None:
    reading = sites.MeterReading("depot", at, load_kw=round(float(rng.random()), 3),
                                 pv_kw=round(float(rng.random()), 3))
    with unit_of_work(factory) as db:
        sites.put_readings(db, [reading])
    known["load"][at], known["pv"][at] = reading.load_kw or 0.0, reading.pv_kw or 0.0


def test_the_kept_history_is_read_again_where_it_was_written_and_forecasts_as_a_fresh_read(
    session_factory: sessionmaker[Session],
) -> None:
    # A week of PV and load written through the API's functions, then a meter reporting ISP by ISP, an owner
    # restating a past day, a load CSV, two writes between forecasts and a write rolled back: after each, the
    # forecast from the kept rows is the walk over what the database holds, and only what changed was read again.
    _site(session_factory)
    day, tz = datetime(2024, 6, 11, tzinfo=UTC), "Europe/Paris"
    rng = np.random.default_rng(19)
    known: dict[str, dict[datetime, float]] = {"pv": {}, "load": {}}
    kept = sites.SERIES_HISTORY

    def write(db: Session, kind: str, start: datetime, values: list[float]) -> None:
        sites.put_series(db, "depot", (kind, power_series(kind, start, values)))
        known[kind].update({start + ISP * k: v for k, v in enumerate(values)})

    def check(at: datetime, full: int, span: int, none: int) -> None:
        reads = (kept.full_reads, kept.span_reads, kept.kept_reads)
        horizon = IspHorizon(at, 160)  # reaches past two days: the whole week is looked at
        with session_factory() as db:
            for kind, values in known.items():
                forecast = sites.series_forecast(db, "depot", kind, horizon, tz)
                assert forecast.tolist() == _walk_forecast(values, horizon, tz), (kind, at)
        assert (kept.full_reads - reads[0], kept.span_reads - reads[1], kept.kept_reads - reads[2]) == (
            full, span, none)

    with unit_of_work(session_factory) as db:
        for kind in known:
            write(db, kind, day - timedelta(days=7), [round(float(v), 3) for v in rng.random(7 * 96) * 3])
    check(day, 2, 0, 0)
    check(day, 0, 0, 2)
    at = day
    for _ in range(3):  # the meter reports the ISP that ended, the horizon moves on: one ISP read per series
        _meter(session_factory, rng, known, at)
        at += ISP
        check(at, 0, 2, 0)
    # The owner restates a past afternoon, and a CSV the load of the day before: one span each.
    with unit_of_work(session_factory) as db:
        write(db, "pv", day - timedelta(days=3, hours=-12), [0.5] * 12)
    with unit_of_work(session_factory) as db:
        points = [(day - timedelta(hours=6) + ISP * k, 1.25) for k in range(8)]
        topology.put_site_load(db, "depot", points)
        known["load"].update(dict(points))
    check(at, 0, 2, 0)
    # Two writes of the PV between forecasts: the kept rows miss one span, so the PV is read whole.
    with unit_of_work(session_factory) as db:
        write(db, "pv", day - timedelta(days=1), [2.0] * 4)
    with unit_of_work(session_factory) as db:
        write(db, "pv", day - timedelta(days=2), [2.5] * 4)
    check(at, 1, 0, 1)
    # Two ISPs of the meter between forecasts: both series read whole.
    for _ in range(2):
        _meter(session_factory, rng, known, at)
        at += ISP
    check(at, 2, 0, 0)
    # A write seen by the forecast of its own transaction, then rolled back: the load is read whole again.
    with session_factory() as db:
        sites.put_series(db, "depot", ("load", power_series("load", day - timedelta(days=1), [9.0] * 96)))
        assert sites.series_forecast(db, "depot", "load", IspHorizon(at, 4), tz).tolist() == [9.0] * 4
        db.rollback()
    check(at, 1, 0, 1)
