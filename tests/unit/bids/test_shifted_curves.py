"""Day-ahead curves that move the whole day with the MTU's price: a forecast off by a level keeps the energy."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from vpp.algorithms.bidding import build_demand_curves, demand_at
from vpp.algorithms.scheduling import SchedulingProblem


def pool(prices: np.ndarray, arrivals: list[int], departures: list[int], needs: list[float]) -> SchedulingProblem:
    n, t = len(arrivals), prices.size
    return SchedulingProblem(
        start=None, isp_hours=0.25, prices_eur_per_mwh=prices, pool_max_kw=np.full(t, np.inf),
        pool_min_kw=np.full(t, -np.inf), session_ids=tuple(f"car{k}" for k in range(n)),
        arrival=np.array(arrivals), departure=np.array(departures), energy_kwh=np.array(needs),
        max_kw=np.full(n, 11.0), min_kw=np.zeros(n), battery_kwh=np.full(n, np.nan), soc_kwh=np.full(n, np.nan),
        min_soc_kwh=np.full(n, np.nan))


def cleared_kwh(problem: SchedulingProblem, day: np.ndarray | None, actual: np.ndarray) -> float:
    mtus = np.flatnonzero(np.ones(problem.n_isps, dtype=bool) if day is None else day)
    levels = np.unique(np.round(np.concatenate([problem.prices_eur_per_mwh, actual, actual + 0.01]), 2))
    curves = build_demand_curves(problem, levels, method="parametric", mtus=mtus, day=day)
    return sum(demand_at(levels, row, float(actual[t])) for t, row in zip(curves.mtus, curves.demand_kw,
                                                                          strict=True)) * 0.25


def test_a_day_dearer_than_its_forecast_by_a_level_still_clears_the_days_energy() -> None:
    # Eight ISPs in the day, cars that arrive and leave inside it (30 kWh in all); the day clears 20 EUR/MWh
    # above its forecast in every MTU.
    forecast = np.array([40.0, 30.0, 20.0, 25.0, 35.0, 50.0, 60.0, 45.0])
    problem = pool(forecast, [0, 1, 3], [6, 8, 8], [10.0, 12.0, 8.0])
    actual = forecast + 20.0
    day = np.ones(forecast.size, dtype=bool)
    assert np.isclose(cleared_kwh(problem, day, actual), 30.0)
    # The other MTUs held at their forecast: every MTU looks dear and the day clears far less than its need.
    assert cleared_kwh(problem, None, actual) < 20.0


def test_the_day_against_the_next_one_still_responds_to_the_price() -> None:
    # A car that can charge today (ISPs 0-3) or tomorrow (4-7, forecast 50): today cheap, it buys today; today
    # dearer than tomorrow by the clearing, it buys tomorrow (nothing today).
    forecast = np.array([30.0, 20.0, 25.0, 35.0, 50.0, 50.0, 50.0, 50.0])
    problem = pool(forecast, [0], [8], [5.0])
    day = np.array([True] * 4 + [False] * 4)
    mtus = np.flatnonzero(day)
    levels = np.array([0.0, 20.0, 40.0, 70.0, 100.0])
    curves = build_demand_curves(problem, levels, method="parametric", mtus=mtus, day=day)
    assert curves.method == "shifted"
    assert curves.demand_kw[1].tolist() == [11.0, 11.0, 11.0, 0.0, 0.0]  # the cheapest ISP of the day
    assert (curves.demand_kw[:, -1] == 0.0).all()
    assert (np.diff(curves.demand_kw, axis=1) <= 1e-9).all()


def test_v2g_cars_keep_their_sales_and_buy_back_when_the_whole_day_clears_a_level_higher() -> None:
    # A V2G car inside the day: buys its need and the energy it sells in the cheap ISPs, sells in the dear ones.
    forecast = np.array([10.0] * 4 + [100.0, 110.0, 120.0, 130.0])
    car = pool(forecast, [0], [8], [5.0])
    car = replace(car, min_kw=np.array([-10.0]), max_kw=np.array([10.0]), battery_kwh=np.array([60.0]),
                  soc_kwh=np.array([30.0]), min_soc_kwh=np.array([20.0]))
    day = np.ones(forecast.size, dtype=bool)
    levels = np.unique(np.round(np.concatenate([forecast, forecast + 20.0, forecast + 20.01]), 2))
    curves = build_demand_curves(car, levels, method="parametric", day=day, v2g_spread_eur_per_mwh=0.0)
    assert curves.method == "shifted+v2g-thresholds"
    assert np.allclose(curves.forecast_pool_kw, [10.0] * 5 + [-10.0] * 3)
    actual = forecast + 20.0
    cleared = [demand_at(levels, row, float(actual[t])) for t, row in enumerate(curves.demand_kw)]
    assert np.allclose(cleared, curves.forecast_pool_kw)  # the day's schedule, not a sale in every MTU
    # Held at the forecast instead, every MTU clears as dear: MTU 4 sells where it buys back (at 120 > 110), and
    # the day's position buys none of the car's 5 kWh need.
    held = build_demand_curves(car, levels, method="parametric", v2g_spread_eur_per_mwh=0.0)
    assert sum(demand_at(levels, row, float(actual[t])) for t, row in enumerate(held.demand_kw)) * 0.25 <= 0.0
