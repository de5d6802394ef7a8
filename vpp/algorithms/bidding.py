"""Bid building, pure: day-ahead demand curves per MTU, monotonicity repair, aFRR sizing and pricing.

Day-ahead curve of MTU t: the pool's demand if t clears at price L while every other MTU clears at the
forecast. Re-solving the scheduler for every (t, L) is exact but costs one solve per point (a capped pool of
10,000 sessions: ~0.25 s a solve, ~4,800 points a day). Moving t's price only moves t in the solver's price
order, and the solver gives t the increment ``f(S + t) - f(S)`` of its rank function over the ISPs S served
before t, so every point is one such increment:

* ``parametric`` (uncapped pools): without a pool cap ``f`` is a sum over sessions and a session's power at t
  is ``clip(need - cap of its cheaper ISPs other than t, 0, cap at t)``; summing over sessions gives the whole
  curve in one pass. With a binding cap it is only an approximation (errors of ~10 % of the peak).
* ``flow`` (capped pools): the price-order flow warm-started from the forecast run, t served at each level's
  position on a copy of the state (levels below t's forecast) or the run continued without t (levels above);
  see scheduling/moved.py. Equal to the re-solves, a day in seconds.
* ``auto`` (default) picks ``parametric`` without and ``flow`` with a pool cap; ``resolve`` is the reference.

``vpp bench dayahead-curve`` measures time and error against sampled re-solves.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from vpp.algorithms.scheduling import SchedulingProblem, solve_schedule
from vpp.algorithms.scheduling.model import POWER_TOL_KW, window_mask
from vpp.algorithms.scheduling.moved import moved_isp_demand
from vpp.domain.errors import InvalidInput

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

PRICE_TICK_EUR_PER_MWH = 0.01
# Below the tick: a threshold this much under a price sells at that price (ties broken by ISP order).
TIE_EUR_PER_MWH = 1e-6


@dataclass(frozen=True, eq=False)
class DemandCurves:
    """Demand (kW) per MTU (rows, ISP indices ``mtus``) and price level (columns, increasing); negative where
    the pool's V2G cars sell (positive power is consumption)."""

    levels_eur_per_mwh: FloatArray
    mtus: IntArray
    demand_kw: FloatArray
    forecast_pool_kw: FloatArray
    method: str
    seconds: float


