"""The dispatcher's allocation problem keeps a V2G car's discharge within its state-of-charge floor."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pytest

from vpp.algorithms.dispatch import PoolLimits, build_problem
from vpp.domain.dispatch import DispatchSnapshot, GroupCaps

AT = datetime(2025, 6, 2, 18, 0, tzinfo=UTC)


def _snapshot(discharge_kwh: list[float] | None) -> DispatchSnapshot:
    # A V2G car (10 kWh in 10 h at up to 11 kW) and a charge-only car.
    empty = np.zeros(0, dtype=np.int64)
    return DispatchSnapshot(
        pool="zone:NL", at=AT, session_ids=("v2g", "other"), min_kw=np.array([-11.0, 0.0]),
        max_kw=np.array([11.0, 11.0]), energy_needed_kwh=np.array([10.0, 22.0]),
        hours_to_departure=np.array([10.0, 5.0]), current_kw=np.array([11.0, 11.0]),
        baseline_kw=np.array([11.0, 11.0]),
        groups=GroupCaps(group_ids=(), max_kw=np.zeros(0), member_session=empty, member_group=empty),
        schedule_kw=math.nan,
        discharge_kwh=None if discharge_kwh is None else np.array(discharge_kwh))


def test_discharge_is_limited_by_the_energy_above_the_soc_floor_over_a_quarter_hour() -> None:
    nan = np.full(2, math.nan)
    # 1.5 kWh above the floor over the quarter hour a limit may hold: at most 6 kW of discharge.
    cycle = build_problem(_snapshot([1.5, 0.0]), PoolLimits(), -30.0, nan, nan, nan)
    assert cycle.problem.min_kw == pytest.approx([-6.0, 0.0])
    # Unknown room: the charger's discharge limit alone.
    assert build_problem(_snapshot(None), PoolLimits(), -30.0, nan, nan, nan).problem.min_kw[0] == -11.0
