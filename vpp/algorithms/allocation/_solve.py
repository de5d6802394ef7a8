"""``allocate`` and its prepared form: validation, priority order and the phases from plan to target."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from vpp.algorithms.allocation._greedy import RankedLevel, greedy_move
from vpp.algorithms.allocation._structure import Level, build_levels, level_sums
from vpp.algorithms.allocation._types import Allocation, AllocationProblem, FloatArray, IntArray
from vpp.domain.errors import InvalidInput


class PreparedPool:
    """A pool's checked group structure plus the last priority order, reused from one dispatch cycle to the next.

    Build it with ``prepare(problem)`` when the pool's sessions or groups change; then
    ``allocate_prepared(pool, problem)`` accepts any problem with the same ``member_session``/``member_group``
    arrays (new bounds, needs, plan, caps and target every cycle) and returns what ``allocate(problem)`` returns.
    One pool object serves one dispatcher; it is not meant to be shared between threads.
    """

    __slots__ = ("_member_group", "_member_session", "_order", "group_count", "laminar", "levels", "sessions")

    def __init__(
        self,
        sessions: int,
        group_count: int,
        levels: tuple[Level, ...],
        laminar: bool,
        member_session: IntArray,
        member_group: IntArray,
    ) -> None:
        self.sessions = sessions
        self.group_count = group_count
        self.levels = levels
        self.laminar = laminar
        self._member_session = member_session
        self._member_group = member_group
        self._order: IntArray | None = None

    def check_matches(self, problem: AllocationProblem) -> None:
        """Refuse a problem whose sessions or group pairs differ from the prepared ones."""
        n = np.shape(problem.max_kw)[0] if np.ndim(problem.max_kw) == 1 else -1
        if n != self.sessions or np.shape(problem.group_max_kw) != (self.group_count,):
            raise InvalidInput("problem: session or group count differs from the prepared pool")
        for given, prepared, name in (
            (problem.member_session, self._member_session, "member_session"),
            (problem.member_group, self._member_group, "member_group"),
        ):
            if given is not prepared and not np.array_equal(given, prepared):
                raise InvalidInput(f"{name}: differs from the prepared pool; prepare it again")

    def priority_order(self, laxity_h: FloatArray) -> IntArray:
        """Least laxity first, ties by session index; starts from the previous order when there is one."""
        previous = self._order
        if previous is not None and previous.shape == laxity_h.shape:
            # Laxity moves little between cycles: sorting it in the previous order is nearly sorted work, and
            # the permutation found is close to the identity, so the gathers below read almost sequentially.
            keys = laxity_h[previous]
            by_rank = np.argsort(keys)
            order, sorted_keys = previous[by_rank], keys[by_rank]
        else:
            order = np.argsort(laxity_h)
            sorted_keys = laxity_h[order]
        order = _ties_by_index(order, sorted_keys)
        self._order = order
        return order


def _ties_by_index(order: IntArray, sorted_keys: FloatArray) -> IntArray:
    """Make the order canonical: within runs of equal laxity, sessions in index order."""
    a, b = sorted_keys[:-1], sorted_keys[1:]
    equal = a == b
    if sorted_keys.size and np.isnan(sorted_keys[-1]):
        # NaN sorts last and never equals itself: tie the NaN tail explicitly.
        equal |= np.isnan(a) & np.isnan(b)
    if not equal.any():
        return order
    in_run = np.zeros(order.shape[0], dtype=bool)
    in_run[:-1] |= equal
    in_run[1:] |= equal
    positions = np.flatnonzero(in_run)
    run = np.cumsum(np.concatenate(([True], ~equal)))[positions]
    tied = order[positions]
    order = order.copy()
    order[positions] = tied[np.lexsort((tied, run))]
    return order


def prepare(problem: AllocationProblem) -> PreparedPool:
    """Check a pool's group structure once and keep what every later cycle reuses."""
    max_kw = np.asarray(problem.max_kw)
    if max_kw.ndim != 1:
        raise InvalidInput(f"max_kw: must be one-dimensional, got shape {max_kw.shape}")
    group_max = np.asarray(problem.group_max_kw)
    if group_max.ndim != 1:
        raise InvalidInput(f"group_max_kw: must be one-dimensional, got shape {group_max.shape}")
    n, g = int(max_kw.shape[0]), int(group_max.shape[0])
    levels, laminar = build_levels(problem, n, g)
    return PreparedPool(n, g, levels, laminar, problem.member_session, problem.member_group)


def _as_float(name: str, values: object, n: int | None, *, finite: bool = False) -> FloatArray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise InvalidInput(f"{name}: must be one-dimensional, got shape {array.shape}")
    if n is not None and array.shape[0] != n:
        raise InvalidInput(f"{name}: expected {n} values, got {array.shape[0]}")
    # One pass when the values must be finite anyway; the NaN test only names the fault.
    if not np.isfinite(array).all() if finite else np.isnan(array).any():
        if np.isnan(array).any():
            raise InvalidInput(f"{name}: contains NaN")
        raise InvalidInput("min_kw/max_kw/current_kw: must be finite")
    return array


