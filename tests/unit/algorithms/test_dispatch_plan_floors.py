"""The allocator holds a planned car at its plan below its even pace, never below what keeps its need feasible."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from vpp.algorithms.allocation import allocate
from vpp.algorithms.dispatch import PoolLimits, build_problem, car_power_kw, plan_need_floor_kw
from vpp.algorithms.taper import extra_hours
from vpp.domain.dispatch import DispatchSnapshot, GroupCaps

EMPTY = np.zeros(0, dtype=np.int64)


def _snapshot(need: list[float], hours: list[float], planned: list[float] | None) -> DispatchSnapshot:
    n = len(need)
    return DispatchSnapshot(
        pool="zone:NL", at=datetime(2024, 6, 12, 20, tzinfo=UTC), session_ids=tuple(f"s{k}" for k in range(n)),
        min_kw=np.zeros(n), max_kw=np.full(n, 11.0), energy_needed_kwh=np.array(need, dtype=np.float64),
        hours_to_departure=np.array(hours, dtype=np.float64), current_kw=np.zeros(n), baseline_kw=np.full(n, 11.0),
        groups=GroupCaps(group_ids=(), max_kw=np.zeros(0), member_session=EMPTY, member_group=EMPTY),
        schedule_kw=float("nan"), planned_kw=None if planned is None else np.array(planned, dtype=np.float64))


def test_a_car_planned_for_the_night_may_wait_but_a_car_short_of_time_keeps_its_laxity_floor() -> None:
    # Car 0: 20 kWh in 10 h, planned at 0 now: even at 3.6 kW (an AC car not yet seen drawing) 90 % of it for the
    # 9.75 h after this quarter gives 31.6 kWh: floor 0. Car 1: 20 kWh in 6.3 h, planned at 0, not yet seen
    # drawing: 0.9 x 3.6 kW x 6.05 h = 19.602 kWh afterwards, so it takes 0.398 kWh now (1.592 kW). Car 2 has no
    # plan (NaN): its pace, 4 kW.
    snapshot = _snapshot([20.0, 20.0, 20.0], [10.0, 6.3, 5.0], [0.0, 0.0, np.nan])
    floor = plan_need_floor_kw(snapshot, np.asarray(snapshot.hours_to_departure), np.full(3, 11.0))
    assert floor is not None
    np.testing.assert_allclose(floor, [0.0, 1.592, 4.0], atol=1e-9)


def test_a_car_seen_drawing_may_wait_longer_than_one_not_yet_seen() -> None:
    # Car 1 of the case above, seen drawing 11 kW (now, or earlier: ``seen_kw``): 9.9 kW for 6.05 h is far more
    # than 20 kWh, even with the taper near full, so it may wait.
    snapshot = _snapshot([20.0, 20.0], [6.3, 6.3], [0.0, 0.0])
    now = DispatchSnapshot(**{**snapshot.__dict__, "current_kw": np.array([11.0, 0.0])})
    floor = plan_need_floor_kw(now, np.asarray(snapshot.hours_to_departure), np.full(2, 11.0),
                               seen_kw=np.array([np.nan, 11.0]))
    assert floor is not None
    np.testing.assert_allclose(floor, [0.0, 0.0], atol=1e-9)


def test_a_car_near_full_is_held_to_its_pace_where_the_taper_leaves_too_little_time() -> None:
    # 12 kWh in 2 h, seen drawing 11 kW, planned at 0. At full power 1.75 h would give 17.3 kWh, but a need that
    # ends full has its last 12 kWh in the taper (60 kWh battery): the 1.75 h after this quarter give 1.87 kWh
    # (1.2 kWh at 10 % of 9.9 kW, 1.21 h, then 0.53 h of the taper). The floor is the even pace, 6 kW.
    snapshot = _snapshot([12.0], [2.0], [0.0])
    floor = plan_need_floor_kw(snapshot, np.asarray(snapshot.hours_to_departure), np.full(1, 11.0),
                               seen_kw=np.array([11.0]))
    assert floor is not None
    assert floor[0] == pytest.approx(6.0)


def test_car_power_on_ac_is_at_most_11_kw_and_at_least_3_6_kw_until_seen() -> None:
    full, least = car_power_kw(np.array([22.0, 11.0, 22.0, 50.0, 22.0]), np.array([np.nan, np.nan, 7.4, np.nan, 22.0]))
    np.testing.assert_allclose(full, [11.0, 11.0, 11.0, 50.0, 22.0])
    np.testing.assert_allclose(least, [3.6, 3.6, 7.4, 50.0, 22.0])


def test_a_car_seen_held_by_its_onboard_charger_is_taken_at_that_power() -> None:
    # A Leaf seen at 3.6 kW on an 11-kW wallbox, a 7.2-kW Golf on a 22-kW charger: their full power is their own
    # (the least never above it); not known (NaN): 11 kW as before; DC keeps the charger's maximum.
    full, least = car_power_kw(np.array([11.0, 22.0, 22.0, 50.0]), np.array([3.6, 7.4, np.nan, np.nan]),
                               np.array([3.6, 7.2, np.nan, np.nan]))
    np.testing.assert_allclose(full, [3.6, 7.2, 11.0, 50.0])
    np.testing.assert_allclose(least, [3.6, 7.2, 3.6, 50.0])


def test_a_planned_cars_pace_ends_the_tapers_extra_time_before_departure() -> None:
    # 15 kWh in 10 h, planned above its pace: at 11 kW a need that ends full takes 2.51 h more than 15 / 11 h
    # (vpp.algorithms.taper), so its floor is the pace over 10 - 0.25 - 2.51 h, not 9.75 h. Without a plan the
    # even pace over 9.75 h.
    extra = float(extra_hours(np.array([15.0]), np.array([11.0]))[0])
    assert extra == pytest.approx(2.5119, abs=1e-3)
    nan = np.full(1, np.nan)
    planned = build_problem(_snapshot([15.0], [10.0], [11.0]), PoolLimits(), 0.0, nan, nan, nan,
                            finish_margin_h=0.25, plan_floors=True)
    assert allocate(planned.problem).setpoints_kw[0] == pytest.approx(15.0 / (9.75 - extra), rel=1e-9)
    unplanned = build_problem(_snapshot([15.0], [10.0], None), PoolLimits(), 0.0, nan, nan, nan,
                              finish_margin_h=0.25, plan_floors=True)
    assert allocate(unplanned.problem).setpoints_kw[0] == pytest.approx(15.0 / 9.75, rel=1e-9)


def test_the_floor_is_never_above_the_even_pace_and_none_without_plans() -> None:
    snapshot = _snapshot([5.0], [10.0], [11.0])
    floor = plan_need_floor_kw(snapshot, np.asarray(snapshot.hours_to_departure), np.full(1, 11.0))
    assert floor is not None and floor[0] == pytest.approx(0.5)
    assert plan_need_floor_kw(_snapshot([5.0], [10.0], None), np.array([10.0]), np.full(1, 11.0)) is None


def test_the_pool_follows_a_plan_below_the_sum_of_even_paces() -> None:
    # Ten cars, 20 kWh each in 10 h, all planned at 0 now (the night is cheaper): the even paces add up to 20 kW,
    # and the allocation used to stay there whatever the target; with plans it follows a target of 0.
    snapshot = _snapshot([20.0] * 10, [10.0] * 10, [0.0] * 10)
    cycle = build_problem(snapshot, PoolLimits(), 0.0, np.full(10, np.nan), np.full(10, np.nan),
                          np.full(10, np.nan), finish_margin_h=0.25, plan_floors=True)
    assert allocate(cycle.problem).setpoints_kw.sum() == pytest.approx(0.0, abs=1e-6)
    # Off: the even paces, plan or not.
    cycle = build_problem(snapshot, PoolLimits(), 0.0, np.full(10, np.nan), np.full(10, np.nan),
                          np.full(10, np.nan), finish_margin_h=0.25)
    assert allocate(cycle.problem).setpoints_kw.sum() == pytest.approx(10 * 20.0 / 9.75, rel=1e-6)
    unplanned = _snapshot([20.0] * 10, [10.0] * 10, None)
    cycle = build_problem(unplanned, PoolLimits(), 0.0, np.full(10, np.nan), np.full(10, np.nan),
                          np.full(10, np.nan), finish_margin_h=0.25, plan_floors=True)
    assert allocate(cycle.problem).setpoints_kw.sum() == pytest.approx(10 * 20.0 / 9.75, rel=1e-6)
