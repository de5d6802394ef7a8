"""A site's cars stay under the capacity tariff's paid peak where their needs allow, and a car whose state of charge
is known is not held to a taper it will not reach (issue 19, sites behind the meter)."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from vpp.algorithms.allocation import allocate
from vpp.algorithms.dispatch import PoolLimits, build_problem, plan_need_floor_kw
from vpp.domain.dispatch import DispatchSnapshot, GroupCaps


def _site_snapshot(need: list[float], hours: list[float], planned: list[float], *, tariff_kw: float | None,
                   soc: list[float] | None = None) -> DispatchSnapshot:
    n = len(need)
    members = np.arange(n, dtype=np.int64)
    return DispatchSnapshot(
        pool="zone:SE", at=datetime(2024, 6, 11, 8, tzinfo=UTC), session_ids=tuple(f"s{k}" for k in range(n)),
        min_kw=np.zeros(n), max_kw=np.full(n, 11.0), energy_needed_kwh=np.array(need, dtype=np.float64),
        hours_to_departure=np.array(hours, dtype=np.float64), current_kw=np.full(n, 11.0),
        baseline_kw=np.full(n, 11.0),
        # The connection leaves 324 kW beside the building's load: it never binds here.
        groups=GroupCaps(group_ids=("site:campus",), max_kw=np.array([324.0]), member_session=members,
                         member_group=np.zeros(n, dtype=np.int64)),
        schedule_kw=float("nan"), planned_kw=np.array(planned, dtype=np.float64),
        tariff_max_kw=None if tariff_kw is None else np.array([tariff_kw]),
        soc_kwh=None if soc is None else np.array(soc, dtype=np.float64),
        battery_kwh=None if soc is None else np.full(n, 60.0))


def _cycle(snapshot: DispatchSnapshot, target_kw: float) -> tuple[float, np.ndarray, dict[str, int]]:
    nan = np.full(len(snapshot.session_ids), np.nan)
    cycle = build_problem(snapshot, PoolLimits(), target_kw, nan, nan, nan, finish_margin_h=0.25, plan_floors=True,
                          seen_kw=np.full(len(snapshot.session_ids), 11.0))
    return float(cycle.problem.group_max_kw[0]), allocate(cycle.problem).setpoints_kw, cycle.flags


def test_the_pool_target_does_not_take_the_site_above_its_paid_peak() -> None:
    # Three cars with 10 kWh each and 8 h left, planned at 11 kW: their floors are their pace (10 / 7.75 h), and
    # the pool target (33 kW) would have them all at full power. 15 kW of the paid peak is left above the
    # building's load: the site's group is held there.
    snapshot = _site_snapshot([10.0] * 3, [8.0] * 3, [11.0] * 3, tariff_kw=15.0, soc=[20.0] * 3)
    cap, setpoints, flags = _cycle(snapshot, 33.0)
    assert cap == pytest.approx(15.0)
    assert setpoints.sum() == pytest.approx(15.0, abs=1e-6)
    assert flags["tariff_capped_groups"] == 1
    # Without a capacity tariff the same cycle draws the target.
    _, free, _ = _cycle(_site_snapshot([10.0] * 3, [8.0] * 3, [11.0] * 3, tariff_kw=None, soc=[20.0] * 3), 33.0)
    assert free.sum() == pytest.approx(33.0, abs=1e-6)


def test_a_car_that_must_charge_now_raises_the_cap_to_its_need() -> None:
    # Car 0: 11 kWh in 1 h (0.75 h after the finish margin), at 20 of 60 kWh (no taper): after this quarter 90 %
    # of 11 kW for 0.5 h gives 4.95 kWh, so it must take 11 kW now (its laxity floor, 24.2 kW, clipped to 11).
    # Cars 1 and 2 may wait. With 5 kW left under the paid peak the cap rises to car 0's 11 kW, no more.
    snapshot = _site_snapshot([11.0, 10.0, 10.0], [1.0, 8.0, 8.0], [0.0, 0.0, 0.0], tariff_kw=5.0,
                              soc=[20.0, 20.0, 20.0])
    cap, setpoints, _ = _cycle(snapshot, 33.0)
    assert cap == pytest.approx(11.0)
    np.testing.assert_allclose(setpoints, [11.0, 0.0, 0.0], atol=1e-6)


def test_a_car_with_a_known_state_of_charge_is_not_held_to_a_taper_it_will_not_reach() -> None:
    # 12 kWh in 2 h, seen drawing 11 kW, planned at 0. Taken to end full (unknown SoC) its last 12 kWh are in the
    # taper and it is held at its pace (6 kW; see test_dispatch_plan_floors). At 20 of 60 kWh it ends at 53 %:
    # 9.9 kW for the 1.75 h after this quarter give 17.3 kWh, so it may wait as planned.
    hours = np.array([2.0])
    unknown = _site_snapshot([12.0], [2.0], [0.0], tariff_kw=None)
    known = _site_snapshot([12.0], [2.0], [0.0], tariff_kw=None, soc=[20.0])
    seen = np.array([11.0])
    held = plan_need_floor_kw(unknown, hours, np.full(1, 11.0), seen_kw=seen)
    free = plan_need_floor_kw(known, hours, np.full(1, 11.0), seen_kw=seen)
    assert held is not None and free is not None
    assert held[0] == pytest.approx(6.0)
    assert free[0] == pytest.approx(0.0)
