"""Large V2G pools by resource-directive decomposition: stratified session groups, each an exact LP.

The dual simplex time of the per-session LP grows faster than linearly with the pool (about 1 s for
1,000 V2G sessions, 20-40 s for 10,000), because the pool rows couple every session. Splitting the pool
into groups that are each a stratified sample of the sessions (by window and power) and giving each group
a share of the pool bounds at every ISP, in proportion to the power its plugged sessions can move there,
turns one large LP into several small ones. Every group schedule satisfies all session constraints and
its share of the pool bounds, so the sum satisfies the pool bounds.

Coordination rounds then re-divide the pool bounds, each group's LP kept live in HiGHS so that a round
re-solves it from its last basis (a hot start: tens to hundreds of dual simplex iterations, not thousands):

* hand-over: room a group leaves unused at an ISP goes to the groups whose bound binds there, in proportion
  to their pool duals (what one more kW is worth to them). A donor keeps exactly what it uses, so its
  schedule stays optimal; a receiver only gains room and can only get cheaper.
* trade, once no room is left unused: at each ISP where several groups bind with different duals, a step
  of bound moves from those below the weighted mean dual to those above it (zero-sum, so the pool bound is
  kept). A trade is kept only when the summed group objectives fall, and otherwise undone with a smaller
  step; this is a descent on the resource split, so the cost never rises.

The result is not proven optimal (the trades stop after ``COORDINATION_ROUNDS``); the benchmark and the
property tests measure the gap to the exact LP. Without finite pool bounds the groups are independent and
the split is exact.

A group can fall short of a need that the whole pool would meet (its share was too small); its duals carry
the shortfall penalty, so hand-over and trades move capacity to it first. If a need is still short, the
caller falls back to the exact LP so that shortfalls stay those of the exact model.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from vpp.algorithms.scheduling.exact import PoolLp, clip_to_bounds
from vpp.algorithms.scheduling.model import ENERGY_TOL_KWH, pool_violation_kw, unmet_kwh, window_mask
from vpp.algorithms.scheduling.problem import FloatArray, IntArray, SchedulingProblem

GROUP_SESSIONS = 500
COORDINATION_ROUNDS = 12
TRADE_STEP = 0.1
MIN_TRADE_STEP = 0.005
MAX_TRADE_STEP = 0.4
_SLACK_KW = 1e-7
_DUAL_EPS = 1e-9


def stratified_groups(problem: SchedulingProblem, group_sessions: int) -> list[IntArray]:
    """Deal the sessions, sorted by window and power, round-robin into groups of about ``group_sessions``."""
    n_groups = max(1, round(problem.n_sessions / max(group_sessions, 1)))
    order = np.lexsort((problem.energy_kwh, problem.max_kw, problem.departure, problem.arrival))
    return [np.sort(order[g::n_groups]) for g in range(n_groups) if order[g::n_groups].size]


def _subproblem(
    problem: SchedulingProblem, rows: IntArray, pool_min: FloatArray, pool_max: FloatArray
) -> SchedulingProblem:
    return SchedulingProblem(
        start=problem.start,
        isp_hours=problem.isp_hours,
        prices_eur_per_mwh=problem.prices_eur_per_mwh,
        pool_max_kw=pool_max,
        pool_min_kw=pool_min,
        session_ids=tuple(problem.session_ids[k] for k in rows),
        arrival=problem.arrival[rows],
        departure=problem.departure[rows],
        energy_kwh=problem.energy_kwh[rows],
        max_kw=problem.max_kw[rows],
        min_kw=problem.min_kw[rows],
        battery_kwh=problem.battery_kwh[rows],
        soc_kwh=problem.soc_kwh[rows],
        min_soc_kwh=problem.min_soc_kwh[rows],
        soc_floor_kwh=None if problem.soc_floor_kwh is None else problem.soc_floor_kwh[rows],
    )


def _shares(problem: SchedulingProblem, groups: list[IntArray]) -> FloatArray:
    """Groups x ISPs: each group's fraction of the pool bounds (the power range its plugged sessions span)."""
    span = (problem.max_kw - np.minimum(problem.min_kw, 0.0))[:, None] * window_mask(problem)
    weight = np.stack([span[rows].sum(axis=0) for rows in groups])
    total = weight.sum(axis=0)
    even = np.full_like(weight, 1.0 / len(groups))
    shares: FloatArray = np.where(total > 0.0, weight / np.where(total > 0.0, total, 1.0), even)
    return shares


def _scaled(bound: FloatArray, shares: FloatArray) -> FloatArray:
    """Groups x ISPs share of a pool bound; infinite bounds stay infinite."""
    scaled = np.broadcast_to(bound, shares.shape).copy()
    finite = np.isfinite(scaled)
    scaled[finite] *= shares[finite]
    return scaled


def _hand_over(bound: FloatArray, load: FloatArray, duals: FloatArray, sign: float) -> FloatArray:
    """Groups x ISPs: one side's bounds with unused room moved to the groups it binds (``sign`` +1 upper)."""
    room = np.maximum(sign * (bound - load), 0.0)
    finite = np.isfinite(bound)
    binding = finite & (room <= _SLACK_KW) & (duals > _DUAL_EPS)
    donors = finite & ~binding & (room > _SLACK_KW)
    free = np.where(donors, room, 0.0).sum(axis=0)
    weight = np.where(binding, duals, 0.0)
    total = weight.sum(axis=0)
    moving = (free > _SLACK_KW) & (total > 0.0)
    if not moving.any():
        return bound
    new = bound.copy()
    donors &= moving[None, :]
    new[donors] = load[donors]
    gain = free / np.where(total > 0.0, total, 1.0) * moving
    new += sign * weight * gain[None, :]
    return new


