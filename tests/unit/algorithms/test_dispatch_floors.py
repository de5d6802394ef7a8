"""The dispatcher's allocation problem: laxity floors, and V2G discharge within the state-of-charge floor."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pytest

from vpp.algorithms.allocation import allocate
from vpp.algorithms.dispatch import PoolLimits, build_problem
from vpp.domain.dispatch import DispatchSnapshot, GroupCaps

AT = datetime(2025, 6, 2, 18, 0, tzinfo=UTC)


def _snapshot(discharge_kwh: list[float] | None) -> DispatchSnapshot:
    # A V2G car (10 kWh in 10 h at up to 11 kW) and a car that needs 22 kWh in 2.25 h at 11 kW.
    empty = np.zeros(0, dtype=np.int64)
    return DispatchSnapshot(
        pool="zone:NL", at=AT, session_ids=("v2g", "urgent"), min_kw=np.array([-11.0, 0.0]),
        max_kw=np.array([11.0, 11.0]), energy_needed_kwh=np.array([10.0, 22.0]),
        hours_to_departure=np.array([10.0, 2.25]), current_kw=np.array([11.0, 11.0]),
        baseline_kw=np.array([11.0, 11.0]),
        groups=GroupCaps(group_ids=(), max_kw=np.zeros(0), member_session=empty, member_group=empty),
        schedule_kw=math.nan,
        discharge_kwh=None if discharge_kwh is None else np.array(discharge_kwh))


def test_an_upward_activation_can_use_v2g_discharge_while_needs_stay_feasible() -> None:
    nan = np.full(2, math.nan)
    # Margin 0.25 h: the urgent car has 2 h for 22 kWh, so it stays at 11 kW; the V2G car may discharge 11 kW.
    cycle = build_problem(_snapshot(None), PoolLimits(), -30.0, nan, nan, nan, finish_margin_h=0.25)
    np.testing.assert_allclose(allocate(cycle.problem).setpoints_kw, [-11.0, 11.0])


def test_discharge_is_limited_by_the_energy_above_the_soc_floor() -> None:
    nan = np.full(2, math.nan)
    # 1.5 kWh above the floor over the quarter hour the limit holds: at most 6 kW of discharge.
    cycle = build_problem(_snapshot([1.5, 0.0]), PoolLimits(), -30.0, nan, nan, nan, finish_margin_h=0.25)
    assert cycle.problem.min_kw[0] == pytest.approx(-6.0)
    np.testing.assert_allclose(allocate(cycle.problem).setpoints_kw, [-6.0, 11.0])
