from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from sim.exchange import clear_curve_order
from vpp.algorithms import bidding
from vpp.algorithms.price_forecast import ForecastMemo, forecast_prices
from vpp.algorithms.scheduling import SchedulingProblem, problem_from_instance
from vpp.benchmarks.dayahead import generate_instance
from vpp.bids.policy import BidPolicy
from vpp.domain.errors import InvalidInput
from vpp.domain.isp import delivery_day_isps


def _problem(sessions: int = 80, *, capped: bool = False, seed: int = 2) -> SchedulingProblem:
    return problem_from_instance(generate_instance(sessions, v2g=False, seed=seed, with_pool_limit=capped))


def test_parametric_curves_equal_the_re_solves_for_an_uncapped_pool() -> None:
    problem = _problem()
    levels = bidding.price_ladder(problem.prices_eur_per_mwh, min_price=-500, max_price=4000)
    mtus = np.array([3, 30, 70, 90])
    fast = bidding.build_demand_curves(problem, levels, mtus=mtus)
    exact = bidding.build_demand_curves(problem, levels, method="resolve", mtus=mtus)
    np.testing.assert_allclose(fast.demand_kw, exact.demand_kw, atol=1e-6)


def test_flow_curves_equal_the_re_solves_for_a_capped_pool() -> None:
    problem = _problem(30, capped=True, seed=3)
    levels = bidding.price_ladder(problem.prices_eur_per_mwh, min_price=-500, max_price=4000)
    mtus = np.array([0, 33, 41, 77, 95])
    fast = bidding.build_demand_curves(problem, levels, mtus=mtus)
    exact = bidding.build_demand_curves(problem, levels, method="resolve", mtus=mtus)
    assert fast.method == "flow"
    np.testing.assert_allclose(fast.demand_kw, exact.demand_kw, atol=1e-6)
    approximate = bidding.build_demand_curves(problem, levels, method="parametric", mtus=mtus)
    assert np.abs(approximate.demand_kw - exact.demand_kw).max() > 1.0  # the cap binds: the test has teeth


def test_flow_curves_follow_the_solver_on_ties_at_a_level() -> None:
    problem = _problem(40, capped=True, seed=4)
    prices = np.repeat([50.0, 20.0, 50.0, 80.0], 24)  # many ISPs tied with the levels
    problem = bidding._with_prices(problem, prices)
    levels = np.array([-500.0, 20.0, 20.01, 50.0, 50.01, 80.0, 4000.0])
    mtus = np.array([5, 24, 30, 50, 72, 90])
    fast = bidding.build_demand_curves(problem, levels, method="flow", mtus=mtus)
    exact = bidding.build_demand_curves(problem, levels, method="resolve", mtus=mtus)
    np.testing.assert_allclose(fast.demand_kw, exact.demand_kw, atol=1e-6)


def test_auto_uses_the_parametric_pass_without_a_cap_and_unknown_methods_are_refused() -> None:
    problem = _problem(20)
    levels = np.array([-500.0, 0.0, 4000.0])
    assert bidding.build_demand_curves(problem, levels).method == "parametric"
    with pytest.raises(InvalidInput, match="unknown curve method"):
        bidding.build_demand_curves(problem, levels, method="guess")


def test_curves_are_non_increasing_and_within_the_pool_cap() -> None:
    problem = _problem(200, capped=True)
    levels = bidding.price_ladder(problem.prices_eur_per_mwh, min_price=-500, max_price=4000)
    curves = bidding.build_demand_curves(problem, levels)
    assert curves.demand_kw.shape == (96, levels.size)
    assert (np.diff(curves.demand_kw, axis=1) <= 1e-9).all()
    assert (curves.demand_kw <= problem.pool_max_kw[0] + 1e-6).all()
    assert (curves.demand_kw >= 0).all()


