"""Allocation of a pool's target power to one power limit per charging session.

Sign convention: positive power is consumption (charging), negative is discharging (V2G).

Priorities, strongest first:
1. physical bounds ``[min_kw, max_kw]`` (plus the optional guaranteed energy floor folded into ``min_kw``);
2. group caps (DSO congestion points, sites, devices under curtailment): ``max_kw`` is never exceeded,
   ``min_kw`` is kept when the members can reach it;
3. departure needs (``energy_needed_kwh / hours_to_departure`` clipped to ``max_kw``), unless
   ``needs_outrank_target`` is False;
4. the market target.

The allocation moves from the current plan: when the target is below it, the sessions with the most laxity
(``hours_to_departure - energy_needed_kwh / max_kw``) give up power first, and power above need floors goes
before power below them; when the target is above it, the least-laxity sessions get power first.

Method: every phase is a greedy move in priority order over a box with group capacities. One round gives each
session ``min(headroom, amount left)`` by a cumulative sum in priority order, then every group whose capacity
is exceeded keeps only its highest-priority members' moves (cumulative sum per group), and the amount cut is
offered again in the next round to sessions whose groups are not yet full. Each round fills a session, fills a
group or exhausts the amount, so the loop ends; caps hold exactly after every round because a session's move is
never larger than what each of its groups allows it. When the groups form a laminar family (nested: device in
site in congestion point; see ``groups_are_laminar``) the feasible moves form a polymatroid, where every
maximal move has the maximum total, so the total equals the target clipped to what is feasible. For crossing
groups the result still respects every cap but its total may fall short of the LP optimum.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from vpp.domain.errors import InvalidInput

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

_MAX_ROUNDS = 200


def _empty_float() -> FloatArray:
    return np.zeros(0, dtype=np.float64)


def _empty_int() -> IntArray:
    return np.zeros(0, dtype=np.int64)


@dataclass(frozen=True)
class AllocationProblem:
    """A pool's target and its sessions; groups as unique (session, group) index pairs, best sorted by session."""

    min_kw: FloatArray
    max_kw: FloatArray
    energy_needed_kwh: FloatArray
    hours_to_departure: FloatArray
    current_kw: FloatArray
    target_kw: float
    member_session: IntArray = field(default_factory=_empty_int)
    member_group: IntArray = field(default_factory=_empty_int)
    group_max_kw: FloatArray = field(default_factory=_empty_float)
    # -inf (or None for all groups) means the group has no minimum.
    group_min_kw: FloatArray | None = None
    # Optional hint: groups of one level are disjoint; lower levels (device 0, site 1, congestion point 2)
    # are cut first within a round, which saves rounds. Caps hold whatever the hint says.
    group_level: IntArray | None = None
    # Energy the session must receive before departure even when the target outranks needs (hard).
    energy_floor_kwh: FloatArray | None = None
    needs_outrank_target: bool = True


@dataclass(frozen=True)
class Allocation:
    """Per-session setpoints and what bound the result."""

    setpoints_kw: FloatArray
    total_kw: float
    target_kw: float
    target_clipped: bool
    need_floors_binding: bool
    sessions_below_need_floor: int
    group_min_unmet: bool
    rounds: int


@dataclass(frozen=True)
class _Groups:
    session: IntArray
    group: IntArray
    count: int
    max_kw: FloatArray
    min_kw: FloatArray
    levels: list[BoolArray | None]
    # Pairs of session i are pair_ptr[i]:pair_ptr[i + 1] once sorted by session (see _in_priority_order).
    pair_ptr: IntArray


def _in_priority_order(groups: _Groups, order: IntArray) -> _Groups:
    """Relabel sessions by priority rank and sort the pairs by it, so that ranked ranges are slices."""
    n = order.shape[0]
    session, group = groups.session, groups.group
    if session.size > 1 and (np.diff(session) < 0).any():
        by_session = np.argsort(session, kind="stable")
        session, group = session[by_session], group[by_session]
    counts = np.bincount(session, minlength=n)
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    ranked_counts = counts[order]
    pair_ptr = np.r_[0, np.cumsum(ranked_counts)].astype(np.int64)
    source = np.repeat(starts[order] - pair_ptr[:-1], ranked_counts) + np.arange(session.size)
    return replace(
        groups,
        session=np.repeat(np.arange(n, dtype=np.int64), ranked_counts),
        group=group[source],
        pair_ptr=pair_ptr,
    )


