"""A pool's group structure, checked once and stored as one session-to-group map per nesting level."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vpp.algorithms.allocation._types import AllocationProblem, BoolArray, FloatArray, IntArray
from vpp.domain.errors import InvalidInput


@dataclass(frozen=True)
class Level:
    """Groups of one nesting level: pairwise disjoint, so every session belongs to at most one of them."""

    groups: IntArray
    # Per session (input order): the level-local index of its group, or len(groups) when it has none.
    session_group: IntArray


def _pairs(problem: AllocationProblem, n: int, g: int) -> tuple[IntArray, IntArray]:
    session = np.asarray(problem.member_session, dtype=np.int64)
    group = np.asarray(problem.member_group, dtype=np.int64)
    if session.shape != group.shape or session.ndim != 1:
        raise InvalidInput("member_session/member_group: must be one-dimensional and of equal length")
    if session.size and (session.min() < 0 or session.max() >= n):
        raise InvalidInput("member_session: refers to an unknown session index")
    if group.size and (group.min() < 0 or group.max() >= g):
        raise InvalidInput("member_group: refers to an unknown group index")
    if problem.group_level is not None:
        group_level = np.asarray(problem.group_level)
        if group_level.shape != (g,):
            raise InvalidInput(f"group_level: expected {g} values, got shape {group_level.shape}")
    return session, group


# Sessions in at most this many groups have their chains found without sorting.
_SHORT_CHAIN = 8


def _starts(sorted_values: IntArray) -> BoolArray:
    """Where a run of equal values begins."""
    return np.concatenate(([True], sorted_values[1:] != sorted_values[:-1]))


def _chains(session: IntArray, group: IntArray, g: int) -> tuple[IntArray, IntArray, IntArray, IntArray, IntArray]:
    """Unique pairs sorted by session; each pair's depth in its session's chain and the group just above it.

    A session's chain lists its groups from the largest down (ties by index); in a laminar family that is from
    the outermost to the innermost. Returns pairs, group rank (chain order) per group, depth and parent (-1 at
    the top).
    """
    key = session * g + group
    if key.size > 1 and not bool((key[1:] > key[:-1]).all()):
        key = np.unique(key)
        session, group = key // g, key % g
    size = np.bincount(group, minlength=g)
    rank = np.empty(g, dtype=np.int64)
    rank[np.lexsort((np.arange(g), -size))] = np.arange(g, dtype=np.int64)
    pair_rank = rank[group]
    run_start = np.flatnonzero(_starts(session))
    longest = int(np.diff(np.append(run_start, session.size)).max())
    depth = np.zeros(session.size, dtype=np.int64)
    parent = np.full(session.size, -1, dtype=np.int64)
    if longest <= _SHORT_CHAIN:
        # Few groups per session: compare each pair with the next few of its session instead of sorting.
        for shift in range(1, longest):
            first = np.flatnonzero(session[shift:] == session[:-shift])
            second = first + shift
            second_above = pair_rank[second] < pair_rank[first]
            depth[first[second_above]] += 1
            depth[second[~second_above]] += 1
        for shift in range(1, longest):
            first = np.flatnonzero(session[shift:] == session[:-shift])
            second = first + shift
            below = depth[first] == depth[second] + 1
            parent[first[below]] = group[second[below]]
            above = depth[second] == depth[first] + 1
            parent[second[above]] = group[first[above]]
        return session, group, rank, depth, parent
    by_chain = np.argsort(session * g + pair_rank)
    session, group = session[by_chain], group[by_chain]
    first_in_chain = _starts(session)
    run_start = np.flatnonzero(first_in_chain)
    depth = np.arange(session.size, dtype=np.int64) - np.repeat(run_start, np.diff(np.append(run_start, session.size)))
    parent = np.where(first_in_chain, -1, np.concatenate(([-1], group[:-1])))
    return session, group, rank, depth, parent


def _is_laminar(group: IntArray, parent: IntArray, g: int) -> bool:
    """Every group's members share the group just above it in their chains (so all pairs nest or are disjoint)."""
    parent_of = np.full(g, -2, dtype=np.int64)
    parent_of[group] = parent
    return bool((parent_of[group] == parent).all())


def _colour_levels(session: IntArray, group: IntArray, g: int) -> IntArray:
    """Levels for crossing groups: repeatedly take every group that comes first among its members' pending ones."""
    level_of = np.zeros(g, dtype=np.int64)
    pending = np.ones(session.size, dtype=bool)
    level = 0
    while pending.any():
        index = np.flatnonzero(pending)
        s, gr = session[index], group[index]
        # Pairs are sorted by (session, rank), so a session's first pending pair is its best-ranked pending group.
        head = _starts(s)
        picked = np.bincount(gr[head], minlength=g)
        remaining = np.bincount(gr, minlength=g)
        chosen = (picked == remaining) & (remaining > 0)
        level_of[chosen] = level
        pending[index[chosen[gr]]] = False
        level += 1
    return level_of


def build_levels(problem: AllocationProblem, n: int, g: int) -> tuple[tuple[Level, ...], bool]:
    """Check the pairs and split the groups into levels of disjoint groups, innermost level first."""
    session, group = _pairs(problem, n, g)
    if g == 0:
        return (), True
    if session.size == 0:
        level_of = np.zeros(g, dtype=np.int64)
        laminar = True
    else:
        session, group, rank, depth, parent = _chains(session, group, g)
        laminar = _is_laminar(group, parent, g)
        if laminar:
            # In a laminar family a group's depth (how many groups contain it) is the same for all its members.
            level_of = np.zeros(g, dtype=np.int64)
            level_of[group] = depth
        else:
            by_chain = np.argsort(session * g + rank[group])
            level_of = _colour_levels(session[by_chain], group[by_chain], g)
    levels: list[Level] = []
    # Innermost first: with nested groups, cutting devices before sites before congestion points makes one
    # round of cuts exact (see _greedy).
    level_of_pair = level_of[group] if session.size else np.zeros(0, dtype=np.int64)
    for level in np.unique(level_of)[::-1]:
        groups = np.flatnonzero(level_of == level).astype(np.int64)
        local = np.full(g, -1, dtype=np.int64)
        local[groups] = np.arange(groups.size, dtype=np.int64)
        session_group = np.full(n, groups.size, dtype=np.int64)
        at_level = level_of_pair == level
        session_group[session[at_level]] = local[group[at_level]]
        levels.append(Level(groups=groups, session_group=session_group))
    return tuple(levels), laminar


def groups_are_laminar(problem: AllocationProblem) -> bool:
    """Tell whether every two groups are nested or disjoint (then totals are the feasible maximum)."""
    session = np.asarray(problem.member_session, dtype=np.int64)
    group = np.asarray(problem.member_group, dtype=np.int64)
    if session.size == 0:
        return True
    g = int(np.asarray(problem.group_max_kw).shape[0])
    _, group, _, _, parent = _chains(session, group, g)
    return _is_laminar(group, parent, g)


def level_sums(levels: tuple[Level, ...], maps: list[IntArray], values: FloatArray) -> list[FloatArray]:
    """Per level, the sum of ``values`` over each group (the last entry collects sessions without a group)."""
    return [
        np.asarray(np.bincount(session_group, weights=values, minlength=level.groups.size + 1), dtype=np.float64)
        for level, session_group in zip(levels, maps, strict=True)
    ]
