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


@dataclass(frozen=True, eq=False)
class DemandCurves:
    """Demand (kW, >= 0) per MTU (rows, ISP indices ``mtus``) and price level (columns, increasing)."""

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
                        mtus: IntArray | None = None) -> DemandCurves:
    """Demand curves for ``mtus`` (default all) at ``levels``, non-increasing in price, clipped to the cap.

    ``auto`` (the default) is ``parametric`` for a pool without a cap and ``flow`` for a capped one, both equal
    to the re-solves; ``parametric`` on a capped pool is the older approximation, ``resolve`` the reference.
    """
    started = time.perf_counter()
    if levels.ndim != 1 or levels.size == 0 or np.any(np.diff(levels) <= 0):
        raise InvalidInput("price levels must be a non-empty strictly increasing list")
    if method not in METHODS:
        raise InvalidInput(f"unknown curve method {method!r}; one of {list(METHODS)}")
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
    demand = np.clip(make_non_increasing(demand), 0.0, np.where(np.isfinite(cap), cap, np.inf))
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
    down = float(np.min((energy_max_kwh[window] - cumulative[window]) / elapsed_h))
    up = float(np.min((cumulative[window] - energy_min_kwh[window]) / elapsed_h))
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