def _trade(
    bound: FloatArray, scale: FloatArray, load: FloatArray, duals: FloatArray, sign: float, step: float,
    reach: FloatArray,
) -> FloatArray:
    """One side's bounds with room moved between binding groups, from low to high duals (zero-sum per ISP).

    ``reach`` is groups x ISPs, the power each group's sessions cannot go past on this side (their lowest for the
    upper bound, their highest for the lower one): an ISP whose trade would put a bound past it is not traded, as
    no schedule of that group could keep it.
    """
    room = np.maximum(sign * (bound - load), 0.0)
    binding = np.isfinite(bound) & (room <= _SLACK_KW)
    weight = np.where(binding, scale, 0.0)
    total = weight.sum(axis=0)
    mean = (weight * duals).sum(axis=0) / np.where(total > 0.0, total, 1.0)
    spread = np.where(binding, duals, mean).max(axis=0) - np.where(binding, duals, mean).min(axis=0)
    moving = (binding.sum(axis=0) >= 2) & (spread > _DUAL_EPS + 1e-3 * mean)
    if not moving.any():
        return bound
    # Sum over binding groups of scale * (dual - mean) is zero, so the pool bound is kept exactly.
    delta = step * weight * (duals - mean) / np.where(mean > 0.0, mean, spread + _DUAL_EPS)
    traded = np.where(binding & moving[None, :], bound + sign * delta, bound)
    reachable = np.asarray((sign * (traded - reach) >= -_SLACK_KW).all(axis=0), dtype=np.bool_)
    return np.where(reachable[None, :], traded, bound)


def _any_per_group(mask: NDArray[np.bool_]) -> NDArray[np.bool_]:
    return np.asarray(mask.any(axis=1), dtype=np.bool_)


def solve_split(
    problem: SchedulingProblem, group_sessions: int = GROUP_SESSIONS, rounds: int = COORDINATION_ROUNDS
) -> FloatArray | None:
    """Schedule by stratified groups sharing the pool bounds; None when a need is short (use the exact LP)."""
    groups = stratified_groups(problem, group_sessions)
    shares = _shares(problem, groups)
    upper = _scaled(problem.pool_max_kw, shares)
    lower = _scaled(problem.pool_min_kw, shares)
    scale_up, scale_down = np.abs(upper), np.abs(lower)
    plugged = window_mask(problem)
    lowest = np.stack([(problem.min_kw[rows, None] * plugged[rows]).sum(axis=0) for rows in groups])
    highest = np.stack([(problem.max_kw[rows, None] * plugged[rows]).sum(axis=0) for rows in groups])
    lps = [PoolLp(_subproblem(problem, rows, lower[g], upper[g]), "simplex") for g, rows in enumerate(groups)]
    parts = [lp.solve() for lp in lps]
    step = TRADE_STEP
    for _ in range(rounds):
        load = np.stack([part.sum(axis=0) for part in parts])
        duals = np.abs(np.stack([lp.pool_duals() for lp in lps]))
        new_upper = _hand_over(upper, load, duals, 1.0)
        new_lower = _hand_over(lower, load, duals, -1.0)
        gained = _any_per_group((new_upper > upper) | (new_lower < lower))
        trading = not gained.any()
        if trading:
            if step < MIN_TRADE_STEP:
                break
            new_upper = _trade(upper, scale_up, load, duals, 1.0, step, lowest)
            new_lower = _trade(lower, scale_down, load, duals, -1.0, step, highest)
        changed = _any_per_group((new_upper != upper) | (new_lower != lower))
        if not changed.any():
            break
        before = sum(lp.objective for lp in lps)
        old = (upper, lower, list(parts))
        upper, lower = new_upper, new_lower
        for g in np.flatnonzero(changed):
            lps[g].set_pool_bounds(lower[g], upper[g])
            # Donors keep exactly their load, so their schedule stays optimal; traders must re-solve.
            if trading or bool(gained[g]):
                parts[g] = lps[g].solve()
        if not trading:
            continue
        solvable = all(lps[g].feasible for g in np.flatnonzero(changed))
        if solvable and sum(lp.objective for lp in lps) < before - 1e-9 * max(1.0, abs(before)):
            step = min(2.0 * step, MAX_TRADE_STEP)
            continue
        upper, lower, parts = old
        for g in np.flatnonzero(changed):
            lps[g].set_pool_bounds(lower[g], upper[g])
            parts[g] = lps[g].solve()
        step /= 4.0
    schedule = np.zeros((problem.n_sessions, problem.n_isps))
    for rows, part in zip(groups, parts, strict=True):
        schedule[rows] = part
    schedule = clip_to_bounds(problem, schedule)
    # A group whose share admits no schedule leaves values that keep neither its share nor the pool's bounds:
    # the exact LP then decides, as it does for a need left short.
    pool_kw = schedule.sum(axis=0)
    round_off = 1e-6 * max(1.0, float(np.abs(pool_kw).max(initial=0.0)))
    if not all(lp.feasible for lp in lps) or pool_violation_kw(problem, pool_kw) > round_off:
        return None
    if float(unmet_kwh(problem, schedule).max(initial=0.0)) > ENERGY_TOL_KWH:
        return None
    return schedule