def _as_float(name: str, values: object, n: int | None) -> FloatArray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise InvalidInput(f"{name}: must be one-dimensional, got shape {array.shape}")
    if n is not None and array.shape[0] != n:
        raise InvalidInput(f"{name}: expected {n} values, got {array.shape[0]}")
    if np.isnan(array).any():
        raise InvalidInput(f"{name}: contains NaN")
    return array


def _validate(problem: AllocationProblem) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, _Groups]:
    """Check the problem; return hard lower bound, need floor, upper bound, laxity and groups."""
    max_kw = _as_float("max_kw", problem.max_kw, None)
    n = max_kw.shape[0]
    min_kw = _as_float("min_kw", problem.min_kw, n)
    energy_kwh = _as_float("energy_needed_kwh", problem.energy_needed_kwh, n)
    hours = _as_float("hours_to_departure", problem.hours_to_departure, n)
    current_kw = _as_float("current_kw", problem.current_kw, n)
    if not (np.isfinite(min_kw).all() and np.isfinite(max_kw).all() and np.isfinite(current_kw).all()):
        raise InvalidInput("min_kw/max_kw/current_kw: must be finite")
    if not np.isfinite(problem.target_kw):
        raise InvalidInput("target_kw: must be finite")
    bad = np.flatnonzero(min_kw > max_kw)
    if bad.size:
        raise InvalidInput(f"min_kw: above max_kw for session index {int(bad[0])}")
    if (hours < 0).any():
        raise InvalidInput(f"hours_to_departure: negative for session index {int(np.argmax(hours < 0))}")
    if (energy_kwh < 0).any():
        raise InvalidInput(f"energy_needed_kwh: negative for session index {int(np.argmax(energy_kwh < 0))}")

    with np.errstate(divide="ignore", invalid="ignore"):
        need_kw = np.where(hours > 0, energy_kwh / hours, np.where(energy_kwh > 0, np.inf, 0.0))
        laxity_h = np.where(max_kw > 0, hours - energy_kwh / max_kw, np.where(energy_kwh > 0, -np.inf, hours))
    lower_kw = min_kw
    if problem.energy_floor_kwh is not None:
        floor_kwh = _as_float("energy_floor_kwh", problem.energy_floor_kwh, n)
        if (floor_kwh < 0).any():
            raise InvalidInput("energy_floor_kwh: negative")
        with np.errstate(divide="ignore", invalid="ignore"):
            floor_kw = np.where(hours > 0, floor_kwh / hours, np.where(floor_kwh > 0, np.inf, -np.inf))
        lower_kw = np.maximum(min_kw, np.minimum(floor_kw, max_kw))
    need_floor_kw = np.clip(need_kw, lower_kw, max_kw)

    session = np.asarray(problem.member_session, dtype=np.int64)
    group = np.asarray(problem.member_group, dtype=np.int64)
    group_max = _as_float("group_max_kw", problem.group_max_kw, None)
    g = group_max.shape[0]
    group_min = (
        np.full(g, -np.inf) if problem.group_min_kw is None else _as_float("group_min_kw", problem.group_min_kw, g)
    )
    if session.shape != group.shape or session.ndim != 1:
        raise InvalidInput("member_session/member_group: must be one-dimensional and of equal length")
    if session.size and (session.min() < 0 or session.max() >= n):
        raise InvalidInput("member_session: refers to an unknown session index")
    if group.size and (group.min() < 0 or group.max() >= g):
        raise InvalidInput("member_group: refers to an unknown group index")
    bad_groups = np.flatnonzero(group_min > group_max)
    if bad_groups.size:
        raise InvalidInput(f"group_min_kw: above group_max_kw for group index {int(bad_groups[0])}")
    if g:
        lower_sum = np.bincount(group, weights=lower_kw[session], minlength=g)
        upper_sum = np.bincount(group, weights=max_kw[session], minlength=g)
        tol = 1e-9 * (1.0 + np.abs(lower_sum) + np.abs(group_max))
        over = np.flatnonzero(lower_sum > group_max + tol)
        if over.size:
            i = int(over[0])
            raise InvalidInput(
                f"group_max_kw: group index {i} caps {group_max[i]} kW below its members' summed "
                f"minimum {lower_sum[i]} kW"
            )
        under = np.flatnonzero(group_min > upper_sum + tol)
        if under.size:
            i = int(under[0])
            raise InvalidInput(
                f"group_min_kw: group index {i} asks {group_min[i]} kW above its members' summed "
                f"maximum {upper_sum[i]} kW"
            )
    levels: list[BoolArray | None] = [None]
    if problem.group_level is not None:
        group_level = np.asarray(problem.group_level, dtype=np.int64)
        if group_level.shape != (g,):
            raise InvalidInput(f"group_level: expected {g} values, got shape {group_level.shape}")
        levels = [group_level == level for level in np.unique(group_level)]
    groups = _Groups(
        session=session,
        group=group,
        count=g,
        max_kw=group_max,
        min_kw=group_min,
        levels=levels,
        pair_ptr=_empty_int(),
    )
    return lower_kw, need_floor_kw, max_kw, laxity_h, groups


