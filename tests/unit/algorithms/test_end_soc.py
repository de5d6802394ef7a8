"""Where a car stops charging, learned from its finished sessions: hand cases for the estimator, the learned
targets, and the taper models (planner, day-ahead position, need floors) that plan with them."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib.resources import files

import numpy as np
import pytest

from vpp.algorithms.dispatch import plan_need_floor_kw
from vpp.algorithms.end_soc import (
    LEAST_ARRIVAL_SOC,
    SMALLEST_BATTERY_KWH,
    learn_targets,
    live_battery_kwh,
    session_battery_kwh,
    session_end_soc,
    small_car_ends_above,
    taper_soc,
)
from vpp.algorithms.planning import taper_departure
from vpp.bids.dayahead import as_planned
from vpp.config import Settings
from vpp.domain.dispatch import DispatchSnapshot, GroupCaps

NAN = math.nan
QUARTER = [0.0, 900.0, 1800.0, 2700.0, 3600.0]
QUARTER_END = [900.0, 1800.0, 2700.0, 3600.0, 4500.0]


def _end(power: list[float], *, soc: list[float] | None = None, limit_s: Sequence[float] = (),
         limit_kw: Sequence[float] = ()) -> float:
    n = len(power)
    return session_end_soc(power, [NAN] * n, soc or [NAN] * n, QUARTER[:n], QUARTER_END[:n], 11.0, full_kw=11.0,
                           limit_s=limit_s, limit_kw=limit_kw)


def test_the_taper_inverted_gives_the_state_of_charge_of_a_draw() -> None:
    # Half of full power: (1 - soc) / 0.2 = 0.5, soc 0.9. At full power or more: the taper's start.
    assert taper_soc(5.5, 11.0) == pytest.approx(0.9)
    assert taper_soc(11.0, 11.0) == pytest.approx(0.8)
    assert taper_soc(20.0, 11.0) == pytest.approx(0.8)
    with pytest.raises(ValueError, match="positive full power"):
        taper_soc(5.0, 0.0)


def test_a_reported_state_of_charge_at_the_stop_is_the_cars_end() -> None:
    # 11 kW, then 7.3 kW to 90 % where it stops; a reading without energy follows while it is still plugged in.
    assert _end([11.0, 7.3, 0.0], soc=[77.3, 90.0, 90.0]) == pytest.approx(0.9)


def test_a_car_that_tapered_and_stopped_shows_its_end_through_its_taper() -> None:
    # Reading 2 at 6.6 kW, clearly below 11 kW: 1 - 0.2 x 6.6 / 11 = 0.88 at its middle; then half of it (0.825 kWh)
    # and reading 3's 0.5 kWh (2 kW over 15 minutes) on a 60 kWh battery: 0.88 + 1.325 / 60 = 0.902083.
    assert _end([11.0, 11.0, 6.6, 2.0, 0.0]) == pytest.approx(0.88 + 1.325 / 60.0)


def test_a_car_that_stopped_without_tapering_ended_at_most_near_80_pct() -> None:
    # At 11 kW through reading 1 (at most 0.8 at its end), then 0.75 kWh: 0.8 + 0.75 / 60 = 0.8125.
    assert _end([11.0, 11.0, 3.0, 0.0]) == pytest.approx(0.8125)


def test_a_draw_at_its_limit_bounds_the_state_of_charge_by_the_limit() -> None:
    # A 6 kW limit sent before reading 1: its 5 kW is not clearly below 6, so the car was at most where it can still
    # draw 6 kW (1 - 0.2 x 6 / 11 = 0.890909), then 1 kWh: 0.890909 + 1 / 60 = 0.907576.
    assert _end([11.0, 5.0, 4.0, 0.0], limit_s=[800.0], limit_kw=[6.0]) == pytest.approx(
        1.0 - 0.2 * 6.0 / 11.0 + 1.0 / 60.0)
    # A limit changed within the reading: nothing is judged.
    assert math.isnan(_end([11.0, 5.0, 4.0, 0.0], limit_s=[800.0, 1300.0], limit_kw=[6.0, 4.0]))


def test_a_car_that_left_charging_or_was_held_at_zero_is_not_judged() -> None:
    assert math.isnan(_end([11.0, 11.0, 6.6]))
    # Held at 0 kW from (about) the start of reading 2: the dispatcher stopped it, not the car.
    assert math.isnan(_end([11.0, 11.0, 0.0], limit_s=[1790.0], limit_kw=[0.0]))
    # Held at 0 kW during reading 2, the limit cleared (NaN) at the start of reading 3, and still nothing: the car
    # stopped on its own; at 11 kW through reading 1, then 0.75 kWh.
    assert _end([11.0, 11.0, 3.0, 0.0], limit_s=[2500.0, 2710.0], limit_kw=[0.0, NAN]) == pytest.approx(0.8125)
    # A limit of 5 kW in force through reading 3 let it draw too.
    assert _end([11.0, 11.0, 3.0, 0.0], limit_s=[2000.0], limit_kw=[5.0]) == pytest.approx(0.8125)
    assert math.isnan(_end([0.0, 0.0]))
    with pytest.raises(ValueError, match="one length"):
        session_end_soc([1.0], [NAN, NAN], [NAN], [0.0], [1.0], 11.0, full_kw=11.0)


def test_targets_per_car_are_the_highest_seen_and_a_pool_takes_a_high_quantile() -> None:
    ends = [0.9, 0.95, NAN, 0.85, 0.9, 0.9]
    keys = [("token:a",), ("token:a", "evse:h1"), ("token:b",), ("token:c",), (), ()]
    pools = ["cpo:NL-A"] * 3 + ["cpo:NL-B"] * 3
    learned = learn_targets(ends, keys, pools, quantile=0.9, min_sessions=3)
    assert learned.judged == 5
    assert learned.by_car == {"token:a": 0.95, "evse:h1": 0.95, "token:c": 0.85}
    # cpo:NL-A has two judged sessions (too few): no prior; cpo:NL-B: the 0.9 quantile of 0.85, 0.9, 0.9.
    assert learned.by_pool == {"cpo:NL-B": 0.9}
    assert learned.overall == pytest.approx(0.95)
    assert learned.target(["token:z", "evse:h1"], "cpo:NL-B") == 0.95
    assert learned.target(["token:z"], "cpo:NL-B") == 0.9
    assert learned.target(["token:z"], "cpo:NL-A") == pytest.approx(0.95)
    # Nothing learned: the full-battery assumption.
    assert learn_targets([NAN], [("token:a",)], ["cpo:NL-A"]).target(["token:a"], "cpo:NL-A") == 1.0
    with pytest.raises(ValueError, match="one entry per session"):
        learn_targets([0.9], [], [])


def test_a_battery_shows_in_the_energy_between_two_reported_states_of_charge() -> None:
    # 40 % -> 80 % over readings 1 and 2 (the first reading's energy came before its 40 %): 24 kWh / 0.4 = 60 kWh.
    assert session_battery_kwh([5.0, 12.0, 12.0, 0.0], [40.0, 60.0, 80.0, 80.0]) == pytest.approx(60.0)
    # Too small a span (rounding of whole percents would matter), or not reported: not known.
    assert math.isnan(session_battery_kwh([5.0, 2.0], [40.0, 44.0]))
    assert math.isnan(session_battery_kwh([5.0, 2.0], [NAN, NAN]))


def test_a_plugged_in_cars_battery_shows_over_a_few_points_of_its_own_readings() -> None:
    # 11 kW for three quarter hours on 60 kWh: 10.0 -> 14.6 -> 19.2 % (reported to 0.1 point); the energy after the
    # first reported state of charge, 5.5 kWh over 9.2 points: 59.78 kWh.
    assert live_battery_kwh([2.75, 2.75, 2.75], [10.0, 14.6, 19.2]) == pytest.approx(5.5 / 0.092)
    # At least 3 points: 2.5 points is too few; a state of charge never reported: not known.
    assert math.isnan(live_battery_kwh([2.75, 1.5], [10.0, 12.5]))
    assert math.isnan(live_battery_kwh([2.75, 2.75], [NAN, NAN]))
    # 0.5 kWh over 10 points is a 5-kWh battery: a bad reading, not a car.
    assert math.isnan(live_battery_kwh([0.25, 0.5], [40.0, 50.0]))
    # The stricter span of finished sessions is still 20 points.
    assert math.isnan(session_battery_kwh([2.75, 2.75, 2.75], [10.0, 14.6, 19.2]))


def test_a_large_need_is_planned_to_end_high_on_a_small_battery_of_its_pool() -> None:
    # Ten sessions ending at 90 %; batteries 40-85 kWh: the small battery (10 % quantile, lower) is 40 kWh. The
    # smallest plausible battery set at 60 kWh, arriving empty (``small_car_ends_above`` only above 54 kWh).
    learned = learn_targets([0.9] * 10, [()] * 10, ["cpo:NL-A"] * 10,
                            battery_kwh=[40.0, 45.0, 50.0, 55.0, 60.0, 65.0, 70.0, 75.0, 80.0, 85.0],
                            smallest_battery_kwh=60.0, least_arrival_soc=0.0)
    assert learned.small_battery_kwh == {"cpo:NL-A": 40.0}
    # 20 kWh fills half of it: the prior stands; 38 kWh: 95 %; 45 kWh: more than it holds, full.
    assert learned.target((), "cpo:NL-A", 20.0) == pytest.approx(0.9)
    assert learned.target((), "cpo:NL-A", 38.0) == pytest.approx(0.95)
    assert learned.target((), "cpo:NL-A", 45.0) == pytest.approx(1.0)
    # Without batteries learned, the taper's assumed 60 kWh: 57 kWh ends at 95 % (smallest plausible 64 kWh).
    assert learn_targets([0.9] * 10, [()] * 10, ["p"] * 10, smallest_battery_kwh=64.0, least_arrival_soc=0.0
                         ).target((), "p", 57.0) == pytest.approx(0.95)


def test_a_need_a_smallest_car_would_end_above_the_prior_with_is_planned_full() -> None:
    # The full demo's short cars: Volkswagen Golfs (32 kWh) and Nissan Leafs (39 kWh) charging on AC, which
    # report no state of charge, so no small battery is learned (batteries all NaN). Pool prior 0.9.
    learned = learn_targets([0.9] * 10, [()] * 10, ["cpo:NL-A"] * 10)
    assert learned.by_pool == {"cpo:NL-A": 0.9} and math.isnan(learned.overall_small_battery_kwh)
    # A 32 kWh car arriving at 5 % ends at 0.05 + e / 32: above 0.9 from e > 0.85 x 32 = 27.2 kWh.
    assert learned.target((), "cpo:NL-A", 10.0) == pytest.approx(0.9)
    assert learned.target((), "cpo:NL-A", 27.0) == pytest.approx(0.9)
    assert learned.target((), "cpo:NL-A", 27.5) == 1.0
    assert learned.target((), "cpo:NL-A", 30.0) == 1.0
    # A car's own target gives way the same (its battery is not known either), and so does a forecast car's.
    own = learn_targets([0.8], [("token:a",)], ["cpo:NL-A"])
    assert own.target(("token:a",), "cpo:NL-A", 20.0) == pytest.approx(0.8)  # 0.05 + 20 / 32 = 0.675
    assert own.target(("token:a",), "cpo:NL-A", 25.0) == 1.0  # 0.05 + 25 / 32 = 0.83 > 0.8
    # Another smallest battery and least arrival (settings): 50 kWh arriving empty, 0.9 up to 45 kWh.
    wide = learn_targets([0.9] * 10, [()] * 10, ["p"] * 10, smallest_battery_kwh=50.0, least_arrival_soc=0.0)
    assert wide.target((), "p", 45.0) == pytest.approx(0.9)
    assert wide.target((), "p", 45.5) == 1.0
    # Nothing learned: full, as before.
    assert learn_targets([], [], []).target((), "p", 10.0) == 1.0


def test_the_smallest_plausible_battery_is_the_shipped_ev_models_smallest() -> None:
    specs = json.loads(files("vpp.data").joinpath("ev2gym", "ev_specs.json").read_text(encoding="utf-8"))
    assert min(float(v["battery_capacity"]) for v in specs.values()) == SMALLEST_BATTERY_KWH
    assert Settings().end_soc_smallest_battery_kwh == SMALLEST_BATTERY_KWH
    assert Settings().end_soc_least_arrival_soc == LEAST_ARRIVAL_SOC


def test_small_car_ends_above_by_hand() -> None:
    # 0.9 - 0.05 = 0.85 of 32 kWh: 27.2 kWh.
    assert not small_car_ends_above(27.2, 0.9)
    assert small_car_ends_above(27.3, 0.9)
    # A Leaf (39 kWh) arriving at 5 % with 33 kWh ends at 0.896: at or below the prior on its own battery, but a
    # Golf with it would not: the smallest battery decides.
    assert small_car_ends_above(33.0, 0.9)
    # A full target is full already; a bad battery or arrival is an error.
    assert not small_car_ends_above(60.0, 1.0)
    with pytest.raises(ValueError):
        small_car_ends_above(10.0, 0.9, 0.0)
    with pytest.raises(ValueError):
        small_car_ends_above(10.0, 0.9, 32.0, 1.0)


def test_a_learned_target_plans_a_car_to_finish_later_and_no_target_keeps_the_full_battery_plan() -> None:
    # 15 kWh at 11 kW: ending full adds 2.51 h (11 ISPs), ending at 90 % 0.21 h (1 ISP).
    departure = taper_departure(np.array([40, 40, 40]), np.full(3, 15.0), np.full(3, 11.0), 0.25,
                                target_soc=np.array([0.9, NAN, 0.75]))
    np.testing.assert_array_equal(departure, [39, 29, 40])
    # A known state of charge and battery win over the learned target: 45 + 15 of 60 kWh ends full.
    known = taper_departure(np.array([40]), np.array([15.0]), np.array([11.0]), 0.25, soc_kwh=np.array([45.0]),
                            battery_kwh=np.array([60.0]), target_soc=np.array([0.9]))
    np.testing.assert_array_equal(known, [29])


def test_the_day_ahead_position_plans_with_the_same_learned_target() -> None:
    instance = {"start": "2024-06-12T00:00:00Z", "isp_minutes": 15, "prices_eur_per_mwh": [50.0] * 48,
                "sessions": [{"id": "a", "arrival": 0, "departure": 40, "energy_kwh": 15.0, "max_kw": 11.0,
                              "min_kw": 0.0, "target_soc": 0.9},
                             {"id": "b", "arrival": 0, "departure": 40, "energy_kwh": 15.0, "max_kw": 11.0,
                              "min_kw": 0.0}]}
    planned = as_planned(instance)
    assert [s["departure"] for s in planned["sessions"]] == [39, 29]


def test_the_need_floors_let_a_car_with_a_learned_target_wait_where_a_full_battery_would_not() -> None:
    # 12 kWh in 2 h, seen at 11 kW, planned at 0. Ending full of 60 kWh, its last 12 kWh are in the taper and it is
    # held to its pace (6 kW); ending at 90 % the 1.75 h after this quarter take it all (6 kWh in 0.84 h of taper
    # at 9.9 kW, the rest at full power), so it may wait.
    def snapshot(target: float) -> DispatchSnapshot:
        return DispatchSnapshot(
            pool="zone:NL", at=datetime(2024, 6, 12, 20, tzinfo=UTC), session_ids=("s0",), min_kw=np.zeros(1),
            max_kw=np.full(1, 11.0), energy_needed_kwh=np.array([12.0]), hours_to_departure=np.array([2.0]),
            current_kw=np.zeros(1), baseline_kw=np.full(1, 11.0),
            groups=GroupCaps(group_ids=(), max_kw=np.zeros(0), member_session=np.zeros(0, dtype=np.int64),
                             member_group=np.zeros(0, dtype=np.int64)),
            schedule_kw=NAN, planned_kw=np.zeros(1), target_soc=np.array([target]))

    floors = [plan_need_floor_kw(snapshot(t), np.array([2.0]), np.full(1, 11.0), seen_kw=np.array([11.0]))
              for t in (NAN, 0.9)]
    assert floors[0] is not None and floors[1] is not None
    assert floors[0][0] == pytest.approx(6.0)
    assert floors[1][0] == pytest.approx(0.0)
