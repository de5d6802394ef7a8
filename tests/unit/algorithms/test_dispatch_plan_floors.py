"""The allocator holds a planned car at its plan below its even pace, never below what keeps its need feasible."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from vpp.algorithms.allocation import allocate
from vpp.algorithms.dispatch import PoolLimits, build_problem, plan_need_floor_kw
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
    # Car 0: 20 kWh in 10 h, planned at 0 now: floor 0 (pace 2 kW). Car 1: 20 kWh in 2.75 h, planned at 0: at
    # 70 % of 11 kW the 2.5 h after this quarter give 19.25 kWh, so it must take 0.75 kWh now (3 kW). Car 2 has
    # no plan (NaN): its pace, 4 kW.
    snapshot = _snapshot([20.0, 20.0, 20.0], [10.0, 2.75, 5.0], [0.0, 0.0, np.nan])
    floor = plan_need_floor_kw(snapshot, np.asarray(snapshot.hours_to_departure), np.full(3, 11.0))
    assert floor is not None
    np.testing.assert_allclose(floor, [0.0, 3.0, 4.0], atol=1e-9)


def test_a_car_on_a_22_kw_charger_is_taken_to_draw_11_kw_until_it_draws_more() -> None:
    # 20 kWh in 2.75 h on a 22 kW charger, planned at 0: taken as 11 kW (floor 3 kW as above); seen drawing 22 kW
    # now, it may wait (0.7 * 22 kW * 2.5 h = 38.5 kWh later).
    snapshot = _snapshot([20.0, 20.0], [2.75, 2.75], [0.0, 0.0])
    snapshot = DispatchSnapshot(**{**snapshot.__dict__, "max_kw": np.full(2, 22.0),
                                   "current_kw": np.array([11.0, 22.0])})
    floor = plan_need_floor_kw(snapshot, np.asarray(snapshot.hours_to_departure), np.full(2, 22.0))
    assert floor is not None
    np.testing.assert_allclose(floor, [3.0, 0.0], atol=1e-9)


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
    # Off (the default): the even paces, plan or not.
    cycle = build_problem(snapshot, PoolLimits(), 0.0, np.full(10, np.nan), np.full(10, np.nan),
                          np.full(10, np.nan), finish_margin_h=0.25)
    assert allocate(cycle.problem).setpoints_kw.sum() == pytest.approx(10 * 20.0 / 9.75, rel=1e-6)
    unplanned = _snapshot([20.0] * 10, [10.0] * 10, None)
    cycle = build_problem(unplanned, PoolLimits(), 0.0, np.full(10, np.nan), np.full(10, np.nan),
                          np.full(10, np.nan), finish_margin_h=0.25, plan_floors=True)
    assert allocate(cycle.problem).setpoints_kw.sum() == pytest.approx(10 * 20.0 / 9.75, rel=1e-6)