def _greedy_move(
    headroom_kw: FloatArray,
    amount_kw: float,
    groups: _Groups,
    group_slack_kw: FloatArray,
    tol: float,
    *,
    descending: bool,
) -> tuple[FloatArray, int]:
    """Move up to ``amount_kw``, sessions in index order (or reversed), within headroom and group slack."""
    n = headroom_kw.shape[0]
    headroom = headroom_kw.copy()
    slack = group_slack_kw.copy()
    moved = np.zeros(n)
    remaining = amount_kw
    rounds = 0
    has_groups = groups.session.size > 0
    blocked_groups = np.zeros(groups.count, dtype=bool)
    while remaining > tol and rounds < _MAX_ROUNDS and n:
        rounds += 1
        if has_groups:
            newly_full = (slack <= tol) & ~blocked_groups
            if newly_full.any():
                blocked_groups |= newly_full
                headroom[groups.session[newly_full[groups.group]]] = 0.0
        # Sessions in ranked order (reversed when descending); only a contiguous range moves this round.
        ranked = headroom[::-1] if descending else headroom
        active = np.flatnonzero(ranked > 0)
        if active.size == 0:
            break
        start = int(active[0])
        if np.isinf(remaining):
            stop = int(active[-1]) + 1
            step = ranked[start:stop].copy()
        else:
            cumulative = np.cumsum(ranked[start:])
            stop = start + min(int(np.searchsorted(cumulative, remaining)) + 1, n - start)
            free = ranked[start:stop]
            step = np.clip(remaining - (cumulative[: stop - start] - free), 0.0, free)
        if descending:
            start, stop = n - stop, n - start
            step = step[::-1].copy()
        cut_any = False
        if has_groups:
            first, last = int(groups.pair_ptr[start]), int(groups.pair_ptr[stop])
            pair_session = groups.session[first:last] - start
            pair_group = groups.group[first:last]
            step_pairs = step[pair_session]
            for level_groups in groups.levels:
                load = np.bincount(pair_group, weights=step_pairs, minlength=groups.count)
                over = load > slack + tol
                if level_groups is not None:
                    over &= level_groups
                if not over.any():
                    continue
                cut_any = True
                cut = _group_cut(pair_session, pair_group, over, step, slack, descending)
                step = np.maximum(step - cut, 0.0)
                step_pairs = step[pair_session]
            slack -= np.bincount(pair_group, weights=step_pairs, minlength=groups.count)
        progress = float(step.sum())
        moved[start:stop] += step
        headroom[start:stop] -= step
        remaining -= progress
        # Without a cut the round gave every free session all it could: nothing is left to offer.
        if progress <= tol or not cut_any:
            break
    return moved, rounds


def _stable_argsort(keys: IntArray) -> IntArray:
    """Stable argsort of non-negative integers by 16-bit radix passes (linear time in numpy)."""
    if keys.size == 0:
        return np.zeros(0, dtype=np.int64)
    low = (keys & 0xFFFF).astype(np.uint16)
    permutation = np.argsort(low, kind="stable")
    high = keys >> 16
    while high.max() > 0:
        digit = (high[permutation] & 0xFFFF).astype(np.uint16)
        permutation = permutation[np.argsort(digit, kind="stable")]
        high = high >> 16
    return permutation.astype(np.int64)


