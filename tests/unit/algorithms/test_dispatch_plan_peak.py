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
    # Three planned cars at 8 kW (24 kW) and one new car without a plan whose 20 kWh in 1.5 h are above its 11 kW:
    # it counts at 11 kW, 35 kW in all; the plan's peak of 30 kW (it kept 6 kW for a forecast arrival) holds the
    # baseline at 30 kW.
    snapshot = _snapshot([20.0] * 4, [8.0, 8.0, 8.0, 1.5], [8.0, 8.0, 8.0, math.nan], 30.0)
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


def test_a_car_plugged_in_since_the_plan_counts_at_its_even_pace_until_the_plan_has_it() -> None:
    # The new car needs 20 kWh in 8 h, taken to end full of 60 kWh: from 66.7 %, 8 kWh to 80 % at 11 kW, then the
    # taper's 12 kWh (tau = 0.2 x 60 / 11 = 1.091 h: 2.512 h to 98 %, 1.2 kWh at 1.1 kW in 1.091 h): 4.330 h in all,
    # 2.512 h more than 20 / 11 h. Paced over 8 h less the finish margin (0.25 h) and that: 20 / 5.238 h = 3.818 kW,
    # not its 11 kW, until its re-plan comes (24 + 3.818 kW).
    snapshot = _snapshot([20.0] * 4, [8.0] * 4, [8.0, 8.0, 8.0, math.nan], None)
    assert pool_baseline_kw(snapshot, PoolLimits()) == pytest.approx(27.818, abs=1e-3)
    # A car already done (baseline 0) counts at 0, one past its departure at its baseline; without any plan every
    # car counts at its baseline (11 kW each).
    done = replace(snapshot, baseline_kw=np.array([11.0, 11.0, 11.0, 0.0]))
    assert pool_baseline_kw(done, PoolLimits()) == pytest.approx(24.0)
    gone = replace(snapshot, hours_to_departure=np.array([8.0, 8.0, 8.0, 0.0]))
    assert pool_baseline_kw(gone, PoolLimits()) == pytest.approx(35.0)
    assert pool_baseline_kw(replace(snapshot, planned_kw=None), PoolLimits()) == pytest.approx(44.0)
    # A car of a site that plans its own cars behind the meter keeps its full power until its plan has it.
    site = replace(snapshot, follows_plan_discharge=np.array([False, False, False, True]))
    assert pool_baseline_kw(site, PoolLimits()) == pytest.approx(35.0)
    # Ending at a learned 90 % the taper adds less: from 56.7 % of 60 kWh, 14 kWh flat, then 6 kWh of the 12 above
    # 80 %: tau x ln(12 / 6) = 0.756 h against 6 / 11 = 0.545 h, 0.211 h more: 20 / 7.539 h = 2.653 kW.
    learned = replace(snapshot, target_soc=np.array([0.9] * 4))
    assert pool_baseline_kw(learned, PoolLimits()) == pytest.approx(24.0 + 20.0 / (7.75 - 0.2109), abs=2e-3)
