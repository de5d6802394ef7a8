"""Day-ahead curves of V2G cars: they sell (negative demand) where an MTU clears above buying the energy back."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from vpp.algorithms.bidding import build_demand_curves, discharge_thresholds
from vpp.algorithms.scheduling import SchedulingProblem, solve_schedule

# Four cheap ISPs (10 kWh at 10 kW), then four dear ones.
CHEAP_THEN_DEAR = [10.0] * 4 + [100.0, 110.0, 120.0, 130.0]


def one_car(prices: list[float], *, need: float = 5.0, soc: float = 30.0, floor: float = 20.0,
            battery: float = 60.0) -> SchedulingProblem:
    """One V2G car plugged in for the whole horizon, 10 kW either way, 15-minute ISPs."""
    t = len(prices)
    return SchedulingProblem(
        start=None, isp_hours=0.25, prices_eur_per_mwh=np.array(prices), pool_max_kw=np.full(t, np.inf),
        pool_min_kw=np.full(t, -np.inf), session_ids=("car",), arrival=np.array([0]), departure=np.array([t]),
        energy_kwh=np.array([need]), max_kw=np.array([10.0]), min_kw=np.array([-10.0]),
        battery_kwh=np.array([battery]), soc_kwh=np.array([soc]), min_soc_kwh=np.array([floor]))


def test_a_car_sells_in_its_dearest_isps_as_long_as_buying_back_is_cheaper() -> None:
    # Need 5 kWh; each sale is 2.5 kWh. Two sales are bought back at 10, a third at 100 (below 110: it pays),
    # a fourth would sell at 100 what it buys back at 100. The scheduler does the same.
    power, threshold = discharge_thresholds(one_car(CHEAP_THEN_DEAR))
    assert (power == 10.0).all()
    sells = np.array(CHEAP_THEN_DEAR) > threshold[0]
    assert sells.tolist() == [False] * 5 + [True] * 3
    exact = solve_schedule(one_car(CHEAP_THEN_DEAR)).schedule_kw[0]
    assert exact.tolist() == [10.0] * 5 + [-10.0] * 3


def test_the_curve_goes_negative_where_the_mtu_clears_high_and_matches_the_scheduler() -> None:
    problem = one_car(CHEAP_THEN_DEAR)
    levels = np.array([0.0, 5.0, 50.0, 105.0, 500.0])
    curves = build_demand_curves(problem, levels, method="parametric", v2g_spread_eur_per_mwh=0.0)
    exact = build_demand_curves(problem, levels, method="resolve", v2g_spread_eur_per_mwh=0.0)
    assert (np.diff(curves.demand_kw, axis=1) <= 1e-9).all()  # non-increasing in price
    assert curves.demand_kw.min() == -10.0 and curves.demand_kw.max() == 10.0
    # Away from ties (a level equal to another ISP's price leaves the scheduler indifferent) the curves agree.
    assert np.allclose(curves.demand_kw, exact.demand_kw)
    # At the forecast: buy in the five cheapest, sell in the three dearest, as the scheduler's run does.
    assert np.allclose(curves.forecast_pool_kw, [10.0] * 5 + [-10.0] * 3)
    # MTU 4 (100) up to 105 is still where the third sale (110) is bought back; above 110 it sells itself.
    assert curves.demand_kw[4].tolist() == [10.0, 10.0, 10.0, 10.0, -10.0]
    # Without a spread given the curve stays charge-only, as before.
    assert build_demand_curves(problem, levels, method="parametric").demand_kw.min() >= 0.0


def test_a_spread_for_wear_keeps_a_small_price_difference_from_selling() -> None:
    _, threshold = discharge_thresholds(one_car(CHEAP_THEN_DEAR), spread_eur_per_mwh=95.0)
    # Two sales pay (bought back at 10 + 95 < 120, 130); a third would be bought back at 100 + 95.
    sells = np.array(CHEAP_THEN_DEAR) > threshold[0]
    assert sells.tolist() == [False] * 6 + [True] * 2
    assert np.isclose(threshold[0, 5], 120.0)  # 110 sells only above the weakest sale, 120


def test_no_sale_without_energy_above_the_floor_or_room_to_buy_it_back() -> None:
    at_floor, _ = discharge_thresholds(one_car(CHEAP_THEN_DEAR, soc=20.0))
    assert (at_floor == 0.0).all()
    # Two ISPs and a need that takes both at full power: nothing can be bought back.
    tight_power, tight = discharge_thresholds(one_car([10.0, 500.0], need=5.0))
    assert np.isinf(tight).all() and (tight_power == 0.0).all()
    # A battery that the need already fills is not sold from either.
    full, _ = discharge_thresholds(one_car(CHEAP_THEN_DEAR, soc=58.0, need=5.0, battery=60.0))
    assert (full == 0.0).all()


def test_the_energy_above_the_floor_bounds_the_sales() -> None:
    # 3 kWh above the floor: one ISP at 10 kW takes 2.5 kWh; a second would go below the floor.
    prices = [10.0] * 6 + [200.0, 190.0, 180.0]
    power, threshold = discharge_thresholds(one_car(prices, soc=23.0))
    assert (np.array(prices) > threshold[0]).tolist() == [False] * 6 + [True, False, False]
    # Moved above the one that sells, 190 takes its place.
    assert np.isclose(threshold[0, 7], 200.0) and power[0, 7] == 10.0


def test_charge_only_cars_beside_v2g_cars_keep_their_exact_curves() -> None:
    car = one_car(CHEAP_THEN_DEAR)
    t = car.n_isps
    pool = SchedulingProblem(
        start=None, isp_hours=0.25, prices_eur_per_mwh=car.prices_eur_per_mwh, pool_max_kw=np.full(t, np.inf),
        pool_min_kw=np.full(t, -np.inf), session_ids=("car", "plain"), arrival=np.array([0, 2]),
        departure=np.array([t, 6]), energy_kwh=np.array([5.0, 4.0]), max_kw=np.array([10.0, 11.0]),
        min_kw=np.array([-10.0, 0.0]), battery_kwh=np.array([60.0, np.nan]), soc_kwh=np.array([30.0, np.nan]),
        min_soc_kwh=np.array([20.0, np.nan]))
    levels = np.array([0.0, 5.0, 50.0, 105.0, 500.0])
    both = build_demand_curves(pool, levels, method="parametric", v2g_spread_eur_per_mwh=0.0)
    alone = build_demand_curves(car, levels, method="parametric", v2g_spread_eur_per_mwh=0.0)
    plain = build_demand_curves(replace(pool, min_kw=np.array([0.0, 0.0]), energy_kwh=np.array([0.0, 4.0])),
                                levels, method="parametric")
    assert np.allclose(both.demand_kw, alone.demand_kw + plain.demand_kw)
