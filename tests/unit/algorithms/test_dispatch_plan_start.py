"""A car its site plans behind the meter starts its allocation from its plan, not from the limit it had before."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from vpp.algorithms.allocation import allocate
from vpp.algorithms.dispatch import PoolLimits, build_problem, plan_start_kw
from vpp.domain.dispatch import DispatchSnapshot, GroupCaps

EMPTY = np.zeros(0, dtype=np.int64)


def _snapshot(follows: bool) -> DispatchSnapshot:
    # Two 7-kW cars at their houses: car 0 needs 20 kWh in 10 h, its site planned it at 7 kW now; car 1 needs
    # 5 kWh in 3 h, planned at 0 kW now. The ISP before, car 0 had 0 kW in force, car 1 6 kW.
    return DispatchSnapshot(
        pool="zone:FR", at=datetime(2024, 6, 12, 20, tzinfo=UTC), session_ids=("s0", "s1"),
        min_kw=np.zeros(2), max_kw=np.full(2, 7.0), energy_needed_kwh=np.array([20.0, 5.0]),
        hours_to_departure=np.array([10.0, 3.0]), current_kw=np.array([0.0, 6.0]), baseline_kw=np.full(2, 7.0),
        groups=GroupCaps(group_ids=(), max_kw=np.zeros(0), member_session=EMPTY, member_group=EMPTY),
        schedule_kw=float("nan"), planned_kw=np.array([7.0, 0.0]),
        follows_plan_discharge=np.array([follows, follows]))


def _allocated(follows: bool, pending: list[float]) -> np.ndarray:
    snapshot = _snapshot(follows)
    start = plan_start_kw(snapshot, np.array([0.0, 6.0]), np.array(pending))
    # The pool's target is the sum of the plans: 7 kW.
    cycle = build_problem(snapshot, PoolLimits(), 7.0, start, np.full(2, np.nan), np.full(2, np.nan))
    return np.asarray(allocate(cycle.problem).setpoints_kw)


def test_a_site_planned_car_starts_from_its_plan() -> None:
    # From the limits in force the 7 kW of the target stay split as the ISP before (car 0 at its even pace, 2 kW,
    # car 1 the rest); from the plans car 0 gets its 7 kW back and car 1 only its even pace (5 kWh / 3 h).
    from_limits = _allocated(False, [np.nan, np.nan])
    from_plans = _allocated(True, [np.nan, np.nan])
    assert from_limits.sum() == pytest.approx(7.0)
    assert from_plans.sum() == pytest.approx(7.0)
    assert from_limits[0] == pytest.approx(2.0)
    assert from_plans == pytest.approx([7.0 - 5.0 / 3.0, 5.0 / 3.0])


def test_a_limit_in_flight_is_where_the_allocation_starts() -> None:
    snapshot = _snapshot(True)
    start = plan_start_kw(snapshot, np.array([0.0, 6.0]), np.array([1.0, np.nan]))
    np.testing.assert_allclose(start, [0.0, 0.0])
    # No plan (NaN) or a pool plan's car: the limit in force.
    unplanned = DispatchSnapshot(**{**snapshot.__dict__, "planned_kw": np.array([np.nan, 0.0]),
                                    "follows_plan_discharge": np.array([True, False])})
    np.testing.assert_allclose(plan_start_kw(unplanned, np.array([0.0, 6.0]), np.full(2, np.nan)), [0.0, 6.0])