def test_price_ladder_stays_inside_the_limits_and_the_point_budget() -> None:
    forecast = np.linspace(-700, 5000, 96)
    levels = bidding.price_ladder(forecast, min_price=-500, max_price=4000, max_levels=60)
    assert levels[0] == -500 and levels[-1] == 4000
    assert levels.size <= 60 and (np.diff(levels) > 0).all()


def test_monotonicity_repair_pools_adjacent_violators() -> None:
    repaired = bidding.make_non_increasing(np.array([5.0, 3.0, 4.0, 1.0]))
    np.testing.assert_allclose(repaired, [5.0, 3.5, 3.5, 1.0])
    assert (np.diff(bidding.make_non_increasing(np.random.default_rng(1).normal(size=50))) <= 1e-12).all()


def test_afrr_volumes_are_whole_mw_and_none_below_one_mw() -> None:
    volumes = bidding.size_afrr(np.array([999.0, 1000.0, 2750.0]), np.array([0.0, 3999.9999999, 12.0]))
    assert volumes.up_kw.tolist() == [0.0, 1000.0, 2000.0]
    assert volumes.down_kw.tolist() == [0.0, 4000.0, 0.0]
    assert bidding.capacity_per_product(np.array([3000.0, 1000, 2000, 2000, 5000]), 2).tolist() == [1000, 2000]


def test_opportunity_cost_of_upward_energy_is_the_dearer_recovery() -> None:
    up, down = bidding.opportunity_costs(np.array([50.0, 80.0, 120.0]), recovery_isps=1)
    assert up.tolist() == [30.0, 40.0, 0.0]
    assert down.tolist() == [0.0, 0.0, 0.0]


def test_price_forecast_averages_the_same_weekday_and_handles_dst_days() -> None:
    hours = pd.date_range("2024-01-01", "2024-12-31", freq="h", tz="UTC")
    history = pd.Series(np.arange(len(hours), dtype=float) % 7 + hours.hour, index=hours)
    for day, count in ((date(2024, 3, 31), 92), (date(2024, 10, 27), 100), (date(2024, 6, 19), 96)):
        isps = [t.to_pydatetime() for t in delivery_day_isps(day)]
        forecast = forecast_prices(history, isps, weeks=2)
        assert forecast.shape == (count,) and np.isfinite(forecast).all()
    isps = [datetime(2024, 6, 19, 10, tzinfo=UTC)]
    expected = np.mean([history[datetime(2024, 6, 12, 10, tzinfo=UTC)], history[datetime(2024, 6, 5, 10, tzinfo=UTC)]])
    assert forecast_prices(history, isps, weeks=2)[0] == pytest.approx(expected)
    with pytest.raises(InvalidInput, match="does not cover"):
        forecast_prices(history, [datetime(2024, 1, 3, tzinfo=UTC)], weeks=2)


def test_gate_closures_follow_local_time() -> None:
    policy = BidPolicy()
    summer = datetime(2030, 6, 2, 22, tzinfo=UTC)  # 00:00 CEST on 3 June
    assert policy.dayahead_gate(summer) == datetime(2030, 6, 2, 10, tzinfo=UTC)
    winter = datetime(2030, 1, 14, 23, tzinfo=UTC)
    assert policy.dayahead_gate(winter) == datetime(2030, 1, 14, 11, tzinfo=UTC)
    assert policy.afrr_energy_gate(summer) == summer - timedelta(minutes=25)
    assert policy.afrr_capacity_gate(summer) == datetime(2030, 6, 2, 7, tzinfo=UTC)


def test_the_simulated_exchange_accepts_the_interpolated_demand() -> None:
    order = {"curves": [{"deliveryStart": "2030-06-02T22:00:00Z", "deliveryEnd": "2030-06-02T22:15:00Z",
                         "curvePoints": [{"price": -500, "volume": 2.0}, {"price": 50, "volume": 2.0},
                                         {"price": 150, "volume": 1.0}, {"price": 4000, "volume": 1.0}]}]}
    results = clear_curve_order(order, {datetime(2030, 6, 2, 22, tzinfo=UTC): 100.0})
    assert results["results"][0]["volume"] == 1.5