class _Inputs(NamedTuple):
    lower: FloatArray
    need: FloatArray
    upper: FloatArray
    current: FloatArray
    laxity: FloatArray
    caps: list[FloatArray]
    minimums: list[FloatArray]


def _need_and_laxity(energy_kwh: FloatArray, hours: FloatArray, max_kw: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Power needed to leave full (inf when already due) and laxity (-inf when the need cannot be charged)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        need_kw = energy_kwh / hours
        laxity_h = energy_kwh / max_kw
        np.subtract(hours, laxity_h, out=laxity_h)
    due = np.flatnonzero(hours == 0)
    if due.size:
        need_kw[due] = np.where(energy_kwh[due] > 0, np.inf, 0.0)
    stuck = np.flatnonzero(max_kw <= 0)
    if stuck.size:
        laxity_h[stuck] = np.where(energy_kwh[stuck] > 0, -np.inf, hours[stuck])
    return need_kw, laxity_h


def _validate(problem: AllocationProblem, pool: PreparedPool) -> _Inputs:
    """Check the cycle's values; return hard lower bound, need floor, upper bound, plan, laxity and level limits."""
    n = pool.sessions
    max_kw = _as_float("max_kw", problem.max_kw, n, finite=True)
    min_kw = _as_float("min_kw", problem.min_kw, n, finite=True)
    energy_kwh = _as_float("energy_needed_kwh", problem.energy_needed_kwh, n)
    hours = _as_float("hours_to_departure", problem.hours_to_departure, n)
    current_kw = _as_float("current_kw", problem.current_kw, n, finite=True)
    if not np.isfinite(problem.target_kw):
        raise InvalidInput("target_kw: must be finite")
    bad = np.flatnonzero(min_kw > max_kw)
    if bad.size:
        raise InvalidInput(f"min_kw: above max_kw for session index {int(bad[0])}")
    if (hours < 0).any():
        raise InvalidInput(f"hours_to_departure: negative for session index {int(np.argmax(hours < 0))}")
    if (energy_kwh < 0).any():
        raise InvalidInput(f"energy_needed_kwh: negative for session index {int(np.argmax(energy_kwh < 0))}")

    need_kw, laxity_h = _need_and_laxity(energy_kwh, hours, max_kw)
    lower_kw = min_kw
    if problem.energy_floor_kwh is not None:
        floor_kwh = _as_float("energy_floor_kwh", problem.energy_floor_kwh, n)
        if (floor_kwh < 0).any():
            raise InvalidInput("energy_floor_kwh: negative")
        with np.errstate(divide="ignore", invalid="ignore"):
            floor_kw = np.where(hours > 0, floor_kwh / hours, np.where(floor_kwh > 0, np.inf, -np.inf))
        lower_kw = np.maximum(min_kw, np.minimum(floor_kw, max_kw))
    if problem.need_floor_kw is not None:
        need_kw = _as_float("need_floor_kw", problem.need_floor_kw, n).copy()
    need_floor_kw = np.clip(need_kw, lower_kw, max_kw, out=need_kw)

    g = pool.group_count
    group_max = _as_float("group_max_kw", problem.group_max_kw, g)
    group_min = (
        np.full(g, -np.inf) if problem.group_min_kw is None else _as_float("group_min_kw", problem.group_min_kw, g)
    )
    bad_groups = np.flatnonzero(group_min > group_max)
    if bad_groups.size:
        raise InvalidInput(f"group_min_kw: above group_max_kw for group index {int(bad_groups[0])}")
    caps = [np.append(group_max[level.groups], np.inf) for level in pool.levels]
    minimums = [np.append(group_min[level.groups], -np.inf) for level in pool.levels]
    maps = [level.session_group for level in pool.levels]
    for level, cap, lower_sum in zip(pool.levels, caps, level_sums(pool.levels, maps, lower_kw), strict=True):
        over = np.flatnonzero(lower_sum[:-1] > cap[:-1] + 1e-9 * (1.0 + np.abs(lower_sum[:-1]) + np.abs(cap[:-1])))
        if over.size:
            i = int(level.groups[over[0]])
            raise InvalidInput(
                f"group_max_kw: group index {i} caps {group_max[i]} kW below its members' summed "
                f"minimum {lower_sum[over[0]]} kW"
            )
    if np.isfinite(group_min).any():
        for level, low, upper_sum in zip(pool.levels, minimums, level_sums(pool.levels, maps, max_kw), strict=True):
            tol = 1e-9 * (1.0 + np.abs(upper_sum[:-1]) + np.abs(np.where(np.isfinite(low[:-1]), low[:-1], 0.0)))
            under = np.flatnonzero(low[:-1] > upper_sum[:-1] + tol)
            if under.size:
                i = int(level.groups[under[0]])
                raise InvalidInput(
                    f"group_min_kw: group index {i} asks {group_min[i]} kW above its members' summed "
                    f"maximum {upper_sum[under[0]]} kW"
                )
    return _Inputs(lower_kw, need_floor_kw, max_kw, current_kw, laxity_h, caps, minimums)


def allocate_prepared(pool: PreparedPool, problem: AllocationProblem) -> Allocation:
    """Allocate like ``allocate(problem)``, reusing the pool's checked structure and last priority order."""
    pool.check_matches(problem)
    inputs = _validate(problem, pool)
    n = pool.sessions
    tol = 1e-10 * (1.0 + float(np.abs(inputs.upper).sum() + np.abs(inputs.lower).sum()))
    # Work in priority order (least laxity first) so that every pass over sessions is sequential.
    order = pool.priority_order(inputs.laxity)
    lower_kw, need_kw, upper_kw = inputs.lower[order], inputs.need[order], inputs.upper[order]
    ranked = [RankedLevel(level.session_group[order], level.groups.size + 1) for level in pool.levels]
    maps = [r.group for r in ranked]
    caps, minimums = inputs.caps, inputs.minimums
    rounds = 0

    def sums(x: FloatArray) -> list[FloatArray]:
        return level_sums(pool.levels, maps, x)

    def increase(x: FloatArray, ceiling: FloatArray, amount: float) -> FloatArray:
        nonlocal rounds
        slack = [cap - s for cap, s in zip(caps, sums(x), strict=True)]
        headroom = np.subtract(ceiling, x)
        np.maximum(headroom, 0.0, out=headroom)
        move, used = greedy_move(headroom, amount, ranked, slack, tol, descending=False, laminar=pool.laminar)
        rounds += used
        # x is always this function's own array (never a caller's input), so it may change in place.
        x += move
        return x

    def decrease(x: FloatArray, floor: FloatArray, amount: float) -> FloatArray:
        nonlocal rounds
        slack = [s - low for s, low in zip(sums(x), minimums, strict=True)]
        headroom = np.subtract(x, floor)
        np.maximum(headroom, 0.0, out=headroom)
        move, used = greedy_move(headroom, amount, ranked, slack, tol, descending=True, laminar=pool.laminar)
        rounds += used
        x -= move
        return x

    x = inputs.current[order]
    np.clip(x, lower_kw, upper_kw, out=x)
    if problem.needs_outrank_target:
        np.maximum(x, need_kw, out=x)

    if maps:
        # Caps outrank needs: members of an over-cap group restart from their hard minimum and get their
        # plan back by priority, need floors first, as far as every cap allows.
        touched = np.zeros(n, dtype=bool)
        for session_group, cap, s in zip(maps, caps, sums(x), strict=True):
            over = s > cap + tol
            if over.any():
                touched |= over[session_group]
        if touched.any():
            planned = x
            x = np.where(touched, lower_kw, x)
            x = increase(x, np.minimum(planned, need_kw), np.inf)
            x = increase(x, planned, np.inf)
    group_min_unmet = False
    if maps and any(np.isfinite(low[:-1]).any() for low in minimums):
        short = [
            (int(level.groups[j]), index, int(j))
            for index, (level, low, s) in enumerate(zip(pool.levels, minimums, sums(x), strict=True))
            for j in np.flatnonzero(s[:-1] < low[:-1] - tol)
        ]
        # One pass per short group, in group index order: only groups with a minimum, few in practice.
        for _, index, j in sorted(short):
            members = np.flatnonzero(maps[index] == j)
            ceiling = x.copy()
            ceiling[members] = upper_kw[members]
            deficit = float(minimums[index][j] - sums(x)[index][j])
            if deficit > tol:
                x = increase(x, ceiling, deficit)
        group_min_unmet = any(
            bool((s[:-1] < low[:-1] - 1e3 * tol).any()) for s, low in zip(sums(x), minimums, strict=True)
        )

    target = float(problem.target_kw)
    delta = target - float(x.sum())
    if delta > tol:
        x = increase(x, np.maximum(x, need_kw), delta)
        delta = target - float(x.sum())
        if delta > tol:
            x = increase(x, upper_kw, delta)
    elif delta < -tol:
        x = decrease(x, np.minimum(x, need_kw), -delta)
        delta = target - float(x.sum())
        if delta < -tol and not problem.needs_outrank_target:
            x = decrease(x, lower_kw, -delta)

    setpoints_kw = np.empty(n)
    setpoints_kw[order] = x
    total = float(x.sum())
    clipped = abs(total - target) > 1e-9 * max(1.0, abs(target))
    below_need = int((x < need_kw - 1e-9 * (1.0 + np.abs(need_kw))).sum())
    return Allocation(
        setpoints_kw=setpoints_kw,
        total_kw=total,
        target_kw=target,
        target_clipped=clipped,
        need_floors_binding=bool(problem.needs_outrank_target and clipped and total > target),
        sessions_below_need_floor=below_need,
        group_min_unmet=group_min_unmet,
        rounds=rounds,
    )


def allocate(problem: AllocationProblem) -> Allocation:
    """Split the pool target into per-session setpoints within bounds, group caps and departure needs."""
    return allocate_prepared(prepare(problem), problem)
