"""Per-car plans: hand-computed cases for position, headroom, caps and SoC floors; the fast paths against the LP."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from vpp.algorithms import planning
from vpp.algorithms.planning import PlanProblem, plan_pool
from vpp.algorithms.scheduling import SchedulingProblem, solve_exact_lp, solve_schedule
from vpp.domain.errors import InvalidInput

# One ISP at 11 kW is 2.75 kWh.
FULL_ISP_KWH = 2.75


def _sessions(prices: list[float], *, energy: list[float], max_kw: float = 11.0, arrival: list[int] | None = None,
              departure: list[int] | None = None, position: list[float] | None = None, imbalance: float = 0.0,
              session_max: np.ndarray | None = None, min_kw: list[float] | None = None,
              battery: list[float] | None = None, soc: list[float] | None = None,
              min_soc: list[float] | None = None) -> SchedulingProblem:
    n, t = len(energy), len(prices)
    nan = np.full(n, np.nan)
    return SchedulingProblem(
        start=None, isp_hours=0.25, prices_eur_per_mwh=np.array(prices, dtype=np.float64),
        pool_max_kw=np.full(t, np.inf), pool_min_kw=np.full(t, -np.inf),
        session_ids=tuple(f"car{k}" for k in range(n)),
        arrival=np.array(arrival or [0] * n, dtype=np.int64), departure=np.array(departure or [t] * n, dtype=np.int64),
        energy_kwh=np.array(energy, dtype=np.float64), max_kw=np.full(n, max_kw),
        min_kw=np.array(min_kw or [0.0] * n, dtype=np.float64),
        battery_kwh=nan if battery is None else np.array(battery, dtype=np.float64),
        soc_kwh=nan if soc is None else np.array(soc, dtype=np.float64),
        min_soc_kwh=nan if min_soc is None else np.array(min_soc, dtype=np.float64),
        position_kw=None if position is None else np.array(position, dtype=np.float64),
        imbalance_eur_per_mwh=imbalance, session_max_kw=session_max)


def _problem(sessions: SchedulingProblem, *, up: list[float] | None = None, down: list[float] | None = None,
             group: list[int] | None = None, group_max: list[list[float]] | None = None,
             present: list[bool] | None = None) -> PlanProblem:
    t, n = sessions.n_isps, sessions.n_sessions
    return PlanProblem(
        sessions=sessions, present=np.array(present or [True] * n),
        up_headroom_kw=np.array(up or [0.0] * t, dtype=np.float64),
        down_headroom_kw=np.array(down or [0.0] * t, dtype=np.float64),
        session_group=np.array(group or [-1] * n, dtype=np.int64),
        group_max_kw=np.array(group_max if group_max is not None else np.zeros((0, t)), dtype=np.float64))


@pytest.mark.parametrize(("imbalance", "charged_at"), [(0.0, 1), (20.0, 1), (30.0, 0)])
def test_a_car_leaves_the_committed_position_only_when_the_price_gap_pays_twice_the_imbalance(
    imbalance: float, charged_at: int
) -> None:
    # 100 vs 50 EUR/MWh; the pool bought 11 kW at the dear ISP. Moving 2.75 kWh saves 2.75 * 50 / 1000 = 0.1375 EUR
    # and costs 2 * 2.75 * imbalance / 1000 (short at ISP 0, long at ISP 1): worth it below 25 EUR/MWh.
    plan = plan_pool(_problem(_sessions([100.0, 50.0], energy=[FULL_ISP_KWH], position=[11.0, 0.0],
                                        imbalance=imbalance)))
    expected = np.zeros(2)
    expected[charged_at] = 11.0
    assert plan.schedule_kw[0] == pytest.approx(expected)
    assert plan.imbalance_kwh == pytest.approx(0.0 if charged_at == 0 else 2 * FULL_ISP_KWH)


def test_awarded_down_capacity_is_kept_free_so_the_car_charges_where_it_is_dearer() -> None:
    # 11 kW down at ISP 0: the car's whole power must stay free there.
    plan = plan_pool(_problem(_sessions([50.0, 100.0], energy=[FULL_ISP_KWH]), down=[11.0, 0.0]))
    assert plan.schedule_kw[0] == pytest.approx([0.0, 11.0])


def test_awarded_up_capacity_keeps_the_pool_drawing_at_least_that_much() -> None:
    # 5 kW up at the dear ISP 1: the car draws 5 kW there (1.25 kWh) and the other 1.5 kWh (6 kW) at ISP 0.
    plan = plan_pool(_problem(_sessions([50.0, 100.0], energy=[FULL_ISP_KWH]), up=[0.0, 5.0]))
    assert plan.schedule_kw[0] == pytest.approx([6.0, 5.0])


def test_down_headroom_counts_a_car_only_for_what_its_need_lets_it_take() -> None:
    # Two 11 kW cars, 10 kW down awarded at ISP 0. One has met its need (0 kWh): its charger adds nothing, so
    # the other car (2.75 kWh, a whole ISP at 11 kW) must keep 10 kW free there and charges 1 kW at ISP 0.
    sessions = _sessions([50.0, 100.0], energy=[FULL_ISP_KWH, 0.0])
    _, high = planning.headroom_bounds(_problem(sessions, down=[10.0, 0.0]))
    assert high[0] == pytest.approx(1.0)
    plan = plan_pool(_problem(sessions, down=[10.0, 0.0]))
    assert plan.schedule_kw[:, 0].sum() == pytest.approx(1.0)
    # Without the reservation the cheap ISP takes the whole need.
    assert plan_pool(_problem(sessions)).schedule_kw[0] == pytest.approx([11.0, 0.0])


def test_down_headroom_counts_a_capped_group_only_up_to_its_cap() -> None:
    # Two cars behind a 12 kW congestion cap and one free car, all needing a whole ISP at 11 kW: 23 kW can be
    # drawn at ISP 0, so with 10 kW down awarded the pool plans at most 13 kW there.
    sessions = _sessions([50.0, 100.0], energy=[FULL_ISP_KWH] * 3)
    problem = _problem(sessions, down=[10.0, 0.0], group=[0, 0, -1], group_max=[[12.0, 12.0]])
    _, high = planning.headroom_bounds(problem)
    assert high[0] == pytest.approx(13.0)


def test_a_v2g_car_can_take_what_its_battery_has_room_for_beyond_its_need() -> None:
    sessions = _sessions([50.0, 100.0], energy=[0.0], min_kw=[-11.0], battery=[60.0], soc=[40.0], min_soc=[10.0])
    room = planning.absorbable_kw(sessions, planning.session_caps(sessions))
    assert room[0] == pytest.approx([11.0, 11.0])


def test_a_car_clearly_below_the_limit_in_force_over_its_reading_is_planned_at_what_it_draws() -> None:
    # Readings over [0, 900) s: a 7.4 kW onboard charger under an 11 kW limit; a car at its 3 kW limit; a car
    # whose limit went up mid-period (not judged); a full car under no limit on a 22 kW charger.
    known = planning.car_limited_kw(
        measured_kw=np.array([7.4, 3.0, 5.0, 0.0]), reading_start_s=np.zeros(4), reading_end_s=np.full(4, 900.0),
        limit_kw=np.array([11.0, 3.0, 11.0, np.nan]), limit_sent_s=np.array([-60.0, -60.0, 450.0, np.nan]),
        charger_max_kw=np.array([11.0, 11.0, 11.0, 22.0]))
    assert known[0] == pytest.approx(7.4 + 0.5)
    assert np.isnan(known[1]) and np.isnan(known[2])
    assert known[3] == pytest.approx(0.5)


def test_a_congestion_cap_on_a_group_moves_its_second_car_to_the_dearer_isp() -> None:
    sessions = _sessions([50.0, 100.0], energy=[FULL_ISP_KWH, FULL_ISP_KWH, FULL_ISP_KWH])
    plan = plan_pool(_problem(sessions, group=[0, 0, -1], group_max=[[11.0, np.inf]]))
    assert plan.schedule_kw[:2, 0].sum() == pytest.approx(11.0)
    assert plan.schedule_kw[:2, 1].sum() == pytest.approx(11.0)
    # The car outside the group still charges at the cheap ISP.
    assert plan.schedule_kw[2] == pytest.approx([11.0, 0.0])
    assert plan.unmet_kwh == pytest.approx([0.0, 0.0, 0.0])


def test_a_curtailed_device_is_planned_within_its_cap_and_gets_the_rest_later() -> None:
    cap = np.array([[4.2, np.inf]])
    plan = plan_pool(_problem(_sessions([50.0, 100.0], energy=[FULL_ISP_KWH], session_max=cap)))
    assert plan.schedule_kw[0] == pytest.approx([4.2, 11.0 - 4.2])


def test_a_v2g_car_discharges_into_the_dear_isp_only_down_to_its_soc_floor() -> None:
    # 1 kWh above the floor: 4 kW out at 200 EUR/MWh, 4 kW back at 50; it leaves with the state it came with.
    plan = plan_pool(_problem(_sessions([200.0, 50.0], energy=[0.0], min_kw=[-11.0], battery=[50.0], soc=[16.0],
                                        min_soc=[15.0])))
    assert plan.schedule_kw[0] == pytest.approx([-4.0, 4.0], abs=1e-6)


def test_forecast_arrivals_shape_the_plan_but_only_present_cars_get_rows() -> None:
    # The forecast car arrives at ISP 1 and must charge there; under a pool cap of 11 kW the present car,
    # which could charge at either, takes ISP 0 although ISP 1 is cheaper.
    sessions = _sessions([60.0, 50.0], energy=[FULL_ISP_KWH, FULL_ISP_KWH], arrival=[0, 1], departure=[2, 2])
    sessions = SchedulingProblem(**{**{f: getattr(sessions, f) for f in sessions.__dataclass_fields__},
                                    "pool_max_kw": np.array([11.0, 11.0])})
    plan = plan_pool(_problem(sessions, present=[True, False]))
    assert plan.session_ids == ("car0",)
    assert plan.schedule_kw == pytest.approx(np.array([[11.0, 0.0]]))
    assert plan.forecast_kw == pytest.approx([0.0, 11.0])


def test_bad_plan_problems_are_refused() -> None:
    sessions = _sessions([50.0, 100.0], energy=[1.0])
    with pytest.raises(InvalidInput):
        plan_pool(_problem(sessions, up=[-1.0, 0.0]))
    with pytest.raises(InvalidInput):
        plan_pool(_problem(sessions, group=[3]))


def _random(rng: np.random.Generator, n: int, t: int) -> SchedulingProblem:
    arrival = rng.integers(0, t - 2, n)
    departure = np.minimum(arrival + rng.integers(2, 12, n), t)
    max_kw = rng.choice([3.7, 7.4, 11.0], n)
    energy = rng.uniform(0.1, 1.0, n) * max_kw * (departure - arrival) * 0.25 * 0.8
    nan = np.full(n, np.nan)
    pool_max = np.full(t, np.inf)
    pool_max[5:9] = 15.0
    pool_min = np.full(t, -np.inf)
    pool_min[12:14] = 5.0
    session_max = np.where(rng.random((n, t)) < 0.1, 4.2, np.inf)
    return SchedulingProblem(
        start=None, isp_hours=0.25, prices_eur_per_mwh=rng.uniform(20, 150, t), pool_max_kw=pool_max,
        pool_min_kw=pool_min, session_ids=tuple(f"s{k}" for k in range(n)), arrival=arrival, departure=departure,
        energy_kwh=energy, max_kw=max_kw, min_kw=np.zeros(n), battery_kwh=nan, soc_kwh=nan, min_soc_kwh=nan,
        position_kw=np.where(np.arange(t) < 16, rng.uniform(0, 40, t), np.nan), imbalance_eur_per_mwh=30.0,
        session_max_kw=session_max)


def _objective(problem: SchedulingProblem, schedule: np.ndarray) -> float:
    pool = schedule.sum(axis=0)
    assert problem.position_kw is not None
    committed = np.isfinite(problem.position_kw)
    off = np.abs(pool - np.where(committed, problem.position_kw, 0.0))[committed].sum()
    return float(problem.prices_eur_per_mwh @ pool + problem.imbalance_eur_per_mwh * off) * 0.25 / 1000.0


@pytest.mark.parametrize("seed", range(8))
def test_the_segment_flow_matches_the_exact_lp_with_position_floors_and_caps(seed: int) -> None:
    problem = _random(np.random.default_rng(seed), 30, 24)
    fast = solve_schedule(problem)
    exact = solve_exact_lp(problem, solver="simplex")
    assert fast.method == "charge-segment-order-flow"
    assert fast.unmet_kwh.sum() == pytest.approx(exact.unmet_kwh.sum(), abs=1e-6)
    assert _objective(problem, fast.schedule_kw) == pytest.approx(_objective(problem, exact.schedule_kw), abs=1e-6)
    assert (fast.schedule_kw <= problem.max_kw_by_isp() + 1e-9).all()


def test_a_large_pool_goes_by_aggregate_and_least_laxity_and_stays_close_to_the_exact_plan(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    problem = _random(np.random.default_rng(11), 120, 32)
    exact = plan_pool(_problem(problem))
    monkeypatch.setattr(planning, "EXACT_MAX_CELLS", 0)
    fast = plan_pool(_problem(problem))
    assert "aggregate-lp" in fast.method and "aggregate-lp" not in exact.method
    # Every need the exact plan meets is met, within each car's caps and windows.
    assert fast.unmet_kwh.sum() <= exact.unmet_kwh.sum() + 1e-6
    assert (fast.schedule_kw <= problem.max_kw_by_isp() + 1e-9).all()
    assert (fast.schedule_kw[~planning.window_mask(problem)] == 0.0).all()
    assert _objective(problem, fast.schedule_kw) <= 1.15 * _objective(problem, exact.schedule_kw)


def test_tied_prices_are_broken_earliest_first_and_only_within_each_run() -> None:
    prices = np.array([50.0, 50.0, 50.0, 50.0, 30.0, 30.0, 70.0, 50.0])
    expected = [50.0, 50.01, 50.02, 50.03, 30.0, 30.01, 70.0, 50.0]
    assert planning.tie_broken_prices(prices, 0.01) == pytest.approx(expected)
    assert planning.tie_broken_prices(np.zeros(0)).size == 0


def test_the_aggregate_profile_fills_a_tied_hour_from_its_first_isp(monkeypatch: pytest.MonkeyPatch) -> None:
    # Three cars need one ISP at 11 kW each in two hours of equal prices under an 11 kW pool cap: the profile takes
    # the first three ISPs, not any three (untied, the simplex took ISPs 3, 5 and 6), so that a re-plan a quarter
    # later keeps the same ones.
    sessions = _sessions([80.0] + [40.0] * 8 + [90.0], energy=[FULL_ISP_KWH] * 3)
    sessions = _with_pool_cap(sessions, 11.0)
    monkeypatch.setattr(planning, "EXACT_MAX_CELLS", 0)
    monkeypatch.setattr(planning, "EXACT_CAPPED_MAX_CELLS", 0)
    plan = plan_pool(_problem(sessions))
    assert "aggregate-lp" in plan.method
    assert plan.pool_kw == pytest.approx([0.0, 11.0, 11.0, 11.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], abs=1e-6)


def test_the_aggregate_lp_keeps_the_energy_of_cars_leaving_soon_where_only_they_can_draw_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Car 0 leaves after two ISPs and needs both at 11 kW; car 1 stays ten ISPs and needs one, cheapest at ISP 5.
    # One aggregate lets the LP put car 0's energy at the cheaper ISP 0 at 22 kW (the two cars' power there): the
    # split gives ISP 0 to both, car 0 is forced to ISP 1, and car 1 charges at 50 instead of 10 EUR/MWh. Apart
    # by departure, each group's energy stays where its own cars can draw it, as the exact plan has it. (A pool
    # under a cap alone goes by the aggregate path only above EXACT_CAPPED_MAX_CELLS.)
    prices = [50.0, 60.0, 90.0, 90.0, 90.0, 10.0, 90.0, 90.0, 90.0, 90.0]
    sessions = _with_pool_cap(_sessions(prices, energy=[2 * FULL_ISP_KWH, FULL_ISP_KWH], departure=[2, 10]), 100.0)
    exact = plan_pool(_problem(sessions))
    monkeypatch.setattr(planning, "EXACT_CAPPED_MAX_CELLS", 0)
    grouped = plan_pool(_problem(sessions))
    assert "aggregate-lp" in grouped.method and "aggregate-lp" not in exact.method
    assert grouped.schedule_kw == pytest.approx(exact.schedule_kw, abs=1e-6)
    assert grouped.schedule_kw[1] == pytest.approx([0.0] * 5 + [11.0] + [0.0] * 4, abs=1e-6)
    monkeypatch.setattr(planning, "AGGREGATE_GROUPS", 1)
    one = plan_pool(_problem(sessions))
    assert one.schedule_kw[1, 0] == pytest.approx(11.0, abs=1e-6)
    assert one.energy_cost_eur > grouped.energy_cost_eur + 0.1


def test_aggregate_groups_keep_present_cars_and_later_arrivals_apart_and_split_each_by_departure() -> None:
    sessions = _sessions([50.0] * 8, energy=[1.0] * 6, arrival=[0, 0, 0, 0, 2, 3], departure=[8, 2, 5, 3, 8, 6])
    groups = planning.aggregate_groups(sessions, 4)
    # Present cars by departure (2, 3 | 5, 8), later arrivals (6 | 8): four groups.
    assert groups.tolist() == [1, 0, 1, 0, 3, 2]
    assert planning.aggregate_groups(sessions, 1).tolist() == [0] * 6


def _with_pool_cap(sessions: SchedulingProblem, cap_kw: float) -> SchedulingProblem:
    return replace(sessions, pool_max_kw=np.full(sessions.n_isps, cap_kw))


def test_uncontrolled_load_is_full_power_from_arrival_until_the_energy_is_in() -> None:
    # Car 0: 4.125 kWh at 11 kW from ISP 0 = 1.5 ISPs; car 1: 2.75 kWh from ISP 1 but it leaves after one ISP.
    load = planning.uncontrolled_load_kw(np.array([0, 1]), np.array([4, 2]), np.array([4.125, 5.5]),
                                         np.array([11.0, 11.0]), 0.25)
    np.testing.assert_allclose(load, [11.0, 16.5, 0.0, 0.0])


def test_uncontrolled_load_slows_near_full_with_the_taper() -> None:
    # 6 kWh into a 60-kWh battery ending at 90 %: all of it above 80 %, where the power falls with (1 - soc) / 0.2.
    # At 12 kW the remaining room 0.2 x 60 = 12 kWh decays with tau = 0.2 x 60 / 12 = 1 h: taken by t h is
    # 12 (1 - e^-t) kWh, so the first ISP draws 12 (1 - e^-0.25) / 0.25 = 10.62 kW, the second
    # 12 (e^-0.25 - e^-0.5) / 0.25 = 8.27 kW, and the third the rest, (6 - 12 (1 - e^-0.5)) / 0.25 = 5.11 kW.
    load = planning.uncontrolled_load_kw(np.array([1]), np.array([8]), np.array([6.0]), np.array([12.0]), 0.25,
                                         target_soc=np.array([0.9]), battery_kwh=np.array([60.0]))
    first, second = 12 * (1 - np.exp(-0.25)) / 0.25, 12 * (np.exp(-0.25) - np.exp(-0.5)) / 0.25
    third = (6 - 12 * (1 - np.exp(-0.5))) / 0.25
    np.testing.assert_allclose(load, [0.0, first, second, third, 0.0, 0.0, 0.0, 0.0], atol=1e-9)
    assert (first, second, third) == pytest.approx((10.62, 8.27, 5.11), abs=0.01)
    # Ending at 50 %, far below the taper: full power as without a target (1.5 ISPs at 12 kW for 4.5 kWh); a stay
    # cut short by its departure stops there.
    np.testing.assert_allclose(planning.uncontrolled_load_kw(np.array([0]), np.array([4]), np.array([4.5]),
                                                             np.array([12.0]), 0.25, target_soc=np.array([0.5]),
                                                             battery_kwh=np.array([60.0])), [12.0, 6.0, 0.0, 0.0])
    np.testing.assert_allclose(planning.uncontrolled_load_kw(np.array([0]), np.array([1]), np.array([4.5]),
                                                             np.array([12.0]), 0.25, target_soc=np.array([0.5]),
                                                             battery_kwh=np.array([60.0])), [12.0])


def test_forecast_arrivals_draw_what_the_present_cars_draw_on_average() -> None:
    # Seen 11 and 7.4 kW (a car not drawing and one unknown do not count): 9.2 kW; never above the default.
    assert planning.arrivals_draw_kw(np.array([11.0, 7.4, np.nan, 0.0]), 11.0) == pytest.approx(9.2)
    assert planning.arrivals_draw_kw(np.array([22.0]), 11.0) == pytest.approx(11.0)
    assert planning.arrivals_draw_kw(np.zeros(0), 11.0) == pytest.approx(11.0)


def test_the_least_peak_spreads_two_cars_needs_over_their_windows() -> None:
    # Two cars of 5.5 kWh each over 4 ISPs: 11 kWh in 1 h is 11 kW at the least; one car alone in 2 ISPs: 11 kW.
    problem = _sessions([50.0] * 4, energy=[5.5, 5.5])
    assert planning.least_peak_kw(problem) == pytest.approx(11.0)
    tight = _sessions([50.0] * 4, energy=[5.5, 5.5], departure=[2, 4])
    # Car 0 must take 5.5 kWh in 2 ISPs (11 kW); car 1 can take its 5.5 kWh in ISPs 2-3: the peak stays 11 kW.
    assert planning.least_peak_kw(tight) == pytest.approx(11.0)
    crowded = _sessions([50.0] * 4, energy=[5.5, 5.5], departure=[2, 2])
    assert planning.least_peak_kw(crowded) == pytest.approx(22.0)


def test_the_peak_guard_spreads_the_night_over_the_cheap_isps_at_the_uncontrolled_peak() -> None:
    # Three cars, 5.5 kWh each, present from ISP 0 to 4. Uncontrolled they draw 33 kW in ISPs 0-1; price-only,
    # all three charge in ISPs 2-3 (the cheapest). With the guard at the uncontrolled peak of 22 kW (say, what
    # they drew at arrival), the plan keeps 22 kW in ISPs 2 and 3 and buys the rest dearer.
    prices = [90.0, 90.0, 40.0, 41.0]
    sessions = _sessions(prices, energy=[5.5, 5.5, 5.5])
    free = plan_pool(_problem(sessions))
    np.testing.assert_allclose(free.pool_kw, [0.0, 0.0, 33.0, 33.0])
    guard = planning.peak_guard_kw(sessions, 22.0)
    assert guard == pytest.approx(22.0)
    capped = plan_pool(_problem(planning.subproblem(sessions, np.arange(3), pool_max_kw=np.full(4, guard))))
    assert capped.pool_kw.max() <= 22.0 + 1e-6
    assert capped.unmet_kwh.sum() == pytest.approx(0.0, abs=1e-6)
    # 11 kWh in the cheap ISPs at 22 kW, the other 5.5 kWh in one of the dear ones.
    np.testing.assert_allclose(capped.pool_kw[2:], [22.0, 22.0])
    assert capped.pool_kw[:2].sum() == pytest.approx(22.0)


def test_the_peak_guard_never_binds_a_need_below_what_the_needs_force() -> None:
    # Two cars must each take 5.5 kWh in the first 2 ISPs: 22 kW; an uncontrolled estimate of 11 kW is too low.
    sessions = _sessions([50.0] * 4, energy=[5.5, 5.5], departure=[2, 2])
    assert planning.peak_guard_kw(sessions, 11.0) >= 22.0


def test_the_peak_guard_caps_a_v2g_pool_buying_back_its_sales() -> None:
    # Two V2G cars (60 kWh, 30 kWh now, floor 10 kWh), each needing 2.75 kWh by ISP 4, at most 11 kW either way.
    # Prices dear in ISPs 0-1 and cheap in 2-3: price-only, both sell in 0-1 and buy back at 22 kW in 2-3. Their
    # uncontrolled peak is 22 kW (each at 11 kW for a quarter hour); the guard of a V2G pool is that peak, not
    # none, so the buy-back stays within it and every need is met.
    sessions = _sessions([200.0, 200.0, 40.0, 41.0], energy=[2.75, 2.75], min_kw=[-11.0, -11.0],
                         battery=[60.0, 60.0], soc=[30.0, 30.0], min_soc=[10.0, 10.0])
    guard = planning.peak_guard_kw(sessions, 11.0)
    # The needs force no more than 5.5 kW (5.5 kWh over an hour, 6.775 kW with the margin): the guard is 90 % of
    # the uncontrolled estimate (``V2G_GUARD_SHARE``), 9.9 kW.
    assert guard == pytest.approx(0.9 * 11.0)
    capped = plan_pool(_problem(planning.subproblem(sessions, np.arange(2), pool_max_kw=np.full(4, guard))))
    assert capped.pool_kw.max() <= 9.9 + 1e-6
    assert capped.pool_kw.min() < 0.0
    assert capped.unmet_kwh.sum() == pytest.approx(0.0, abs=1e-6)


def test_a_v2g_pools_guard_is_a_share_of_its_estimate_but_never_below_what_its_needs_force() -> None:
    # The same two V2G cars needing 5.5 kWh each in the first 2 ISPs force 22 kW (23.1 + 1 = 24.1 kW with the margin
    # of the aggregate bounds): 0.9 x 22 = 19.8 kW would bind them, so the guard stays at what they force.
    sessions = _sessions([50.0] * 4, energy=[5.5, 5.5], departure=[2, 2], min_kw=[-11.0, -11.0],
                         battery=[60.0, 60.0], soc=[30.0, 30.0], min_soc=[10.0, 10.0])
    assert planning.peak_guard_kw(sessions, 22.0) == pytest.approx(22.0 * 1.05 + 1.0)
    # A charge-only pool keeps its whole estimate.
    assert planning.peak_guard_kw(_sessions([50.0] * 4, energy=[2.75, 2.75]), 22.0) == pytest.approx(22.0)


def test_a_capped_group_is_planned_within_the_pools_cap_too() -> None:
    # The same three cars as above, all behind one congestion point whose cap (50 kW) does not bind. Planned as
    # a group before the rest of the pool, they were held to their group's cap alone and bought the night at
    # 33 kW, above the pool's peak guard of 22 kW; within the pool's cap they spread as a pool would.
    prices = [90.0, 90.0, 40.0, 41.0]
    sessions = planning.subproblem(_sessions(prices, energy=[5.5, 5.5, 5.5]), np.arange(3),
                                   pool_max_kw=np.full(4, 22.0))
    plan = plan_pool(_problem(sessions, group=[0, 0, 0], group_max=[[50.0] * 4]))
    assert plan.pool_kw.max() <= 22.0 + 1e-6
    assert plan.unmet_kwh.sum() == pytest.approx(0.0, abs=1e-6)
    np.testing.assert_allclose(plan.pool_kw[2:], [22.0, 22.0])


def test_a_capped_groups_needs_outrank_the_pools_cap() -> None:
    # Two cars must each take 5.5 kWh in the first 2 ISPs (22 kW) behind a group cap of 22 kW; a pool cap of
    # 11 kW (a guard estimated too low) would leave 5.5 kWh unmet, so the group keeps its own cap alone.
    sessions = planning.subproblem(_sessions([50.0] * 4, energy=[5.5, 5.5], departure=[2, 2]), np.arange(2),
                                   pool_max_kw=np.full(4, 11.0))
    plan = plan_pool(_problem(sessions, group=[0, 0], group_max=[[22.0] * 4]))
    assert plan.unmet_kwh.sum() == pytest.approx(0.0, abs=1e-6)
    np.testing.assert_allclose(plan.pool_kw[:2], [22.0, 22.0])


def test_a_group_the_pools_cap_does_not_bind_is_solved_once_even_with_a_need_unmet(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Two cars needing 22 kWh each in two ISPs behind a group cap of 11 kW: unmet whatever the pool's cap of 100 kW,
    # which binds nowhere, so the group alone would be the same problem (it was solved twice).
    sessions = planning.subproblem(_sessions([50.0] * 4, energy=[5.5, 5.5], departure=[2, 2]), np.arange(2),
                                   pool_max_kw=np.full(4, 100.0))
    calls: list[int] = []

    def counted(problem: SchedulingProblem) -> object:
        calls.append(problem.n_sessions)
        return solve_schedule(problem)

    monkeypatch.setattr(planning, "solve_schedule", counted)
    plan = plan_pool(_problem(sessions, group=[0, 0], group_max=[[11.0] * 4]))
    assert plan.unmet_kwh.sum() == pytest.approx(5.5)
    np.testing.assert_allclose(plan.pool_kw[:2], [11.0, 11.0])
    assert calls == [2]


def test_a_present_car_is_planned_at_most_at_what_the_dispatcher_takes_it_to_draw() -> None:
    # 22-kW AC chargers: not seen drawing (11 kW), known to draw 7.7 kW (a 7.2-kW car with headroom), drawing
    # 21.8 kW now (a 22-kW car), no reading (11 kW); an 11-kW AC charger (11 kW); a 50-kW DC charger whose car is
    # known to draw 40 kW (40 kW: DC is not taken at 11 kW). Without what is known or drawn: 11 kW on 22 kW AC,
    # the charger's rating elsewhere (a 3 x 16 A charger's 11.04 kW, DC's 150 kW, a 7.4-kW wallbox).
    out = planning.planned_max_kw(np.array([22.0, 22.0, 22.0, 22.0, 11.0, 50.0]),
                                  np.array([np.nan, 7.7, np.nan, np.nan, np.nan, 40.0]),
                                  np.array([0.0, 7.2, 21.8, np.nan, 3.6, 0.0]))
    np.testing.assert_allclose(out, [11.0, 7.7, 21.8, 11.0, 11.0, 40.0])
    np.testing.assert_allclose(planning.planned_max_kw(np.array([22.0, 150.0, 11.04, 7.4])), [11.0, 150.0, 11.04, 7.4])


def test_two_ac_cars_planned_at_what_they_draw_are_not_piled_into_the_cheapest_isp() -> None:
    # Two cars of 5.5 kWh on 22-kW AC chargers, prices 60/40/50/90. At the charger's 22 kW both are planned into
    # ISP 1 (44 kW), which two 11-kW cars cannot draw: each takes 2.75 kWh and the rest piles into the next ISPs.
    # At 11 kW the plan is what they can do: 2.75 kWh each in ISP 1 (22 kW) and the rest in ISP 2 (50, 22 kW).
    prices = [60.0, 40.0, 50.0, 90.0]
    at_charger = plan_pool(_problem(_sessions(prices, energy=[5.5, 5.5], max_kw=22.0)))
    np.testing.assert_allclose(at_charger.pool_kw, [0.0, 44.0, 0.0, 0.0], atol=1e-6)
    cap = float(planning.planned_max_kw(np.array([22.0]))[0])
    drawn = plan_pool(_problem(_sessions(prices, energy=[5.5, 5.5], max_kw=cap)))
    np.testing.assert_allclose(drawn.pool_kw, [0.0, 22.0, 22.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(drawn.schedule_kw, [[0.0, 11.0, 11.0, 0.0]] * 2, atol=1e-6)
    assert drawn.unmet_kwh.sum() == pytest.approx(0.0, abs=1e-6)


def test_a_pool_under_a_cap_alone_is_planned_exactly_beyond_the_positions_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sessions = _with_pool_cap(_sessions([80.0] + [40.0] * 8 + [90.0], energy=[FULL_ISP_KWH] * 3), 11.0)
    monkeypatch.setattr(planning, "EXACT_MAX_CELLS", 0)
    assert "aggregate-lp" not in plan_pool(_problem(sessions)).method
    monkeypatch.setattr(planning, "EXACT_CAPPED_MAX_CELLS", 0)
    assert "aggregate-lp" in plan_pool(_problem(sessions)).method