def test_capacity_held_through_a_product_is_bounded_by_the_energy_the_cars_can_take_or_give() -> None:
    # Four ISPs, schedule 100 kW (25 kWh each); the cars can hold 25 to 100 kWh more than scheduled by the ISPs'
    # ends, and give back 10 to 50 kWh. Held for the whole product, down
    # capacity c needs c * 0.25 h * k <= room at ISP k: min(25/0.25, 60/0.5, 90/0.75, 100/1.0) = 100 kW; up:
    # min(10/0.25, 20/0.5, 40/0.75, 50/1.0) = 40 kW.
    schedule = np.full(4, 100.0)
    cumulative = np.cumsum(schedule) * 0.25
    e_max = cumulative + np.array([25.0, 60.0, 90.0, 100.0])
    e_min = cumulative - np.array([10.0, 20.0, 40.0, 50.0])
    up, down = bidding.energy_limited_capacity(schedule, e_min, e_max, 0, 4)
    assert down == pytest.approx(100.0)
    assert up == pytest.approx(40.0)
    # A product starting later counts from its own first ISP.
    later = bidding.energy_limited_capacity(schedule, e_min, e_max, 2, 2)
    assert later[1] == pytest.approx(min(90.0 / 0.25, 100.0 / 0.5))
    with pytest.raises(InvalidInput):
        bidding.energy_limited_capacity(schedule, e_min, e_max, 3, 2)


def test_energy_the_schedule_bought_before_the_product_beyond_the_bounds_is_not_held_against_it() -> None:
    # The position buys 200 kWh in the first two ISPs for cars the bounds do not see (plugged in before the
    # horizon): 150 kWh over the bounds at the product's start. The product (ISPs 2-3, 100 kW scheduled) keeps
    # the room its own ISPs have: 40 and 60 kWh above the schedule's own energy there.
    schedule = np.array([400.0, 400.0, 100.0, 100.0])
    e_max = np.array([25.0, 50.0, 50.0 + 25.0 + 40.0, 50.0 + 50.0 + 60.0])
    e_min = np.zeros(4)
    _, down = bidding.energy_limited_capacity(schedule, e_min, e_max, 2, 2)
    assert down == pytest.approx(min(40.0 / 0.25, 60.0 / 0.5))
    # Held against the product, the 150 kWh would leave it no room at all.
    cumulative = np.cumsum(schedule) * 0.25
    assert (e_max[2:] - cumulative[2:] < 0).all()


def test_a_price_forecast_with_its_memo_is_the_forecast_without_across_moving_horizons() -> None:
    # Hourly prices with a gap of two days (filled by interpolation) and a history that ends mid-year (so
    # horizons later than it are moved back a year): each horizon moves on by an ISP, as a re-plan's does,
    # across the autumn clock change, and the memo's answer is the fresh one to the last bit.
    hours = pd.date_range("2024-01-01", "2024-11-30", freq="h", tz="UTC")
    values = np.sin(np.arange(len(hours)) / 5.0) * 40.0 + 60.0 + hours.hour
    history = pd.Series(values, index=hours)
    history[(hours >= "2024-10-08") & (hours < "2024-10-10")] = np.nan
    memo = ForecastMemo(history)
    for first in (datetime(2024, 10, 26, 20, tzinfo=UTC), datetime(2024, 10, 7, 12, tzinfo=UTC),
                  datetime(2025, 6, 1, tzinfo=UTC)):
        for step in range(12):
            isps = [first + timedelta(minutes=15 * (step + k)) for k in range(160)]
            fresh = forecast_prices(history, isps, weeks=4, tz="Europe/Paris")
            kept = forecast_prices(history, isps, weeks=4, tz="Europe/Paris", memo=memo)
            assert np.array_equal(fresh, kept)
    assert memo.hits == 3 * 11 * 159
    with pytest.raises(InvalidInput, match="another price history"):
        forecast_prices(history.copy(), isps, memo=memo)
