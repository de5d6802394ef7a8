"""The plan's peak as a soft cap of the pool's baseline and of the closed loop's correction (issue 16)."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
import pytest

from tests.unit.algorithms.test_dispatch_plan_floors import _snapshot as plan_floors_snapshot
from vpp.algorithms.allocation import allocate
from vpp.algorithms.dispatch import PoolLimits, build_problem, plan_peak_room_kw, pool_baseline_kw
from vpp.domain.dispatch import DispatchSnapshot


def _snapshot(need: list[float], hours: list[float], planned: list[float], peak: float | None) -> DispatchSnapshot:
    """The plan-floors tests' pool of 11-kW cars (planned, baseline at full power), with the plan's peak."""
    return replace(plan_floors_snapshot(need, hours, planned), at=datetime(2024, 6, 11, 12, tzinfo=UTC),
                   plan_peak_kw=peak)


def test_a_car_plugged_in_since_the_plan_counts_within_the_plans_peak() -> None:
    # Three planned cars at 8 kW (24 kW) and one new car without a plan at its baseline of 11 kW: 35 kW before; the
    # plan's peak of 30 kW (it kept 6 kW for a forecast arrival) holds the baseline at 30 kW.
    snapshot = _snapshot([20.0] * 4, [8.0] * 4, [8.0, 8.0, 8.0, math.nan], 30.0)
    assert pool_baseline_kw(snapshot, PoolLimits()) == pytest.approx(30.0)
    assert pool_baseline_kw(replace(snapshot, plan_peak_kw=None), PoolLimits()) == pytest.approx(35.0)
    # Below the peak nothing changes (a plan selling at -20 kW has a peak of 0 kW here: 24 + 11 > 0 is held at 0).
    assert pool_baseline_kw(replace(snapshot, plan_peak_kw=50.0), PoolLimits()) == pytest.approx(35.0)
    assert pool_baseline_kw(replace(snapshot, plan_peak_kw=-20.0), PoolLimits()) == pytest.approx(0.0)


def test_need_floors_still_go_above_the_plans_peak() -> None:
    # Two cars each needing 10 kWh in 1.25 h, at 20 of 60 kWh (ending at 50 %: no taper). The finish margin of
    # 0.25 h leaves 1 h: a pace of 10 kW; after this quarter a car not yet seen drawing counts on 0.9 x 3.6 kW for
    # 0.75 h, 2.43 kWh, so its laxity floor is (10 - 2.43) / 0.25 = 30.28 kW and its floor min(10, max(5, 30.28)) =
    # 10 kW. Planned at 5 kW each with a plan peak of 10 kW: the target is 10 kW, the floors give 20 kW.
    snapshot = replace(_snapshot([10.0, 10.0], [1.25, 1.25], [5.0, 5.0], 10.0), soc_kwh=np.array([20.0, 20.0]),
                       battery_kwh=np.array([60.0, 60.0]))
    target = pool_baseline_kw(snapshot, PoolLimits())
    assert target == pytest.approx(10.0)
    cycle = build_problem(snapshot, PoolLimits(), target, np.full(2, np.nan), np.full(2, np.nan), np.full(2, np.nan),
                          finish_margin_h=0.25, plan_floors=True)
    assert allocate(cycle.problem).setpoints_kw.sum() == pytest.approx(20.0, rel=1e-6)


def test_the_loop_may_raise_the_pool_only_up_to_the_plans_peak_unless_activated() -> None:
    assert plan_peak_room_kw(100.0, 80.0, 0.0) == pytest.approx(20.0)
    assert plan_peak_room_kw(100.0, 120.0, 0.0) == 0.0  # already above (floors): no more
    assert plan_peak_room_kw(100.0, 80.0, -0.05) == math.inf  # a downward activation: the loop follows it
    assert plan_peak_room_kw(None, 80.0, 0.0) == math.inf
