"""Sites behind the meter in the simulation: scenario keys, the battery's physics, the metered balance, KPIs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from vpp.portfolio.sites import tariff_from_spec
from vpp.simulation.plan import timeline_of
from vpp.simulation.scenario import Scenario, load_scenario
from vpp.simulation.site_kpis import _bill, site_kpis
from vpp.simulation.sites import SitePhysics

BASE: dict[str, Any] = {"name": "t", "start": "2024-06-11", "timezone": "Europe/Paris", "cpos": [
    {"party": "FR/CLM", "locations": 2, "evses_per_location": 1, "evse_max_kw": 7, "category": "home"}]}
PILOTS = ("paris-home", "munich-14a-pv", "debrecen-office", "budapest-dealership", "chalmers-campus", "vdl-depot",
          "stedin-fleet")


def _scenario(**site: Any) -> Scenario:
    return Scenario.model_validate({**BASE, "sites": [{"cpo": "FR/CLM", **site}]})


def test_the_seven_pilot_scenarios_load() -> None:
    for name in PILOTS:
        assert load_scenario(name).sites, name


def test_a_scenario_with_a_bad_battery_or_tariff_is_refused_with_the_reason() -> None:
    with pytest.raises(ValidationError, match="max_soc_pct 120 is outside its capacity"):
        _scenario(battery={"capacity_kwh": 5, "power_kw": 3, "max_soc_pct": 120})
    with pytest.raises(ValidationError, match="overlap"):
        _scenario(tariff={"periods": [{"name": "a", "start": "00:00", "end": "12:00", "price_eur_per_kwh": 0.2},
                                      {"name": "b", "start": "11:00", "end": "24:00", "price_eur_per_kwh": 0.3}]})
    with pytest.raises(ValidationError, match="unknown cpo"):
        Scenario.model_validate({**BASE, "sites": [{"cpo": "FR/XXX", "pv_kwp": 4}]})


def _physics(**site: Any) -> SitePhysics:
    scenario = _scenario(**site)
    return SitePhysics(scenario, timeline_of(scenario), list(scenario.cpos))


def test_the_battery_keeps_its_limits_and_loses_its_efficiency_each_way() -> None:
    physics = _physics(battery={"capacity_kwh": 10, "power_kw": 4, "efficiency": 0.9, "min_soc_pct": 10,
                                "max_soc_pct": 90, "soc_pct": 50})
    site = physics.sites[0]
    # 4 kW for an hour: 3.6 kWh stored (5 -> 8.6), 4 kWh taken from the site.
    assert physics._battery(site, 4.0, 1.0) == pytest.approx(4.0)
    assert site.soc_kwh == pytest.approx(8.6)
    # Asked for 8 kW (above its power) for an hour: it stops at 90 % (0.4 kWh stored, 0.444 kWh taken).
    assert physics._battery(site, 8.0, 1.0) == pytest.approx(0.4 / 0.9)
    assert site.soc_kwh == pytest.approx(9.0)
    # Discharging to the floor: 8 kWh above 10 % give 7.2 kWh to the site.
    assert physics._battery(site, -4.0, 10.0) == pytest.approx(-7.2)
    assert site.soc_kwh == pytest.approx(1.0)


def test_the_meter_sees_load_minus_pv_plus_cars_and_an_export_limit_curtails() -> None:
    physics = _physics(pv_kwp=4, load="flat", load_kw=0.5, export_max_kw=1.0)
    site = physics.sites[0]
    noon = datetime(2024, 6, 11, 10, 0, tzinfo=UTC)
    pv, load = physics.profile(site, noon)
    assert load == 0.5 and pv > 2.0
    physics._balance(site, noon, 900.0, cars_kwh=0.0)
    row = site.isps[noon]
    assert row["export_kwh"] == pytest.approx(0.25)  # 1 kW export limit for a quarter-hour
    assert row["pv_used_kwh"] == pytest.approx(0.5 * 0.25 + 0.25)
    physics._balance(site, noon + timedelta(minutes=15), 900.0, cars_kwh=2.5)
    row = site.isps[noon + timedelta(minutes=15)]
    assert row["import_kwh"] == pytest.approx(2.5 + 0.125 - pv * 0.25, abs=0.02)


def test_site_kpis_compare_the_controlled_site_with_its_uncontrolled_twin() -> None:
    physics = _physics(pv_kwp=4, load="flat", load_kw=0.5, subscription_kva=12,
                       tariff={"periods": [{"name": "all", "start": "00:00", "end": "24:00",
                                            "price_eur_per_kwh": 0.3}], "export_eur_per_kwh": 0.1})
    site = physics.sites[0]
    start = physics.timeline.delivery_start.astimezone(UTC)
    for k in range(96):
        at = start + timedelta(minutes=15 * k)
        physics._balance(site, at, 900.0, cars_kwh=0.2 if k in (52, 53) else 0.0)  # 0.8 kW, at 13:00-13:30 local
    result = SimpleNamespace(sites=physics.sites[:1], timeline=physics.timeline, follow_end=start + timedelta(days=1),
                             prices={}, sessions=[])
    kpis = site_kpis(result)  # type: ignore[arg-type]
    assert kpis["grid_import_kwh"] >= 0 and kpis["subscription_exceeded_isps"] == 0
    assert 0 < kpis["pv_self_consumption_pct"] < 100
    # No sessions were recorded, so the uncontrolled twin charges nothing: all charging is extra in the controlled.
    assert kpis["charging_cost_eur_uncontrolled"] == pytest.approx(0.0)
    pv_kw = physics.profile(site, start + timedelta(minutes=15 * 52))[0]
    assert pv_kw - 0.5 > 0.8  # the PV covers the house and the car
    assert kpis["renewable_share_pct"] == pytest.approx(100.0)
    assert kpis["bill_eur"]["total"] == pytest.approx(
        kpis["bill_eur"]["energy"] + kpis["bill_eur"]["export"], abs=0.02)


def test_a_monthly_capacity_charge_bills_the_months_peak_metered_before_the_window() -> None:
    tariff = tariff_from_spec({"periods": [{"name": "all", "start": "00:00", "end": "24:00", "price_eur_per_kwh": 0.0}],
                               "capacity_eur_per_kw": 4.0, "capacity_period": "month", "timezone": "Europe/Paris"})
    june = [datetime(2024, 6, 11, 10, 0, tzinfo=UTC), datetime(2024, 6, 11, 10, 15, tzinfo=UTC)]
    zero = np.zeros(2)

    def capacity(import_kwh: list[float], earlier: dict[tuple[int, int, int], float] | None) -> float:
        return _bill(tariff, np.asarray(import_kwh), zero, zero, zero, june, 0.0, 0.0, 0.0, earlier)["capacity"]

    # Hand-computed: 60 kWh in a quarter-hour is 240 kW; 100 kWh is 400 kW; 4 EUR per kW of the month's peak.
    assert capacity([50.0, 60.0], None) == pytest.approx(4.0 * 240.0)
    assert capacity([50.0, 60.0], {(2024, 6, 0): 300.0}) == pytest.approx(4.0 * 300.0)  # June's earlier peak stands
    assert capacity([50.0, 100.0], {(2024, 6, 0): 300.0}) == pytest.approx(4.0 * 400.0)  # the day sets a new one
    assert capacity([50.0, 60.0], {(2024, 5, 0): 900.0}) == pytest.approx(4.0 * 240.0)  # May's is not June's

    # Through the KPIs: an hour metered before the delivery day at 8 kW (1 kW house + 7 kW car, hourly warm-up step);
    # the delivery day peaks at 1 + 4 kW. All three bills (controlled, uncontrolled, house) carry the 8 kW, so the
    # capacity charge adds nothing to the cost of charging.
    physics = _physics(load="flat", load_kw=1.0, tariff={
        "periods": [{"name": "all", "start": "00:00", "end": "24:00", "price_eur_per_kwh": 0.0}],
        "capacity_eur_per_kw": 4.0, "capacity_period": "month"})
    site = physics.sites[0]
    start = physics.timeline.delivery_start.astimezone(UTC)
    physics._balance(site, start - timedelta(hours=5), 3600.0, cars_kwh=7.0)
    for k in range(96):
        physics._balance(site, start + timedelta(minutes=15 * k), 900.0, cars_kwh=1.0 if k == 40 else 0.0)
    result = SimpleNamespace(sites=physics.sites[:1], timeline=physics.timeline, follow_end=start + timedelta(days=1),
                             prices={}, sessions=[])
    kpis = site_kpis(result)  # type: ignore[arg-type]
    assert kpis["peak_import_kw"] == pytest.approx(5.0)
    assert kpis["bill_eur"]["capacity"] == pytest.approx(4.0 * 8.0)
    assert kpis["bill_eur_uncontrolled"]["capacity"] == pytest.approx(4.0 * 8.0)
    assert kpis["charging_cost_eur"] == pytest.approx(0.0)
