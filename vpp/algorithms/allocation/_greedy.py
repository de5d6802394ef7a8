"""The greedy move in priority order over a box with group capacities (one group per session and level)."""

from __future__ import annotations

import numpy as np

from vpp.algorithms.allocation._types import BoolArray, FloatArray, IntArray

_MAX_ROUNDS = 200
# Below this many movable sessions a move is served in one block.
_MIN_BLOCK = 4096


def stable_argsort(keys: IntArray, bound: int) -> IntArray:
    """Stable argsort of integers in ``[0, bound)`` by 16-bit radix passes (linear time in numpy)."""
    if bound <= 1 << 16:
        return np.argsort(keys.astype(np.uint16), kind="stable")
    permutation = np.argsort((keys & 0xFFFF).astype(np.uint16), kind="stable")
    high = keys >> 16
    while high.max() > 0:
        digit = (high[permutation] & 0xFFFF).astype(np.uint16)
        permutation = permutation[np.argsort(digit, kind="stable")]
        high = high >> 16
    return permutation.astype(np.int64)


class RankedLevel:
    """One level's group per session in priority order and, once a cut needs them, the sessions sorted by group."""

    __slots__ = ("_by_group", "_run_start", "_sorted_group", "entries", "group")

    def __init__(self, group: IntArray, entries: int) -> None:
        self.group = group
        # Groups of the level plus the no-group entry (always last).
        self.entries = entries
        self._by_group: IntArray | None = None
        self._sorted_group: IntArray = group[:0]
        self._run_start: IntArray = group[:0]

    def subset(self, positions: IntArray) -> RankedLevel:
        """The same level restricted to some sessions (kept in priority order)."""
        return RankedLevel(self.group[positions], self.entries)

    def sorted_by_group(self) -> tuple[IntArray, IntArray, IntArray]:
        """Positions sorted by (group, priority), their groups, and where each group's run starts."""
        if self._by_group is None:
            self._by_group = stable_argsort(self.group, self.entries)
            counts = np.bincount(self.group, minlength=self.entries)
            self._sorted_group = np.repeat(np.arange(self.entries, dtype=np.int64), counts)
            self._run_start = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
        return self._by_group, self._sorted_group, self._run_start


def _cut(step: FloatArray, ranked: RankedLevel, over: BoolArray, slack: FloatArray, descending: bool) -> None:
    """Cut ``step`` in place so that every over-slack group keeps only its first members' steps."""
    by_group, group, run_start = ranked.sorted_by_group()
    over_groups = np.flatnonzero(over)
    lengths = run_start[over_groups + 1] - run_start[over_groups]
    total = int(lengths.sum())
    if 2 * total < by_group.shape[0]:
        # Few members in over groups: gather just their runs.
        offsets = np.cumsum(lengths) - lengths
        members = by_group[np.repeat(run_start[over_groups] - offsets, lengths) + np.arange(total)]
        member_group = np.repeat(over_groups, lengths)
        starts = np.append(offsets, total)
        keep = None
    else:
        members, member_group, starts, keep = by_group, group, run_start, over[group]
    member_step = step[members]
    inclusive = np.cumsum(member_step)
    # Running total at each group's start; within a group, priority ascends.
    edge = np.concatenate(([0.0], inclusive))[starts]
    segment = np.repeat(np.arange(starts.shape[0] - 1), np.diff(starts)) if keep is None else member_group
    # Members already served in processing order: those after in priority when descending, before otherwise.
    if descending:
        used = edge[1:][segment]
        used -= inclusive
    else:
        used = inclusive
        used -= member_step
        used -= edge[:-1][segment]
    allowed = slack[member_group]
    allowed -= used
    np.clip(allowed, 0.0, member_step, out=allowed)
    step[members] = allowed if keep is None else np.where(keep, allowed, member_step)


