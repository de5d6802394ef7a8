"""The fast portfolio scheduler: exact greedy/flow for charge-only pools, the LP or split LPs for V2G."""

from __future__ import annotations

import time

import numpy as np

from vpp.algorithms.scheduling.exact import solve_exact_lp
from vpp.algorithms.scheduling.flow import greedy_fill, price_order_flow, segment_order_flow
from vpp.algorithms.scheduling.model import (
    POWER_TOL_KW,
    cost_eur,
    status_of,
    unmet_kwh,
    window_mask,
)
from vpp.algorithms.scheduling.problem import FloatArray, ScheduleResult, SchedulingProblem
from vpp.algorithms.scheduling.split import GROUP_SESSIONS, solve_split


def solve_schedule(problem: SchedulingProblem) -> ScheduleResult:
    """Cheapest schedule of the pool: exact greedy/flow for charge-only, dual simplex (split when large) for V2G.

    The cost is the price of the energy plus, with a committed position, the imbalance price of every kWh away
    from it (``ScheduleResult.cost_eur`` reports the energy's price only).
    """
    started = time.perf_counter()
    if problem.is_v2g.any():
        # The groups share pool bounds only: a position or per-ISP caps go to the exact LP.
        splittable = not problem.has_position and problem.session_max_kw is None
        if splittable and problem.n_sessions >= 4 * GROUP_SESSIONS:
            # Near-optimal, not exact, when groups share pool bounds (see split.py); exact without them.
            schedule = solve_split(problem, GROUP_SESSIONS)
            if schedule is not None:
                exact = not problem.has_pool_limits
                return _result(problem, schedule, started, "v2g-lp-split-groups", exact=exact)
        # Small pools, or a split that fell short of a need: the exact LP by dual simplex.
        result = solve_exact_lp(problem, solver="simplex")
        return _result(problem, result.schedule_kw, started, "v2g-lp-dual-simplex", exact=True)
    schedule, method = _charge_only(problem)
    if schedule is None:
        result = solve_exact_lp(problem, solver="simplex")
        return _result(problem, result.schedule_kw, started, "charge-lp-fallback", exact=True)
    return _result(problem, schedule, started, method, exact=True)


def _result(
    problem: SchedulingProblem, schedule: FloatArray, started: float, method: str, *, exact: bool
) -> ScheduleResult:
    pool_kw = schedule.sum(axis=0)
    return ScheduleResult(
        status=status_of(problem, schedule, exact=exact),
        schedule_kw=schedule,
        pool_kw=pool_kw,
        unmet_kwh=unmet_kwh(problem, schedule),
        cost_eur=cost_eur(problem, pool_kw),
        solve_seconds=time.perf_counter() - started,
        method=method,
    )


def _charge_only(problem: SchedulingProblem) -> tuple[FloatArray | None, str]:
    """Greedy when the pool cap does not bind, price-order flow when it does; None when neither applies.

    With a pool floor or a committed position the ISPs are served as segments (segment_order_flow): first the
    floors, then each ISP's power below its position at price minus the imbalance price, then above it at
    price plus the imbalance price.
    """
    h = problem.isp_hours
    mask = window_mask(problem)
    upper = problem.max_kw_by_isp()
    forced = np.minimum(np.maximum(problem.min_kw, 0.0)[:, None], upper) * mask
    cap_kw = np.maximum(upper - forced, 0.0) * mask
    need = np.minimum(
        np.maximum(problem.energy_kwh / h - forced.sum(axis=1), 0.0),
        cap_kw.sum(axis=1),
    )
    pool_cap = problem.pool_max_kw - forced.sum(axis=0)
    pool_floor = problem.pool_min_kw - forced.sum(axis=0)
    if (pool_cap < -POWER_TOL_KW).any():
        return None, ""
    if problem.has_position or (np.isfinite(pool_floor) & (pool_floor > POWER_TOL_KW)).any():
        flexible = _segments(problem, cap_kw, need, pool_cap, pool_floor, forced.sum(axis=0))
        method = "charge-segment-order-flow"
    else:
        order = np.argsort(problem.prices_eur_per_mwh, kind="stable")
        flexible = greedy_fill(cap_kw, need, order)
        method = "charge-greedy"
        if (flexible.sum(axis=0) > pool_cap + POWER_TOL_KW).any():
            flexible = price_order_flow(cap_kw, need, pool_cap, order)
            method = "charge-price-order-flow"
    if (flexible.sum(axis=0) < pool_floor - POWER_TOL_KW).any():
        return None, ""
    # Path pushes subtract floats; clear the last-bit negatives they can leave behind.
    return forced + np.maximum(flexible, 0.0), method


def _segments(problem: SchedulingProblem, cap_kw: FloatArray, need: FloatArray, pool_cap: FloatArray,
              pool_floor: FloatArray, forced_kw: FloatArray) -> FloatArray:
    """The charge-only schedule with each ISP split at its floor and its committed position (flexible power)."""
    n_isps = problem.n_isps
    prices = problem.prices_eur_per_mwh
    floor = np.clip(np.where(np.isfinite(pool_floor), pool_floor, 0.0), 0.0, pool_cap)
    if problem.has_position and problem.position_kw is not None:
        committed = np.isfinite(problem.position_kw)
        position = np.where(committed, problem.position_kw - forced_kw, 0.0)
        knee = np.where(committed, np.clip(position, floor, pool_cap), floor)
        imbalance = problem.imbalance_eur_per_mwh
    else:
        committed = np.zeros(n_isps, dtype=bool)
        knee = floor
        imbalance = 0.0
    # Segment groups: floors first (any price), then the rest by marginal cost; stable ties by ISP.
    isp = np.concatenate([np.arange(n_isps)] * 3)
    room = np.concatenate([floor, knee - floor, pool_cap - knee])
    rank = np.concatenate([np.zeros(n_isps), np.ones(n_isps), np.ones(n_isps)])
    cost = np.concatenate([prices, np.where(committed, prices - imbalance, prices),
                           np.where(committed, prices + imbalance, prices)])
    step = np.repeat(np.arange(3), n_isps)
    order = np.lexsort((step, isp, cost, rank))
    return segment_order_flow(cap_kw, need, isp, room, order)
