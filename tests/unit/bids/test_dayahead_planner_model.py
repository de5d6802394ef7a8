"""The day-ahead position models the cars as the planner that controls them: 11 kW on AC, done by the taper's
departure, the evening before charged with the taper. Hand-computed cases."""

from __future__ import annotations

import math
from datetime import date, datetime
from typing import Any

import numpy as np
import pytest

from vpp.bids import dayahead
from vpp.bids.policy import BidPolicy

DAY = date(2024, 6, 12)
# 15 kWh at 11 kW ending full of the assumed 60 kWh: 0.27 h to 80 %, then the taper (tau = 0.2 x 60 / 11 h) to 98 %
# and 1.2 kWh at 1.1 kW: 3.88 h in all, 2.51 h more than 15 / 11 h, so planned 11 ISPs (rounded up) early.
TAU_H = 0.2 * 60.0 / 11.0


def _taken_in(hours: float) -> float:
    """What a 15 kWh need ending full of 60 kWh takes at 11 kW in its first ``hours`` (< 2.78 h: before 98 %)."""
    flat_h = 3.0 / 11.0
    return 3.0 + 12.0 * (1.0 - math.exp(-(hours - flat_h) / TAU_H)) if hours > flat_h else 11.0 * hours


class OneMorningCar:
    """A pool of one car on a 22 kW AC charger, plugged in at the delivery day's start with 15 kWh, leaving after
    28 ISPs (07:00 local); the day's prices fall through the night, so its cheapest ISPs are its last."""

    def dayahead_instance(self, pool: str, start: datetime, end: datetime, *, reliability: float = 0.5,
                          prices_eur_per_mwh: list[float]) -> dict[str, Any]:
        return {"start": start.isoformat(), "isp_minutes": 15, "prices_eur_per_mwh": prices_eur_per_mwh,
                "sessions": [{"id": "car", "arrival": 0, "departure": 28, "energy_kwh": 15.0, "max_kw": 22.0,
                              "min_kw": 0.0}]}


PRICES = [100.0 - t if t < 28 else 200.0 for t in range(96)]


def test_the_position_buys_the_car_where_the_planner_will_draw_it_not_in_its_last_isps() -> None:
    content = dayahead.build_content(OneMorningCar(), BidPolicy(), pool="zone:NL", day=DAY, prices=PRICES,
                                     method="auto")
    schedule = np.asarray(content["forecast_pool_kw"])
    assert schedule.sum() / 4.0 == pytest.approx(15.0)
    # Done by ISP 28 - 11 = 17 at 11 kW (not 22): 5 ISPs at 11 kW and 1.25 kWh (5 kW) in the sixth:
    # its cheapest ISPs before 17.
    np.testing.assert_allclose(schedule[11:17], [5.0, 11.0, 11.0, 11.0, 11.0, 11.0])
    assert schedule[17:].sum() == 0.0 and schedule[:11].sum() == 0.0
    # The charger's model (the position before): its 3 cheapest ISPs at 22 kW, the car's last.
    old = dayahead.build_content(OneMorningCar(), BidPolicy(dayahead_planner_model=False), pool="zone:NL", day=DAY,
                                 prices=PRICES, method="auto")
    np.testing.assert_allclose(old["forecast_pool_kw"][25:28], [16.0, 22.0, 22.0])


def test_as_planned_caps_ac_cars_and_ends_them_the_tapers_extra_time_early() -> None:
    instance = {"start": "2024-06-11T22:00:00Z", "isp_minutes": 15, "prices_eur_per_mwh": [1.0] * 40,
                "sessions": [
                    # 15 kWh: 11 ISPs early; a forecast car arrives at 10.
                    {"id": "ac22", "arrival": 10, "departure": 35, "energy_kwh": 15.0, "max_kw": 22.0, "min_kw": 0.0},
                    # 40 kWh in 16 ISPs: 15 ISPs at 11 kW, so done by 10 + 15 = 25, not 26 - extra.
                    {"id": "tight", "arrival": 10, "departure": 26, "energy_kwh": 40.0, "max_kw": 11.0,
                     "min_kw": 0.0},
                    # Its stay is cut at the instance's end: its taper falls after it.
                    {"id": "cut", "arrival": 30, "departure": 40, "energy_kwh": 15.0, "max_kw": 11.0, "min_kw": 0.0},
                    # A DC charger keeps its 50 kW; 15 kWh at 50 kW ending full: 0.55 h more, 3 ISPs early.
                    {"id": "dc", "arrival": 0, "departure": 20, "energy_kwh": 15.0, "max_kw": 50.0, "min_kw": 0.0},
                    # A V2G car whose state of charge is known ends at 45 %: no taper.
                    {"id": "v2g", "arrival": 0, "departure": 20, "energy_kwh": 15.0, "max_kw": 11.0, "min_kw": -11.0,
                     "battery_kwh": 60.0, "soc_kwh": 12.0, "min_soc_kwh": 6.0},
                ]}
    by_id = {s["id"]: s for s in dayahead.as_planned(instance)["sessions"]}
    assert by_id["ac22"]["departure"] == 24 and by_id["ac22"]["max_kw"] == 11.0
    assert by_id["tight"]["departure"] == 25
    assert by_id["cut"]["departure"] == 40
    assert by_id["dc"]["departure"] == 17 and by_id["dc"]["max_kw"] == 50.0
    assert by_id["v2g"] == instance["sessions"][4]


