"""Cars planned by their site behind the meter follow their plan below 0 kW (V2H, a grid-stress signal), within
their laxity; an island's negative cap makes the cars feed the house; hand-computed cases."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
import pytest

from vpp.algorithms.allocation import allocate
from vpp.algorithms.dispatch import PoolLimits, build_problem, plan_discharge_floor_kw
from vpp.domain.dispatch import DispatchSnapshot, GroupCaps

AT = datetime(2024, 6, 11, 16, 0, tzinfo=UTC)
NAN3 = np.full(3, math.nan)


def _snapshot(planned: list[float], *, need: list[float], hours: list[float], min_kw: list[float],
              follows: list[bool] | None, current: list[float] | None = None, site_cap: float | None = None,
              max_kw: float = 7.0, islanded: bool = False, signal: bool = True,
              soc: list[float] | None = None, battery: float = 60.0) -> DispatchSnapshot:
    n = len(planned)
    if site_cap is None:
        groups = GroupCaps(group_ids=(), max_kw=np.zeros(0), member_session=np.zeros(0, dtype=np.int64),
                           member_group=np.zeros(0, dtype=np.int64))
    else:
        groups = GroupCaps(group_ids=("site:home",), max_kw=np.array([site_cap]),
                           member_session=np.arange(n, dtype=np.int64), member_group=np.zeros(n, dtype=np.int64))
    return DispatchSnapshot(
        pool="zone:FR", at=AT, session_ids=tuple(f"s{k}" for k in range(n)), min_kw=np.array(min_kw),
        max_kw=np.full(n, max_kw), energy_needed_kwh=np.array(need), hours_to_departure=np.array(hours),
        current_kw=np.zeros(n) if current is None else np.array(current), baseline_kw=np.full(n, max_kw),
        groups=groups, schedule_kw=math.nan, planned_kw=np.array(planned),
        discharge_kwh=np.array([40.0 if m < 0 else 0.0 for m in min_kw]),
        follows_plan_discharge=None if follows is None else np.array(follows),
        islanded=np.full(n, True) if islanded else None, stress_signal=np.full(n, signal),
        soc_kwh=None if soc is None else np.array(soc), battery_kwh=None if soc is None else np.full(n, battery))


def test_a_planned_discharge_is_the_floor_where_the_laxity_allows_it() -> None:
    # s0: full (no need), plan -5.4 kW: its floor is the plan. s1: 20 kWh in 3 h at 7 kW: after a quarter hour at
    # -5 kW it would need 21.25 kWh in 2.75 h at 0.7 * 7 kW = 13.475 kWh: its laxity floor (20 - 13.475) / 0.25 =
    # 26.1 kW is above its pace (6.667 kW), so it keeps its pace. s2: 2 kWh in 10 h, plan -6 kW: laxity floor
    # (2 - 0.7 * 7 * 9.75) / 0.25 = -183.1 kW, the plan stands.
    snap = _snapshot([-5.4, -5.0, -6.0], need=[0.0, 20.0, 2.0], hours=[4.0, 3.0, 10.0], min_kw=[-7.0] * 3,
                     follows=[True] * 3)
    floor = plan_discharge_floor_kw(snap, np.asarray(snap.hours_to_departure), np.asarray(snap.min_kw), None)
    assert floor is not None
    assert floor == pytest.approx([-5.4, 20.0 / 3.0, -6.0])


def test_the_laxity_floor_bounds_a_planned_discharge_of_a_car_with_little_time() -> None:
    # 10 kWh in 2.25 h at 7 kW: (10 - 0.7 * 7 * 2.0) / 0.25 = 0.8 kW, above the plan's -7 kW, below the pace.
    # Its need ends at half its battery (20 + 10 of 60 kWh), below the taper.
    snap = _snapshot([-7.0], need=[10.0], hours=[2.25], min_kw=[-7.0], follows=[True], soc=[20.0])
    floor = plan_discharge_floor_kw(snap, np.asarray(snap.hours_to_departure), np.asarray(snap.min_kw), None)
    assert floor == pytest.approx([0.8])


def test_only_site_planned_cars_that_may_discharge_get_a_discharge_floor() -> None:
    hours = np.array([4.0, 4.0, 4.0])
    # Not a site's car: floors unchanged (None).
    snap = _snapshot([-5.0, -5.0, 3.0], need=[0.0, 0.0, 4.0], hours=list(hours), min_kw=[-7.0, 0.0, -7.0],
                     follows=None)
    assert plan_discharge_floor_kw(snap, hours, np.asarray(snap.min_kw), None) is None
    # Without a signal, with plan floors: s1 may not discharge and s2's plan charges, so they keep the floor
    # given (here the plan floors' values).
    snap = _snapshot([-5.0, -5.0, 3.0], need=[0.0, 0.0, 4.0], hours=list(hours), min_kw=[-7.0, 0.0, -7.0],
                     follows=[True] * 3, signal=False)
    given = np.array([0.0, 0.0, 0.5])
    floor = plan_discharge_floor_kw(snap, hours, np.asarray(snap.min_kw), given, every_plan=True)
    assert floor == pytest.approx([-5.0, 0.0, 0.5])


def test_under_a_stop_signal_a_site_car_stops_where_its_laxity_allows() -> None:
    # Ecowatt "stop", plan floors off: s0 (7 kWh in 10 h, planned 0) stops instead of drawing its 0.72 kW pace
    # (the finish margin of 0.25 h off); s1 (12 kWh in 2.25 h at 7 kW, planned 0) keeps its laxity floor
    # (12 - 0.7 * 7 * 2.0) / 0.25 = 8.8 kW, above its pace, so its pace: 12 / 2.0 = 6 kW.
    snap = _snapshot([0.0, 0.0], need=[7.0, 12.0], hours=[10.0, 2.25], min_kw=[0.0, 0.0], follows=[True] * 2,
                     current=[7.0, 7.0])
    nan2 = np.full(2, math.nan)
    cycle = build_problem(snap, PoolLimits(), 0.0, nan2, nan2, nan2, finish_margin_h=0.25)
    assert allocate(cycle.problem).setpoints_kw == pytest.approx([0.0, 6.0])
    assert cycle.flags["stress_signal"] == 2
    # Without the signal both keep their pace.
    plain = build_problem(replace(snap, stress_signal=None), PoolLimits(), 0.0, nan2, nan2, nan2,
                          finish_margin_h=0.25)
    assert allocate(plain.problem).setpoints_kw == pytest.approx([7.0 / 9.75, 6.0])


def test_grid_stress_the_site_planned_car_discharges_to_its_plan() -> None:
    # A full car planned at -5.4 kW under an Ecowatt signal, a car charging 7 kWh in 2 h (pace 3.5 kW, the
    # finish margin of 0.25 h off: 4 kW) and one idle: the pool target is the plans' sum.
    planned = [-5.4, 4.0, 0.0]
    snap = _snapshot(planned, need=[0.0, 7.0, 0.0], hours=[4.0, 2.0, 4.0], min_kw=[-7.0, 0.0, -7.0],
                     follows=[True] * 3, current=[0.0, 7.0, 0.0])
    target = sum(planned)
    cycle = build_problem(snap, PoolLimits(), target, NAN3, NAN3, NAN3, finish_margin_h=0.25)
    result = allocate(cycle.problem)
    assert result.setpoints_kw == pytest.approx([-5.4, 4.0, 0.0])
    assert cycle.flags["planned_discharge"] == 1
    # The same car not planned by a site keeps its need floor at 0 kW: nothing is fed back.
    before = allocate(build_problem(replace(snap, follows_plan_discharge=None), PoolLimits(), target, NAN3, NAN3,
                                    NAN3, finish_margin_h=0.25).problem)
    assert before.setpoints_kw == pytest.approx([0.0, 4.0, 0.0])


def test_an_island_cap_makes_the_car_with_room_feed_the_house_and_the_others_stop() -> None:
    # Outage: the site's cap is minus the house's 2.5 kW and no car may charge (max 0). s0 may discharge, s1 not
    # (state of charge unknown), s2 may but its plan charges: the most laxity feeds the house first.
    snap = _snapshot([3.0, 7.0, 3.0], need=[10.0, 20.0, 10.0], hours=[10.0, 3.0, 10.0], min_kw=[-7.0, 0.0, -7.0],
                     follows=[True] * 3, current=[7.0, 7.0, 7.0], site_cap=-2.5, islanded=True)
    cycle = build_problem(snap, PoolLimits(), 13.0, NAN3, NAN3, NAN3, finish_margin_h=0.25)
    result = allocate(cycle.problem)
    assert result.total_kw == pytest.approx(-2.5)
    assert result.setpoints_kw[1] == pytest.approx(0.0)
    assert (result.setpoints_kw <= 1e-9).all()
    # With no car that may discharge, the cars stop: the cap is kept as tight as physics allows (0 kW).
    none = _snapshot([3.0, 7.0], need=[10.0, 20.0], hours=[10.0, 3.0], min_kw=[0.0, 0.0], follows=[True] * 2,
                     current=[7.0, 7.0], site_cap=-2.5, islanded=True)
    nan2 = np.full(2, math.nan)
    stopped = allocate(build_problem(none, PoolLimits(), 10.0, nan2, nan2, nan2).problem)
    assert stopped.setpoints_kw == pytest.approx([0.0, 0.0])


def test_in_an_outage_a_car_about_to_leave_does_not_feed_the_house_below_its_need() -> None:
    # s0 has its energy and leaves in 0.38 h (0.13 h after the 0.25-h finish margin): whatever it fed back it
    # could not take again, so its lower bound is 0 kW. s1 leaves in 10 h with 5 kWh to go: it feeds the house.
    snap = _snapshot([-1.0, -1.0], need=[0.0, 5.0], hours=[0.38, 10.0], min_kw=[-7.0, -7.0], follows=[True] * 2,
                     current=[0.0, 0.0], site_cap=-3.0, islanded=True)
    nan2 = np.full(2, math.nan)
    cycle = build_problem(snap, PoolLimits(), -2.0, nan2, nan2, nan2, finish_margin_h=0.25)
    assert cycle.problem.min_kw == pytest.approx([0.0, -7.0])
    assert allocate(cycle.problem).setpoints_kw == pytest.approx([0.0, -3.0])


def test_without_a_stress_signal_a_planned_discharge_is_followed_only_with_plan_floors() -> None:
    # V2H arbitrage against the tariff: followed only where the plan's recharge is followed too (plan floors);
    # at its even pace a car that fed back would recharge in the dear hours.
    snap = _snapshot([-5.0], need=[2.0], hours=[10.0], min_kw=[-7.0], follows=[True], signal=False)
    hours = np.asarray(snap.hours_to_departure)
    assert plan_discharge_floor_kw(snap, hours, np.asarray(snap.min_kw), None) is None
    floor = plan_discharge_floor_kw(snap, hours, np.asarray(snap.min_kw), np.array([0.0]), every_plan=True)
    assert floor == pytest.approx([-5.0])
    nan1 = np.full(1, math.nan)
    assert allocate(build_problem(snap, PoolLimits(), -5.0, nan1, nan1, nan1).problem).setpoints_kw == \
        pytest.approx([0.2])
    assert allocate(build_problem(snap, PoolLimits(), -5.0, nan1, nan1, nan1, plan_floors=True).problem
                    ).setpoints_kw == pytest.approx([-5.0])


def test_a_pools_v2g_car_follows_its_planned_sale_and_a_down_activation_from_there() -> None:
    # A V2G car of a plain pool (no site plans it) sells what the day-ahead position sold: planned -5 kW, 2 kWh
    # to go in 10 h at 7 kW. Its discharge laxity floor (2 - 0.7 * 7 * 9.75) / 0.25 = -183.1 kW is far below the
    # plan, so with plan floors its floor is the plan: at the plans' sum it gives 5 kW, and an aFRR down
    # activation of 3 kW (target -2 kW) is met by giving less, not by charging.
    snap = _snapshot([-5.0], need=[2.0], hours=[10.0], min_kw=[-7.0], follows=None, signal=False)
    hours = np.asarray(snap.hours_to_departure)
    floor = plan_discharge_floor_kw(snap, hours, np.asarray(snap.min_kw), np.array([0.0]), every_plan=True)
    assert floor == pytest.approx([-5.0])
    nan1 = np.full(1, math.nan)
    for target in (-5.0, -2.0):
        cycle = build_problem(snap, PoolLimits(), target, nan1, nan1, nan1, plan_floors=True)
        assert allocate(cycle.problem).setpoints_kw == pytest.approx([target])
        assert cycle.flags["planned_discharge"] == 1
    # Without plan floors it is held at its even pace, 2 / 10 = 0.2 kW, as before.
    assert allocate(build_problem(snap, PoolLimits(), -5.0, nan1, nan1, nan1).problem).setpoints_kw == \
        pytest.approx([0.2])


def test_a_pools_v2g_car_about_to_leave_sells_no_more_than_its_laxity_allows() -> None:
    # Planned -7 kW, 10 kWh to go in 2.25 h at 7 kW: (10 - 0.7 * 7 * 2.0) / 0.25 = 0.8 kW, so it does not sell
    # (its need ends at half its battery, below the taper).
    snap = _snapshot([-7.0], need=[10.0], hours=[2.25], min_kw=[-7.0], follows=None, signal=False, soc=[20.0])
    floor = plan_discharge_floor_kw(snap, np.asarray(snap.hours_to_departure), np.asarray(snap.min_kw),
                                    np.array([4.0]), every_plan=True)
    assert floor == pytest.approx([0.8])