def _group_cut(
    pair_session: IntArray,
    pair_group: IntArray,
    over: BoolArray,
    step: FloatArray,
    slack: FloatArray,
    descending: bool,
) -> FloatArray:
    """Cut per session so that every over-slack group keeps only its highest-priority members' steps."""
    n = step.shape[0]
    selected = over[pair_group]
    members = pair_session[selected]
    member_group = pair_group[selected]
    if descending:
        members, member_group = members[::-1], member_group[::-1]
    # Pairs come in priority order already, so a stable sort by group yields (group, priority) order.
    ranked = _stable_argsort(member_group)
    members = members[ranked]
    member_group = member_group[ranked]
    member_step = step[members]
    cumulative = np.cumsum(member_step)
    starts = np.flatnonzero(np.r_[True, member_group[1:] != member_group[:-1]])
    offset = np.repeat(cumulative[starts] - member_step[starts], np.diff(np.r_[starts, members.size]))
    allowed = np.clip(slack[member_group] - (cumulative - member_step - offset), 0.0, member_step)
    cut = np.zeros(n)
    np.maximum.at(cut, members, member_step - allowed)
    return cut


def _group_sum(groups: _Groups, values: FloatArray) -> FloatArray:
    sums = np.bincount(groups.group, weights=values[groups.session], minlength=groups.count)
    return np.asarray(sums, dtype=np.float64)


def allocate(problem: AllocationProblem) -> Allocation:
    """Split the pool target into per-session setpoints within bounds, group caps and departure needs."""
    lower_kw, need_kw, upper_kw, laxity_h, groups = _validate(problem)
    n = upper_kw.shape[0]
    tol = 1e-10 * (1.0 + float(np.abs(upper_kw).sum() + np.abs(lower_kw).sum()))
    # Work in priority order (least laxity first) so that every pass over sessions is sequential.
    order = np.argsort(laxity_h)
    position = np.empty(n, dtype=np.int64)
    position[order] = np.arange(n, dtype=np.int64)
    lower_kw, need_kw, upper_kw = lower_kw[order], need_kw[order], upper_kw[order]
    groups = _in_priority_order(groups, order)
    rounds = 0

    x = np.clip(np.asarray(problem.current_kw, dtype=np.float64)[order], lower_kw, upper_kw)
    if problem.needs_outrank_target:
        x = np.maximum(x, need_kw)

    def increase(x: FloatArray, ceiling: FloatArray, amount: float) -> FloatArray:
        nonlocal rounds
        slack = groups.max_kw - _group_sum(groups, x) if groups.count else groups.max_kw
        move, used = _greedy_move(np.maximum(ceiling - x, 0.0), amount, groups, slack, tol, descending=False)
        rounds += used
        return x + move

    def decrease(x: FloatArray, floor: FloatArray, amount: float) -> FloatArray:
        nonlocal rounds
        slack = _group_sum(groups, x) - groups.min_kw if groups.count else groups.min_kw
        move, used = _greedy_move(np.maximum(x - floor, 0.0), amount, groups, slack, tol, descending=True)
        rounds += used
        return x - move

    if groups.count:
        # Caps outrank needs: members of an over-cap group restart from their hard minimum and get their
        # plan back by priority, need floors first, as far as every cap allows.
        over = _group_sum(groups, x) > groups.max_kw + tol
        if over.any():
            touched = np.zeros(n, dtype=bool)
            touched[groups.session[over[groups.group]]] = True
            planned = x
            x = np.where(touched, lower_kw, x)
            x = increase(x, np.minimum(planned, need_kw), np.inf)
            x = increase(x, planned, np.inf)
    group_min_unmet = False
    if groups.count and np.isfinite(groups.min_kw).any():
        short = np.flatnonzero(_group_sum(groups, x) < groups.min_kw - tol)
        # One pass per short group: only groups with a minimum, few in practice.
        for g in short:
            members = groups.session[groups.group == g]
            ceiling = x.copy()
            ceiling[members] = upper_kw[members]
            deficit = float(groups.min_kw[g] - _group_sum(groups, x)[g])
            if deficit > tol:
                x = increase(x, ceiling, deficit)
        group_min_unmet = bool((_group_sum(groups, x) < groups.min_kw - 1e3 * tol).any())

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


def groups_are_laminar(problem: AllocationProblem) -> bool:
    """Tell whether every two groups are nested or disjoint (then totals are the feasible maximum)."""
    session = np.asarray(problem.member_session, dtype=np.int64)
    group = np.asarray(problem.member_group, dtype=np.int64)
    if session.size == 0:
        return True
    g = int(np.asarray(problem.group_max_kw).shape[0])
    size = np.bincount(group, minlength=g)
    # In a laminar family the groups of one session form a chain; every group then has one successor
    # (the next larger group) shared by all of its members.
    ordering = np.lexsort((group, size[group], session))
    s, gr = session[ordering], group[ordering]
    successor = np.where(np.r_[s[1:] == s[:-1], False], np.r_[gr[1:], -1], -1)
    first = np.full(g, -2, dtype=np.int64)
    first[gr] = successor
    return bool((first[gr] == successor).all())