def test_the_evening_before_is_charged_with_the_taper() -> None:
    # Plugged in 4 ISPs before the pool's schedule starts (1 h at 11 kW on a 22 kW charger): 8.84 kWh of 15 taken,
    # not 11 kWh at 11 kW nor 15 at 22 kW. A 4 kWh need taken to end full starts at 93.3 %, in the taper: in its
    # half hour 60 x (1 - 14/15) x (1 - exp(-0.5 / tau)) kWh, not all 4.
    instance = {"start": "2024-06-11T21:00:00Z", "isp_minutes": 15, "prices_eur_per_mwh": [1.0] * 40,
                "sessions": [
                    {"id": "late", "arrival": 0, "departure": 40, "energy_kwh": 15.0, "max_kw": 22.0, "min_kw": 0.0},
                    {"id": "small", "arrival": 2, "departure": 40, "energy_kwh": 4.0, "max_kw": 11.0, "min_kw": 0.0},
                ]}
    settled = {s["id"]: s for s in dayahead.settle_lead(instance, 4, taper=True)["sessions"]}
    assert settled["late"]["energy_kwh"] == pytest.approx(15.0 - _taken_in(1.0))
    assert _taken_in(1.0) == pytest.approx(8.839, abs=1e-3)
    assert settled["small"]["energy_kwh"] == pytest.approx(4.0 - 4.0 * (1.0 - math.exp(-0.5 / TAU_H)))
    assert settled["small"]["energy_kwh"] == pytest.approx(2.529, abs=1e-3)
    # Without the taper both are done in the lead (15 kWh at 22 kW, 4 kWh at 11 kW) and drop.
    assert dayahead.settle_lead(instance, 4)["sessions"] == []


def test_a_car_still_to_come_is_bought_to_its_departure_without_its_taper() -> None:
    # Two 15 kWh cars from ISP 10 to 35 on a 22 kW charger: the one plugged in is planned done 11 ISPs early (its
    # need taken to end full of 60 kWh, 2.51 h of taper more than 15 / 11 h). The one the forecast expects
    # (``to_come``) is too by default; without ``taper_to_come`` it keeps its departure, as the re-plan's forecast
    # arrivals do. Both at 11 kW.
    instance = {"start": "2024-06-11T22:00:00Z", "isp_minutes": 15, "prices_eur_per_mwh": [1.0] * 40,
                "sessions": [
                    {"id": "here", "arrival": 10, "departure": 35, "energy_kwh": 15.0, "max_kw": 22.0, "min_kw": 0.0},
                    {"id": "forecast-10-0", "arrival": 10, "departure": 35, "energy_kwh": 15.0, "max_kw": 22.0,
                     "min_kw": 0.0, "to_come": True},
                ]}
    tapered = {s["id"]: s for s in dayahead.as_planned(instance)["sessions"]}
    assert tapered["here"]["departure"] == 24 and tapered["forecast-10-0"]["departure"] == 24
    by_id = {s["id"]: s for s in dayahead.as_planned(instance, taper_to_come=False)["sessions"]}
    assert by_id["here"]["departure"] == 24 and by_id["here"]["max_kw"] == 11.0
    assert by_id["forecast-10-0"]["departure"] == 35 and by_id["forecast-10-0"]["max_kw"] == 11.0


class EveningArrival:
    """A pool of one car the forecast expects at ISP 72 (18:00 local) with 20 kWh on 11 kW, leaving at 88 (22:00)."""

    def dayahead_instance(self, pool: str, start: datetime, end: datetime, *, reliability: float = 0.5,
                          prices_eur_per_mwh: list[float]) -> dict[str, Any]:
        return {"start": start.isoformat(), "isp_minutes": 15, "prices_eur_per_mwh": prices_eur_per_mwh,
                "sessions": [{"id": "forecast-72-0", "arrival": 72, "departure": 88, "energy_kwh": 20.0,
                              "max_kw": 11.0, "min_kw": 0.0, "to_come": True}]}


def test_the_evening_is_not_forced_for_a_car_still_to_come_without_its_taper() -> None:
    # Prices 200 until ISP 84 (21:00), then 50. Tapered to full of 60 kWh (its last 12 kWh above 80 %: 2.51 h more
    # than at 11 kW, 11 ISPs early, but never before its 8 ISPs at 11 kW from arrival), it is bought done by ISP
    # 80: all 20 kWh at 200. Up to its departure its 4 cheap ISPs take 4 x 2.75 = 11 kWh and 9 kWh are left at 200.
    prices = [200.0 if t < 84 else 50.0 for t in range(96)]
    tapered = np.asarray(dayahead.build_content(EveningArrival(), BidPolicy(), pool="zone:NL", day=DAY,
                                                prices=prices, method="auto")["forecast_pool_kw"])
    assert tapered[72:80].sum() / 4.0 == pytest.approx(20.0) and tapered[80:].sum() == 0.0
    content = dayahead.build_content(EveningArrival(), BidPolicy(dayahead_taper_to_come=False), pool="zone:NL",
                                     day=DAY, prices=prices, method="auto")
    schedule = np.asarray(content["forecast_pool_kw"])
    np.testing.assert_allclose(schedule[84:88], [11.0] * 4)
    assert schedule[72:84].sum() / 4.0 == pytest.approx(9.0)
