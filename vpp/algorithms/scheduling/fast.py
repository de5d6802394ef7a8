"""The fast portfolio scheduler: exact greedy/flow for charge-only pools, the LP or split LPs for V2G."""

from __future__ import annotations

import time

import numpy as np

from vpp.algorithms.scheduling.exact import solve_exact_lp
from vpp.algorithms.scheduling.flow import greedy_fill, price_order_flow
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
    """Cheapest schedule of the pool: exact greedy/flow for charge-only, dual simplex (split when large) for V2G."""
    started = time.perf_counter()
    if problem.is_v2g.any():
        if problem.n_sessions >= 4 * GROUP_SESSIONS:
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
    """Greedy when the pool cap does not bind, price-order flow when it does; None when neither applies."""
    h = problem.isp_hours
    mask = window_mask(problem)
    forced_kw = np.maximum(problem.min_kw, 0.0)
    window_isps = (problem.departure - problem.arrival).astype(np.float64)
    forced = forced_kw[:, None] * mask
    cap_kw = (problem.max_kw - forced_kw)[:, None] * mask
    need = np.minimum(
        np.maximum(problem.energy_kwh / h - forced_kw * window_isps, 0.0),
        (problem.max_kw - forced_kw) * window_isps,
    )
    pool_cap = problem.pool_max_kw - forced.sum(axis=0)
    pool_floor = problem.pool_min_kw - forced.sum(axis=0)
    if (pool_cap < -POWER_TOL_KW).any():
        return None, ""
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