def greedy_move(
    headroom_kw: FloatArray,
    amount_kw: float,
    levels: list[RankedLevel],
    slack_kw: list[FloatArray],
    tol: float,
    *,
    descending: bool,
    laminar: bool,
) -> tuple[FloatArray, int]:
    """Move up to ``amount_kw`` in priority order (ascending index, or descending), within headroom and slack.

    A round offers every free session its headroom; every level cuts its over-slack groups to their first
    members, innermost level first, and then the amount is cut to the first sessions. For nested groups that is
    exactly the sequential greedy (a group that binds zeroes everyone after its binding member, so the levels
    above see the final moves of everyone before it): one round leaves every session filled, in a full group or
    with the amount spent, and it may be run block by block in priority order. For crossing groups the caps
    still hold after every cut, and rounds repeat while they make progress.
    """
    n = headroom_kw.shape[0]
    if amount_kw <= tol or n == 0:
        return np.zeros(n), 0
    movable = headroom_kw > 0
    for ranked, level_slack in zip(levels, slack_kw, strict=True):
        full = level_slack <= tol
        if full.any():
            movable &= ~full[ranked.group]
    active = np.flatnonzero(movable)
    m = active.shape[0]
    if m == 0:
        return np.zeros(n), 0
    slack = [s.copy() for s in slack_kw]
    if laminar and not np.isinf(amount_kw) and m > _MIN_BLOCK:
        # A small amount goes to the first sessions: serve a block that covers it twice over before the rest.
        first_headroom = headroom_kw[active[::-1]] if descending else headroom_kw[active]
        k = int(np.searchsorted(np.cumsum(first_headroom), 2.0 * amount_kw)) + 1
        if k < m // 2:
            moved = np.zeros(n)
            blocks = (active[m - k :], active[: m - k]) if descending else (active[:k], active[k:])
            remaining, rounds = amount_kw, 0
            for block in blocks:
                step, used, remaining = _rounds(
                    headroom_kw[block], remaining, [r.subset(block) for r in levels], slack, tol, descending, laminar
                )
                moved[block] = step
                rounds += used
                if remaining <= tol:
                    break
            return moved, rounds
    if 2 * m < n:
        # Few sessions can move (typical when a plan is repaired): work on them alone.
        step, rounds, _ = _rounds(
            headroom_kw[active], amount_kw, [r.subset(active) for r in levels], slack, tol, descending, laminar
        )
        moved = np.zeros(n)
        moved[active] = step
        return moved, rounds
    return _rounds(np.where(movable, headroom_kw, 0.0), amount_kw, levels, slack, tol, descending, laminar)[:2]


def _rounds(
    headroom: FloatArray,
    amount_kw: float,
    levels: list[RankedLevel],
    slack: list[FloatArray],
    tol: float,
    descending: bool,
    laminar: bool,
) -> tuple[FloatArray, int, float]:
    """Rounds over the given sessions; ``slack`` is updated in place. Return the moves, rounds and amount left."""
    moved: FloatArray | None = None
    remaining = amount_kw
    rounds = 0
    while remaining > tol and rounds < _MAX_ROUNDS:
        rounds += 1
        step = headroom.copy()
        for ranked, level_slack in zip(levels, slack, strict=True):
            full = level_slack <= tol
            if full.any():
                step[full[ranked.group]] = 0.0
        cut_any = False
        for ranked, level_slack in zip(levels, slack, strict=True):
            load = np.bincount(ranked.group, weights=step, minlength=ranked.entries)
            over = load > level_slack + tol
            if over.any():
                cut_any = True
                _cut(step, ranked, over, level_slack, descending)
        if not np.isinf(remaining):
            inclusive = np.cumsum(step)
            before = inclusive[-1] - inclusive if descending else inclusive - step
            np.clip(remaining - before, 0.0, step, out=step)
        progress = float(step.sum())
        if moved is None:
            moved = step
        else:
            moved += step
        headroom -= step
        remaining -= progress
        for level, ranked in enumerate(levels):
            slack[level] -= np.bincount(ranked.group, weights=step, minlength=ranked.entries)
        # Without a cut the round gave every free session all it could; nested groups finish in one round.
        if laminar or not cut_any or progress <= tol:
            break
    return (np.zeros(headroom.shape[0]) if moved is None else moved), rounds, remaining