def price_ladder(forecast_eur_per_mwh: FloatArray, *, min_price: float, max_price: float,
                 max_levels: int = 198) -> FloatArray:
    """Price levels of the curves: each distinct forecast price and one tick above it, within the limits.

    The parametric curve is a step function that changes only just above another MTU's forecast price, so
    these levels represent it exactly; beyond ``max_levels`` the distinct prices are thinned to quantiles.
    """
    if min_price >= max_price:
        raise InvalidInput(f"price limits [{min_price}, {max_price}] are empty")
    if max_levels < 4:
        raise InvalidInput("a price ladder needs at least 4 levels")
    prices = np.unique(np.round(np.clip(forecast_eur_per_mwh, min_price, max_price), 2))
    if 2 * prices.size + 2 > max_levels:
        quantiles = np.linspace(0.0, 1.0, (max_levels - 2) // 2)
        prices = np.unique(np.round(np.quantile(prices, quantiles), 2))
    levels = np.concatenate(([min_price, max_price], prices, prices + PRICE_TICK_EUR_PER_MWH))
    levels = np.unique(np.round(np.clip(levels, min_price, max_price), 2))
    return levels.astype(np.float64)


def make_non_increasing(values: FloatArray) -> FloatArray:
    """The closest non-increasing sequence in least squares (pool-adjacent violators), per row if 2-D."""
    if values.ndim == 2:
        return np.vstack([make_non_increasing(row) for row in values]) if values.size else values.copy()
    blocks: list[list[float]] = []  # [mean, weight]
    for value in values.astype(np.float64):
        blocks.append([float(value), 1.0])
        while len(blocks) > 1 and blocks[-2][0] < blocks[-1][0]:
            mean, weight = blocks.pop()
            prev = blocks[-1]
            prev[0] = (prev[0] * prev[1] + mean * weight) / (prev[1] + weight)
            prev[1] += weight
    return np.concatenate([np.full(int(w), m) for m, w in blocks]) if blocks else np.zeros(0)


def _others(prices: FloatArray, cap_kwh: FloatArray, window: IntArray, t: int) -> tuple[IntArray, FloatArray]:
    """The ISPs of the window other than t, cheapest first (equal prices by index), and their filled energy."""
    others = window[window != t]
    others = others[np.argsort(prices[others], kind="stable")]
    return others, np.cumsum(cap_kwh[others])


@dataclass(frozen=True)
class _SaleLadder:
    """A V2G car's sales seen from ISP t, for j = 1 .. ``slots`` sales (see ``_v2g_rows``): ``at`` and ``x0`` where
    and at what price the cheapest other ISPs buy back its need plus j sales, ``x1`` the same with t charging full
    (-inf: t alone covers it), its dearest other ISPs (``by_dearness``, their prices ``dearest``) and how many of
    those pay against their buy-back plus the spread (``paying``)."""

    slots: int
    at: IntArray
    x0: FloatArray
    x1: FloatArray
    by_dearness: IntArray
    dearest: FloatArray
    paying: int


def _sale_ladder(problem: SchedulingProblem, cap_kwh: FloatArray, others: IntArray, filled: FloatArray, t: int,
                 car: tuple[float, float, int, int], spread_eur_per_mwh: float) -> _SaleLadder:
    """The sale ladder of a car (``car``: the power it may give, its need, its sale slots and its stay's ISPs)."""
    give, need, slots, stay = car
    prices = problem.prices_eur_per_mwh
    ascending = np.append(prices[others], np.inf)
    j = np.arange(1, min(slots, stay) + 1)
    wanted = need + j * give * problem.isp_hours
    at = np.searchsorted(filled, wanted - 1e-9)
    x0 = ascending[at]
    x1 = np.where(wanted - cap_kwh[t] > 1e-9, ascending[np.searchsorted(filled, wanted - cap_kwh[t] - 1e-9)],
                  -np.inf)
    by_dearness = others[::-1]
    dearest = prices[by_dearness[: min(j.size, others.size)]]
    pays = dearest > x0[: dearest.size] + spread_eur_per_mwh
    paying = int(np.argmin(pays)) if not pays.all() else int(pays.size)
    return _SaleLadder(int(j.size), np.asarray(at, dtype=np.int64), x0, x1, by_dearness, dearest, paying)


def _v2g_rows(problem: SchedulingProblem, i: int, rows: IntArray, levels: FloatArray | None,
              spread_eur_per_mwh: float, day: NDArray[np.bool_] | None = None
              ) -> tuple[FloatArray, FloatArray, FloatArray]:
    """V2G session i at the ISPs ``rows``: its demand (kW) at each level (rows x levels; the ISP's own forecast
    price when ``levels`` is None: rows x 1), its discharge power and the level above which it sells there.

    With every other ISP of its stay at its forecast price, the car sells in its dearest other ISPs, as many as
    pay (the j-th dearest above the price of buying back its need plus j ISPs' discharge in its cheapest ISPs,
    charging caps full, plus ``spread_eur_per_mwh`` for wear and margin) and as its energy above the floor
    allows (``(SoC - floor) / (power x h)`` ISPs). ISP t sells too when its price beats the weakest of those
    (it takes its place) or, with room for one more, the buy-back of one more plus the spread. Otherwise it
    charges its share of the need plus what it sells elsewhere, cheapest ISPs first, t at its level among them
    (a cheap t is where it buys back, and may make one more sale pay). Equal prices rank by ISP index, as the
    solver's stable sort does. The state of charge along the stay is not followed (a car above its floor can
    sell first and charge after); the planner's LP holds it when the position is delivered.

    With ``day`` the day's ISPs move with t's level (``_parametric_shifted``), to first order: what the car does
    at t's forecast price is kept, except against ISPs outside the day. A sale decided against an ISP of the day
    (the weakest sale it displaces, the buy-back it needs) holds at every level as at the forecast; one decided
    against an ISP outside the day happens above that ISP's price. Charging counts the day's cheaper ISPs as at
    the forecast and those outside the day against the level, with the sales as at the forecast.
    """
    h = problem.isp_hours
    prices = problem.prices_eur_per_mwh
    window, cap_kwh, give, need, slots = _v2g_car(problem, i)
    count_levels = 1 if levels is None else levels.size
    demand = np.zeros((rows.size, count_levels))
    power = np.zeros(rows.size)
    threshold = np.full(rows.size, np.inf)
    in_window = np.isin(rows, window)
    for r, t in enumerate(rows):
        if not in_window[r]:
            continue
        if day is not None and levels is not None:
            demand[r] = _v2g_row_shifted(problem, i, int(t), levels, spread_eur_per_mwh, day)
            power[r] = give if (demand[r] < 0).any() else 0.0
            continue
        level = np.array([prices[t]]) if levels is None else levels
        others, filled = _others(prices, cap_kwh, window, int(t))
        # Where t ranks at each level among the others (cheaper others: lower price, or equal and earlier).
        keys = prices[others] + others * TIE_EUR_PER_MWH
        cheaper = np.append(0.0, filled)[np.searchsorted(keys, level + t * TIE_EUR_PER_MWH)]
        sold = np.zeros(count_levels)
        if slots:
            ladder = _sale_ladder(problem, cap_kwh, others, filled, int(t), (give, need, slots, window.size),
                                  spread_eur_per_mwh)
            m, dearest, by_dearness, x0, x1 = ladder.paying, ladder.dearest, ladder.by_dearness, ladder.x0, ladder.x1
            options = [float(dearest[m - 1]) - (TIE_EUR_PER_MWH if by_dearness[m - 1] < t else 0.0)] if m else []
            if m < ladder.slots:
                options.append(float(x0[m]) + spread_eur_per_mwh)
            if options and math.isfinite(min(options)):
                power[r], threshold[r] = give, min(options)
            # With t at the level as a place to buy back: how many sales pay, and so what it charges.
            buy_back = np.minimum(x0[: dearest.size, None], np.maximum(level[None, :], x1[: dearest.size, None]))
            sales = (dearest[:, None] > buy_back + spread_eur_per_mwh).sum(axis=0)
            sold = sales * give * h
        charge = np.clip(need + sold - cheaper, 0.0, cap_kwh[t]) / h
        demand[r] = np.where(level > threshold[r], -power[r], charge)
    return demand, power, threshold


def _v2g_car(problem: SchedulingProblem, i: int) -> tuple[NDArray[np.int64], FloatArray, float, float, int]:
    """V2G session i as its curve rows see it: its stay's ISPs, its charging cap per ISP (kWh), the power it may
    give (within its energy above the floor for an ISP), its need (kWh) and how many ISPs it can sell in (0: none;
    a car whose need would overfill its battery sells nothing)."""
    h = problem.isp_hours
    window = np.flatnonzero(window_mask(problem)[i])
    cap_kwh: FloatArray = np.maximum(problem.max_kw_by_isp()[i], 0.0) * h
    soc = float(np.nan_to_num(problem.soc_kwh[i]))
    budget = soc - float(np.nan_to_num(problem.min_soc_kwh[i]))
    give = min(-float(problem.min_kw[i]), budget / h) if budget > 0 else 0.0
    need = max(float(problem.energy_kwh[i]), 0.0)
    battery = float(problem.battery_kwh[i])
    can_sell = window.size >= 2 and give > 1e-9 and not (math.isfinite(battery) and soc + need > battery + 1e-6)
    slots = max(1, math.floor(budget / (give * h) + 1e-9)) if can_sell else 0
    return window, cap_kwh, give, need, slots


def _v2g_row_shifted(problem: SchedulingProblem, i: int, t: int, levels: FloatArray, spread_eur_per_mwh: float,
                     day: NDArray[np.bool_]) -> FloatArray:
    """V2G session i at ISP t with the day moving with t's level (see ``_v2g_rows``): demand per level."""
    h = problem.isp_hours
    prices = problem.prices_eur_per_mwh
    window, cap_kwh, give, need, slots = _v2g_car(problem, i)
    others, filled = _others(prices, cap_kwh, window, t)
    own = prices[t]
    first = int(np.flatnonzero(day)[0]) if day.any() else 0
    # Cheaper than t: the day's ISPs as at the forecast; outside it, against the level (before the day on a tie).
    inside = day[others]
    cheaper_inside = float(cap_kwh[others[inside & ((prices[others] < own) |
                                                     ((prices[others] == own) & (others < t)))]].sum())
    outside = others[~inside]
    before = outside < first
    out_prices = prices[outside]
    cheaper = cheaper_inside + (cap_kwh[outside][None, :] * (
        (before[None, :] & (out_prices[None, :] <= levels[:, None])) |
        (~before[None, :] & (out_prices[None, :] < levels[:, None])))).sum(axis=1)
    sold = 0.0
    sells = np.zeros(levels.size, dtype=bool)
    if slots:
        ladder = _sale_ladder(problem, cap_kwh, others, filled, t, (give, need, slots, window.size),
                              spread_eur_per_mwh)
        m, dearest, by_dearness, x0, x1 = ladder.paying, ladder.dearest, ladder.by_dearness, ladder.x0, ladder.x1
        order_idx = np.append(others, -1)
        sales = int((dearest > np.minimum(x0[: dearest.size], np.maximum(own, x1[: dearest.size]))
                     + spread_eur_per_mwh).sum())
        sold = sales * give * h

        def beats(isp: int, price: float) -> NDArray[np.bool_]:
            if isp >= 0 and day[isp]:
                return np.full(levels.size, own > price)
            return np.asarray(levels > price)

        if m:
            u = int(by_dearness[m - 1])
            sells |= beats(u, float(dearest[m - 1]) - (TIE_EUR_PER_MWH if u < t else 0.0))
        if m < ladder.slots and math.isfinite(float(x0[m])):
            sells |= beats(int(order_idx[min(int(ladder.at[m]), others.size)]), float(x0[m]) + spread_eur_per_mwh)
    charge = np.clip(need + sold - cheaper, 0.0, cap_kwh[t]) / h
    out: FloatArray = np.where(sells, -give, charge)
    return out


def discharge_thresholds(problem: SchedulingProblem, *, spread_eur_per_mwh: float = 0.0
                         ) -> tuple[FloatArray, FloatArray]:
    """Per session and ISP: the discharge power (kW, >= 0) a V2G car sells and the price above which it sells
    it there (``inf``: it does not; see ``_v2g_rows``). Sessions without discharge have power 0."""
    n, t_count = problem.n_sessions, problem.n_isps
    power = np.zeros((n, t_count))
    threshold = np.full((n, t_count), np.inf)
    every = np.arange(t_count, dtype=np.int64)
    for i in np.flatnonzero(problem.is_v2g):
        _, power[i], threshold[i] = _v2g_rows(problem, int(i), every, np.zeros(1), spread_eur_per_mwh)
    return power, threshold


def _select(problem: SchedulingProblem, rows: IntArray) -> SchedulingProblem:
    """The sessions ``rows`` of the problem (same horizon, prices and pool bounds)."""
    per_session = {"session_ids", "arrival", "departure", "energy_kwh", "max_kw", "min_kw", "battery_kwh",
                   "soc_kwh", "min_soc_kwh", "session_max_kw", "soc_floor_kwh"}
    fields = {name: getattr(problem, name) for name in problem.__dataclass_fields__}
    for name in per_session:
        value = fields[name]
        if name == "session_ids":
            fields[name] = tuple(value[int(k)] for k in rows)
        elif value is not None:
            fields[name] = value[rows]
    return SchedulingProblem(**fields)


def _v2g_curves(problem: SchedulingProblem, levels: FloatArray, mtus: IntArray, spread_eur_per_mwh: float
                ) -> tuple[FloatArray, FloatArray]:
    """Demand per MTU and level, and per ISP at the forecast: charge-only sessions by the parametric curves
    (exact without a pool cap, the approximation with one), V2G sessions each by ``_v2g_rows``."""
    v2g = problem.is_v2g
    rest = _select(problem, np.flatnonzero(~v2g).astype(np.int64))
    curve = _parametric(rest, levels, mtus) if rest.n_sessions else np.zeros((mtus.size, levels.size))
    forecast = solve_schedule(rest).pool_kw if rest.n_sessions else np.zeros(problem.n_isps)
    every = np.arange(problem.n_isps, dtype=np.int64)
    for i in np.flatnonzero(v2g):
        curve = curve + _v2g_rows(problem, int(i), mtus, levels, spread_eur_per_mwh)[0]
        forecast = forecast + _v2g_rows(problem, int(i), every, None, spread_eur_per_mwh)[0][:, 0]
    return curve, forecast


def _charge_only_parts(problem: SchedulingProblem) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Forced power per ISP, flexible capacity (sessions x ISPs) and flexible need (kW x ISPs) per session.

    V2G sessions are bid as charge-only (their discharge is not part of a buy curve).
    """
    h = problem.isp_hours
    mask = window_mask(problem)
    max_kw = np.maximum(problem.max_kw, 0.0)
    forced_kw = np.clip(problem.min_kw, 0.0, max_kw)
    window_isps = (problem.departure - problem.arrival).astype(np.float64)
    forced = (forced_kw[:, None] * mask).sum(axis=0)
    cap = (max_kw - forced_kw)[:, None] * mask
    need = np.minimum(np.maximum(problem.energy_kwh / h - forced_kw * window_isps, 0.0),
                      (max_kw - forced_kw) * window_isps)
    return forced, cap, need


def _parametric(problem: SchedulingProblem, levels: FloatArray, mtus: IntArray) -> FloatArray:
    """Uncapped price-order greedy demand at each MTU and level (MTUs x levels).

    Ties break as the solver's stable sort does: an ISP priced exactly at the level counts as cheaper than t
    when it comes earlier.
    """
    forced, cap, need = _charge_only_parts(problem)
    prices = problem.prices_eur_per_mwh
    cheaper = (prices[:, None] < levels[None, :]).astype(np.float64)  # ISPs x levels
    equal = (prices[:, None] == levels[None, :]).astype(np.float64)
    cheaper_cap = cap @ cheaper  # sessions x levels: capacity in ISPs cheaper than each level
    tied_before = np.zeros_like(cheaper_cap)  # capacity at ISPs before t priced exactly at the level
    demand = np.empty((mtus.size, levels.size))
    wanted = {int(t): row for row, t in enumerate(mtus)}
    for t in range(int(mtus.max(initial=-1)) + 1):
        row = wanted.get(t)
        if row is not None:
            sessions = np.flatnonzero(cap[:, t] > 0.0)
            cap_t = cap[sessions, t][:, None]
            others = cheaper_cap[sessions] - cap_t * cheaper[t][None, :] + tied_before[sessions]
            flexible = np.clip(need[sessions, None] - others, 0.0, cap_t)
            demand[row] = forced[t] + flexible.sum(axis=0)
        if equal[t].any():
            tied_before += cap[:, t][:, None] * equal[t][None, :]
    return demand


def _parametric_shifted(problem: SchedulingProblem, levels: FloatArray, mtus: IntArray, day: NDArray[np.bool_]
                        ) -> FloatArray:
    """Uncapped greedy demand at each MTU and level (MTUs x levels) when the whole day moves with the MTU.

    MTU t clearing at L is read as the day's prices being ``L - forecast[t]`` off their forecast, all of them:
    the ISPs of ``day`` keep their order among themselves (t is cheaper than those it was cheaper than), and
    only the ISPs outside the day (before it: the build time's evening; after it: the next day, at their
    forecast) change places with t. A forecast wrong by a level (the day dearer or cheaper than its history)
    then moves energy between days, where the cars' stays let it, instead of out of every MTU at once. The
    ISPs before the day count as cheaper on a tie, those after as dearer (the solver's stable sort).
    """
    forced, cap, need = _charge_only_parts(problem)
    prices = problem.prices_eur_per_mwh
    index = np.arange(problem.n_isps)
    first = int(np.flatnonzero(day)[0]) if day.any() else 0
    before = ~day & (index < first)
    after = ~day & (index >= first)
    outside = (before[:, None] & (prices[:, None] <= levels[None, :])) | \
        (after[:, None] & (prices[:, None] < levels[None, :]))
    outside_cap = cap @ outside.astype(np.float64)  # sessions x levels
    demand = np.empty((mtus.size, levels.size))
    for row, t in enumerate(mtus):
        sessions = np.flatnonzero(cap[:, t] > 0.0)
        inside = day & ((prices < prices[t]) | ((prices == prices[t]) & (index < t)))
        inside[t] = False
        others = outside_cap[sessions] + (cap[sessions][:, inside].sum(axis=1))[:, None]
        flexible = np.clip(need[sessions, None] - others, 0.0, cap[sessions, t][:, None])
        demand[row] = forced[t] + flexible.sum(axis=0)
    return demand


def _flow(problem: SchedulingProblem, levels: FloatArray, mtus: IntArray) -> FloatArray:
    """Exact under a pool cap: the price-order flow with MTU t moved to each level, warm-started (MTUs x levels).

    A level puts t after the ISPs priced below it and, on a tie, after those with a lower index (the solver's
    stable sort); ``moved_isp_demand`` serves t there from the forecast run's state (see moved.py).
    """
    forced, cap, need = _charge_only_parts(problem)
    prices = problem.prices_eur_per_mwh
    pool_cap = problem.pool_max_kw - forced
    order = np.argsort(prices, kind="stable")
    index = np.arange(problem.n_isps)
    before: dict[int, IntArray] = {}
    for t in np.unique(mtus):
        ahead = (prices[:, None] < levels[None, :]) | ((prices[:, None] == levels[None, :]) & (index < t)[:, None])
        ahead[t] = False
        before[int(t)] = ahead.sum(axis=0).astype(np.int64)
    flexible = moved_isp_demand(cap, need, pool_cap, order, before)
    return np.vstack([forced[t] + flexible[int(t)] for t in mtus]) if mtus.size else np.zeros((0, levels.size))


def _resolve(problem: SchedulingProblem, levels: FloatArray, mtus: IntArray) -> FloatArray:
    """Exact: one scheduler solve per MTU and level."""
    demand = np.empty((mtus.size, levels.size))
    for row, t in enumerate(mtus):
        for col, level in enumerate(levels):
            prices = problem.prices_eur_per_mwh.copy()
            prices[t] = level
            shifted = _with_prices(problem, prices)
            demand[row, col] = solve_schedule(shifted).pool_kw[t]
    return demand


def _with_prices(problem: SchedulingProblem, prices: FloatArray) -> SchedulingProblem:
    fields = {name: getattr(problem, name) for name in problem.__dataclass_fields__}
    fields["prices_eur_per_mwh"] = prices
    return SchedulingProblem(**fields)


def charge_only(problem: SchedulingProblem) -> SchedulingProblem:
    """The problem with discharge removed (a buy curve bids charging only)."""
    if not problem.is_v2g.any():
        return problem
    fields = {name: getattr(problem, name) for name in problem.__dataclass_fields__}
    fields["min_kw"] = np.maximum(problem.min_kw, 0.0)
    fields["pool_min_kw"] = np.maximum(problem.pool_min_kw, 0.0)
    return SchedulingProblem(**fields)


METHODS = ("auto", "parametric", "flow", "resolve")


def _has_pool_cap(problem: SchedulingProblem) -> bool:
    return bool(np.isfinite(problem.pool_max_kw).any())


def _flow_applies(problem: SchedulingProblem) -> bool:
    """The price-order flow is what the solver runs: charge-only, and the forced power within the cap."""
    forced, _, _ = _charge_only_parts(problem)
    return bool((problem.pool_max_kw - forced >= -POWER_TOL_KW).all())


def build_demand_curves(problem: SchedulingProblem, levels: FloatArray, *, method: str = "auto",
                        mtus: IntArray | None = None, v2g_spread_eur_per_mwh: float | None = None,
                        day: NDArray[np.bool_] | None = None) -> DemandCurves:
    """Demand curves for ``mtus`` (default all) at ``levels``, non-increasing in price, clipped to the cap.

    ``auto`` (the default) is ``parametric`` for a pool without a cap and ``flow`` for a capped one, both equal
    to the re-solves; ``parametric`` on a capped pool is the older approximation, ``resolve`` the reference.
    These curves buy charging. With ``v2g_spread_eur_per_mwh`` (None: charge-only) the pool's V2G cars also sell:
    each MTU's curve goes below zero by what they discharge where it clears above their thresholds
    (``discharge_thresholds``); the cap clips charging only. With ``day`` (ISPs x bool, the delivery day) the
    charging curves move the whole day with the MTU's price (``_parametric_shifted``, method ``shifted``;
    a pool cap clips each MTU, the approximation of ``parametric``).
    """
    if day is not None and method != "resolve":
        return _shifted_curves(problem, levels, mtus, day, v2g_spread_eur_per_mwh)
    if v2g_spread_eur_per_mwh is None or not problem.is_v2g.any() or method == "resolve":
        # ``resolve`` re-solves the whole problem, V2G included, when a spread is given (the reference).
        if method == "resolve" and v2g_spread_eur_per_mwh is not None:
            return _charge_curves(problem, levels, method=method, mtus=mtus, keep_v2g=True)
        return _charge_curves(problem, levels, method=method, mtus=mtus)
    started = time.perf_counter()
    _check_levels(levels, method)
    picked = np.arange(problem.n_isps, dtype=np.int64) if mtus is None else np.asarray(mtus, dtype=np.int64)
    if picked.size and (picked.min() < 0 or picked.max() >= problem.n_isps):
        raise InvalidInput(f"MTU indices must lie in 0..{problem.n_isps - 1}")
    demand, forecast = _v2g_curves(problem, levels, picked, v2g_spread_eur_per_mwh)
    # Charging stays within the pool's cap; the sales are not capped.
    cap = problem.pool_max_kw[picked][:, None]
    demand = np.minimum(make_non_increasing(demand), np.where(np.isfinite(cap), cap, np.inf))
    return DemandCurves(levels, picked, demand, forecast, "parametric+v2g-thresholds",
                        time.perf_counter() - started)


def _shifted_curves(problem: SchedulingProblem, levels: FloatArray, mtus: IntArray | None,
                    day: NDArray[np.bool_], v2g_spread_eur_per_mwh: float | None) -> DemandCurves:
    """``build_demand_curves`` with the day moving with each MTU (V2G sales, if any, as without ``day``)."""
    started = time.perf_counter()
    _check_levels(levels, "auto")
    picked = np.arange(problem.n_isps, dtype=np.int64) if mtus is None else np.asarray(mtus, dtype=np.int64)
    if picked.size and (picked.min() < 0 or picked.max() >= problem.n_isps):
        raise InvalidInput(f"MTU indices must lie in 0..{problem.n_isps - 1}")
    if day.shape != (problem.n_isps,):
        raise InvalidInput("day must mark each ISP of the problem")
    v2g = problem.is_v2g if v2g_spread_eur_per_mwh is not None else np.zeros(problem.n_sessions, dtype=bool)
    charging = charge_only(_select(problem, np.flatnonzero(~v2g).astype(np.int64)))
    demand = _parametric_shifted(charging, levels, picked, day) if charging.n_sessions else \
        np.zeros((picked.size, levels.size))
    forecast = solve_schedule(charging).pool_kw if charging.n_sessions else np.zeros(problem.n_isps)
    cap = problem.pool_max_kw[picked][:, None]
    demand = np.clip(make_non_increasing(demand), 0.0, np.where(np.isfinite(cap), cap, np.inf))
    method = "shifted"
    if v2g.any() and v2g_spread_eur_per_mwh is not None:
        every = np.arange(problem.n_isps, dtype=np.int64)
        for i in np.flatnonzero(v2g):
            demand = demand + _v2g_rows(problem, int(i), picked, levels, v2g_spread_eur_per_mwh, day)[0]
            forecast = forecast + _v2g_rows(problem, int(i), every, None, v2g_spread_eur_per_mwh)[0][:, 0]
        demand = make_non_increasing(demand)
        method = "shifted+v2g-thresholds"
    return DemandCurves(levels, picked, demand, forecast, method, time.perf_counter() - started)


def _check_levels(levels: FloatArray, method: str) -> None:
    if levels.ndim != 1 or levels.size == 0 or np.any(np.diff(levels) <= 0):
        raise InvalidInput("price levels must be a non-empty strictly increasing list")
    if method not in METHODS:
        raise InvalidInput(f"unknown curve method {method!r}; one of {list(METHODS)}")


def _charge_curves(problem: SchedulingProblem, levels: FloatArray, *, method: str,
                   mtus: IntArray | None, keep_v2g: bool = False) -> DemandCurves:
    """The charge-only curves (see ``build_demand_curves``); ``keep_v2g`` with ``resolve`` only."""
    started = time.perf_counter()
    _check_levels(levels, method)
    if not keep_v2g:
        problem = charge_only(problem)
    chosen = np.arange(problem.n_isps, dtype=np.int64) if mtus is None else np.asarray(mtus, dtype=np.int64)
    if chosen.size and (chosen.min() < 0 or chosen.max() >= problem.n_isps):
        raise InvalidInput(f"MTU indices must lie in 0..{problem.n_isps - 1}")
    forecast = solve_schedule(problem).pool_kw
    if method == "auto":
        method = "flow" if _has_pool_cap(problem) and _flow_applies(problem) else "parametric"
    if method == "flow" and not _flow_applies(problem):
        raise InvalidInput("the flow curves need the forced charging within the pool cap; use 'resolve'")
    if method == "parametric":
        demand = _parametric(problem, levels, chosen)
    elif method == "flow":
        demand = _flow(problem, levels, chosen)
    else:
        demand = _resolve(problem, levels, chosen)
    cap = problem.pool_max_kw[chosen][:, None]
    demand = np.clip(make_non_increasing(demand), -np.inf if keep_v2g else 0.0,
                     np.where(np.isfinite(cap), cap, np.inf))
    return DemandCurves(levels, chosen, demand, forecast, method, time.perf_counter() - started)


def demand_at(levels: FloatArray, demand_kw: FloatArray, price: float) -> float:
    """Demand on a curve at ``price``, linearly interpolated between levels as an exchange does."""
    return float(np.interp(price, levels, demand_kw))


@dataclass(frozen=True, eq=False)
class AfrrVolumes:
    """aFRR volumes per ISP in whole MW steps (kW), zero where the headroom is below the minimum bid."""

    up_kw: FloatArray
    down_kw: FloatArray


def size_afrr(up_headroom_kw: FloatArray, down_headroom_kw: FloatArray, *, step_kw: float = 1000.0,
              minimum_kw: float = 1000.0) -> AfrrVolumes:
    """Round headroom down to whole steps; below ``minimum_kw`` there is no bid."""
    if step_kw <= 0 or minimum_kw <= 0:
        raise InvalidInput("aFRR step and minimum must be positive")

    def size(headroom: FloatArray) -> FloatArray:
        # A hair of tolerance so 999.9999 kW of float noise still counts as 1 MW.
        steps = np.floor(np.maximum(headroom, 0.0) / step_kw + 1e-6) * step_kw
        return np.where(steps >= minimum_kw - 1e-9, steps, 0.0)

    return AfrrVolumes(size(up_headroom_kw), size(down_headroom_kw))


def capacity_per_product(volume_kw: FloatArray, isps_per_product: int) -> FloatArray:
    """Capacity a product can hold: the smallest per-ISP volume over each product (a partial tail is dropped)."""
    if isps_per_product <= 0:
        raise InvalidInput("a product must span at least one ISP")
    products = volume_kw.size // isps_per_product
    shaped = volume_kw[: products * isps_per_product].reshape(products, isps_per_product)
    return shaped.min(axis=1) if products else np.zeros(0)


def energy_limited_capacity(schedule_kw: FloatArray, energy_min_kwh: FloatArray, energy_max_kwh: FloatArray,
                            first: int, isps_per_product: int, isp_hours: float = 0.25) -> tuple[float, float]:
    """Upward and downward capacity (kW, >= 0) the pool's energy can hold for a whole product from ISP ``first``.

    Capacity held through a product may be activated in full for all of it: a downward activation of ``c`` kW
    adds ``c * h`` kWh by the end of each ISP of the product, which the cars must still have room for
    (cumulative energy at most ``energy_max_kwh``); an upward one takes it away (at least ``energy_min_kwh``,
    below which needs or state-of-charge floors break). Energies are cumulative from the horizon's start to each
    ISP's end, as ``PoolFlexibility`` gives them; the schedule is the committed position.
    """
    if isps_per_product <= 0 or not 0 <= first <= schedule_kw.size - isps_per_product:
        raise InvalidInput("the product must lie inside the schedule")
    cumulative = np.cumsum(schedule_kw) * isp_hours
    window = slice(first, first + isps_per_product)
    elapsed_h = np.arange(1, isps_per_product + 1) * isp_hours
    # Energy the schedule holds before the product beyond the bounds (cars the bounds do not see, such as those
    # plugged in the evening before the horizon, which the day-ahead position now buys) is not the product's:
    # the room is counted from where the schedule stands at the product's start.
    done = cumulative[first - 1] if first > 0 else 0.0
    over = min(float(energy_max_kwh[first - 1]) - done, 0.0) if first > 0 else 0.0
    under = min(done - float(energy_min_kwh[first - 1]), 0.0) if first > 0 else 0.0
    down = float(np.min((energy_max_kwh[window] - cumulative[window] - over) / elapsed_h))
    up = float(np.min((cumulative[window] - energy_min_kwh[window] - under) / elapsed_h))
    return max(up, 0.0), max(down, 0.0)


def opportunity_costs(forecast_eur_per_mwh: FloatArray, *, recovery_isps: int) -> tuple[FloatArray, FloatArray]:
    """EUR/MWh an upward and a downward MWh at each ISP costs in day-ahead value, both >= 0.

    Upward regulation (less charging at t) must be made up later, at the mean forecast of the next
    ``recovery_isps`` ISPs (the rest of the horizon near its end); downward regulation (more charging at t)
    displaces charging planned then. The cost is the price difference in the unfavourable direction.
    """
    if recovery_isps <= 0:
        raise InvalidInput("recovery_isps must be positive")
    n = forecast_eur_per_mwh.size
    later = np.empty(n)
    for t in range(n):
        window = forecast_eur_per_mwh[t + 1: t + 1 + recovery_isps]
        later[t] = window.mean() if window.size else forecast_eur_per_mwh[t]
    up = np.maximum(later - forecast_eur_per_mwh, 0.0)
    down = np.maximum(forecast_eur_per_mwh - later, 0.0)
    return up, down


def round_price(value: float) -> float:
    """A price at the 0.01 EUR/MWh tick."""
    return math.floor(value * 100.0 + 0.5) / 100.0