def allocate_instance(instance: Mapping[str, Any]) -> dict[str, Any]:
    """Allocate an offline JSON-like instance: sessions and groups by id in, setpoints by id out."""
    sessions = instance.get("sessions")
    if not isinstance(sessions, list):
        raise InvalidInput("sessions: must be a list")
    try:
        target_kw = float(instance["target_kw"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInput("target_kw: missing or not a number") from exc
    ids: list[str] = []
    columns: dict[str, list[float]] = {
        k: [] for k in ("min_kw", "max_kw", "energy_needed_kwh", "hours_to_departure", "current_kw")
    }
    for index, session in enumerate(sessions):
        if not isinstance(session, Mapping) or "id" not in session:
            raise InvalidInput(f"sessions[{index}]: must be an object with an id")
        ids.append(str(session["id"]))
        for key, values in columns.items():
            try:
                values.append(float(session.get(key, 0.0) if key == "current_kw" else session[key]))
            except (KeyError, TypeError, ValueError) as exc:
                raise InvalidInput(f"sessions[{index}].{key}: missing or not a number") from exc
    index_of = {sid: i for i, sid in enumerate(ids)}
    if len(index_of) != len(ids):
        raise InvalidInput("sessions: duplicate session id")
    for key in ("min_kw", "max_kw"):
        if not np.isfinite(columns[key]).all():
            raise InvalidInput(f"sessions.{key}: must be finite")
    for index, (low, high) in enumerate(zip(columns["min_kw"], columns["max_kw"], strict=True)):
        if low > high:
            raise InvalidInput(f"sessions[{index}].min_kw: above max_kw (session {ids[index]})")
    for index, hours in enumerate(columns["hours_to_departure"]):
        if hours < 0:
            raise InvalidInput(f"sessions[{index}].hours_to_departure: negative (session {ids[index]})")

    raw_groups = instance.get("groups", [])
    if not isinstance(raw_groups, list):
        raise InvalidInput("groups: must be a list")
    member_session: list[int] = []
    member_group: list[int] = []
    group_max: list[float] = []
    group_min: list[float] = []
    group_ids: set[str] = set()
    for gi, grp in enumerate(raw_groups):
        if not isinstance(grp, Mapping) or "id" not in grp:
            raise InvalidInput(f"groups[{gi}]: must be an object with an id")
        gid = str(grp["id"])
        if gid in group_ids:
            raise InvalidInput(f"groups[{gi}].id: duplicate group id {gid}")
        group_ids.add(gid)
        try:
            group_max.append(float(grp.get("max_kw", np.inf)))
            group_min.append(float(grp.get("min_kw", -np.inf)))
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"groups[{gi}].max_kw/min_kw: not a number") from exc
        members = grp.get("members", [])
        if not isinstance(members, list):
            raise InvalidInput(f"groups[{gi}].members: must be a list of session ids")
        if len(set(map(str, members))) != len(members):
            raise InvalidInput(f"groups[{gi}].members: duplicate session id in group {gid}")
        for member in members:
            if str(member) not in index_of:
                raise InvalidInput(f"groups[{gi}].members: unknown session id {member}")
            member_session.append(index_of[str(member)])
            member_group.append(gi)

    problem = AllocationProblem(
        min_kw=np.asarray(columns["min_kw"]),
        max_kw=np.asarray(columns["max_kw"]),
        energy_needed_kwh=np.asarray(columns["energy_needed_kwh"]),
        hours_to_departure=np.asarray(columns["hours_to_departure"]),
        current_kw=np.asarray(columns["current_kw"]),
        target_kw=target_kw,
        member_session=np.asarray(member_session, dtype=np.int64),
        member_group=np.asarray(member_group, dtype=np.int64),
        group_max_kw=np.asarray(group_max, dtype=np.float64),
        group_min_kw=np.asarray(group_min, dtype=np.float64),
        needs_outrank_target=bool(instance.get("needs_outrank_target", True)),
    )
    started = time.perf_counter()
    result = allocate(problem)
    solve_ms = (time.perf_counter() - started) * 1e3
    return {
        "setpoints_kw": {sid: float(v) for sid, v in zip(ids, result.setpoints_kw, strict=True)},
        "total_kw": result.total_kw,
        "solve_ms": solve_ms,
    }
