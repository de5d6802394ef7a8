"""Exact charge-only scheduling under a pool cap as a polymatroid greedy over ISPs in price order.

The pool profiles that can be disaggregated into sessions meeting their needs are the bases of the
polymatroid ``f(S) = max flow from the sessions into the ISP set S`` (sessions supply their need, session
i reaches ISP t with capacity ``max_kw`` inside its window, ISP t absorbs at most the pool cap). A linear
cost is minimised over such a base by taking ISPs from cheapest to dearest and giving each the largest
increment ``f(S + t) - f(S)``. That increment is found with augmenting paths that only pass through ISPs
already in S, whose loads they leave unchanged; session nodes are contracted away, so a path is a short
sequence of ISPs and all per-session work is vectorised over numpy rows.
"""

from __future__ import annotations

import numpy as np

from vpp.algorithms.scheduling.problem import FloatArray, IntArray

_EPS_KW = 1e-9


def greedy_fill(cap_kw: FloatArray, need_kw_isps: FloatArray, order: IntArray) -> FloatArray:
    """Give each session its cheapest ISPs first (exact when the pool is uncapped)."""
    capped = cap_kw[:, order]
    before = np.cumsum(capped, axis=1) - capped
    taken = np.clip(need_kw_isps[:, None] - before, 0.0, capped)
    schedule = np.empty_like(cap_kw)
    schedule[:, order] = taken
    return schedule


def _take(available: FloatArray, amount: float, priority: FloatArray) -> FloatArray:
    """Split ``amount`` over rows with ``available`` capacity, lowest ``priority`` first."""
    if available.sum() <= amount:
        return available.copy()
    rank = np.argsort(priority, kind="stable")
    ordered = available[rank]
    before = np.cumsum(ordered) - ordered
    taken = np.empty_like(available)
    taken[rank] = np.clip(amount - before, 0.0, ordered)
    return taken


class _PriceOrderFlow:
    def __init__(self, cap_kw: FloatArray, need_kw_isps: FloatArray, pool_cap_kw: FloatArray) -> None:
        # Column-major: the algorithm reads one ISP's column for many sessions at a time.
        self.cap = np.asfortranarray(cap_kw)
        self.x = np.zeros_like(self.cap, order="F")
        self.need = need_kw_isps.copy()
        self.pool_left = pool_cap_kw.copy()
        self.future_kw_isps = cap_kw.sum(axis=1)
        self.done = np.zeros(cap_kw.shape[1], dtype=bool)
        # Sessions that still need energy and have room in an ISP already served: the only path sources.
        self.blocked = np.zeros(cap_kw.shape[0], dtype=bool)

    def room(self, t: int) -> FloatArray:
        return self.cap[:, t] - self.x[:, t]

    def serve(self, t: int) -> None:
        self.future_kw_isps -= self.cap[:, t]
        self._fill_directly(t)
        while self.pool_left[t] > _EPS_KW and self._augment(t):
            pass
        self.done[t] = True
        self.blocked |= (self.need > _EPS_KW) & (self.cap[:, t] - self.x[:, t] > _EPS_KW)

    def _fill_directly(self, t: int) -> None:
        rows = np.flatnonzero((self.need > _EPS_KW) & (self.cap[:, t] > self.x[:, t]))
        if rows.size == 0:
            return
        available = np.minimum(self.need[rows], self.cap[rows, t] - self.x[rows, t])
        # Least slack in the dearer ISPs first: those sessions have nowhere else to go.
        slack = self.future_kw_isps[rows] - self.need[rows]
        taken = _take(available, float(self.pool_left[t]), slack)
        self.x[rows, t] += taken
        self.need[rows] -= taken
        self.pool_left[t] -= taken.sum()

    @staticmethod
    def _inflow(x_done: FloatArray, movers: IntArray, room_kw: FloatArray) -> FloatArray:
        """Power each served ISP could hand to the ``movers`` (sessions with ``room_kw`` at the ISP being reached):
        ``x_done`` is the schedule's columns of the served ISPs, C-ordered (its rows taken as ``x[ix_(movers,
        done)]`` would give them: the same array, so the same sums to the last bit)."""
        inflow: FloatArray = np.minimum(x_done[movers], room_kw[:, None]).sum(axis=0)
        return inflow

    def _augment(self, t: int) -> bool:
        """Push flow into t along one shortest path source -> u_k -> ... -> u_1 -> t; False when none.

        The search reads the served ISPs' columns of ``x`` for every ISP it reaches: they are taken once per call
        (C-ordered, as ``x[ix_(rows, done)]`` gives them, so every sum adds the same numbers in the same order),
        since nothing changes them before the path is applied; ``nonzero()[0]`` stands for ``flatnonzero`` on these
        one-dimensional masks (the same indices without its wrapper's cost, a tenth of the search in a simulated
        day's re-plans).
        """
        self.blocked &= self.need > _EPS_KW
        wanting = self.blocked.nonzero()[0]
        if wanting.size == 0:
            return False
        done_cols = self.done.nonzero()[0]
        if done_cols.size == 0:
            return False
        x, cap = self.x, self.cap
        x_done = np.ascontiguousarray(x[:, done_cols])
        room_w = cap[np.ix_(wanting, done_cols)] - x_done[wanting]
        source_kw = np.zeros(cap.shape[1])
        source_kw[done_cols] = np.minimum(room_w, self.need[wanting, None]).sum(axis=0)
        if not (source_kw > _EPS_KW).any():
            return False
        done_list = done_cols.tolist()
        parent: dict[int, int] = {t: -1}
        edge_kw: dict[int, float] = {}
        frontier = [t]
        found = -1
        while frontier and found < 0:
            next_frontier: list[int] = []
            for v in frontier:
                room_col = cap[:, v] - x[:, v]
                movers = (room_col > _EPS_KW).nonzero()[0]
                if movers.size == 0:
                    continue
                inflow = self._inflow(x_done, movers, room_col[movers])
                for j in (inflow > _EPS_KW).nonzero()[0].tolist():
                    u = done_list[j]
                    if u in parent:
                        continue
                    parent[u] = v
                    edge_kw[u] = float(inflow[j])
                    if source_kw[u] > _EPS_KW:
                        found = u
                        break
                    next_frontier.append(u)
                if found >= 0:
                    break
            frontier = next_frontier
        if found < 0:
            return False
        path = [found]
        while parent[path[-1]] != t:
            path.append(parent[path[-1]])
        delta = min(float(self.pool_left[t]), float(source_kw[found]), *(edge_kw[u] for u in path))
        # Apply from the sink end so every earlier edge keeps at least the capacity it was found with.
        for u in reversed(path):
            v = parent[u]
            movers = ((x[:, u] > _EPS_KW) & (cap[:, v] - x[:, v] > _EPS_KW)).nonzero()[0]
            available = np.minimum(x[movers, u], cap[movers, v] - x[movers, v])
            moved = _take(available, delta, -available)
            x[movers, u] -= moved
            x[movers, v] += moved
        rows = ((self.need > _EPS_KW) & (cap[:, found] - x[:, found] > _EPS_KW)).nonzero()[0]
        available = np.minimum(self.need[rows], cap[rows, found] - x[rows, found])
        taken = _take(available, delta, self.future_kw_isps[rows] - self.need[rows])
        x[rows, found] += taken
        self.need[rows] -= taken
        self.pool_left[t] -= delta
        return True


def price_order_flow(
    cap_kw: FloatArray, need_kw_isps: FloatArray, pool_cap_kw: FloatArray, order: IntArray
) -> FloatArray:
    """Cheapest schedule meeting as much need as possible under per-ISP pool caps (charge-only, exact)."""
    flow = _PriceOrderFlow(cap_kw, need_kw_isps, pool_cap_kw)
    for t in order:
        flow.serve(int(t))
    return np.ascontiguousarray(flow.x)


class _SegmentFlow(_PriceOrderFlow):
    """The price-order flow over ISP segments: a segment opens more of its ISP's pool power at its own price.

    An ISP whose cost is convex and piecewise linear in the pool's power (a floor served first, a committed
    position below which power is cheaper than above) is split into segments of pool power, each an element
    of the polymatroid with its own cost. Segments are served in cost order; a segment's room replaces what
    the ISP's previous segment left unused (that room found no flow then, and the greedy never revisits an
    element), so each ISP draws at most the sum of its segments.
    """

    def __init__(self, cap_kw: FloatArray, need_kw_isps: FloatArray) -> None:
        super().__init__(cap_kw, need_kw_isps, np.zeros(cap_kw.shape[1]))

    def serve_segment(self, t: int, room_kw: float) -> None:
        if not self.done[t]:
            self.future_kw_isps -= self.cap[:, t]
        self.pool_left[t] = room_kw
        self._fill_directly(t)
        while self.pool_left[t] > _EPS_KW and self._augment(t):
            pass
        self.done[t] = True
        self.blocked |= (self.need > _EPS_KW) & (self.cap[:, t] - self.x[:, t] > _EPS_KW)


def segment_order_flow(
    cap_kw: FloatArray, need_kw_isps: FloatArray, segment_isp: IntArray, segment_kw: FloatArray, order: IntArray
) -> FloatArray:
    """Cheapest charge-only schedule when ISPs are split into pool-power segments served in ``order`` (exact).

    Segment k opens ``segment_kw[k]`` more pool power at ISP ``segment_isp[k]``; ``order`` lists segment indices
    from cheapest to dearest, an ISP's segments in increasing marginal cost (convex), so each is served after
    the ISP's cheaper ones.
    """
    flow = _SegmentFlow(cap_kw, need_kw_isps)
    for k in order:
        if segment_kw[k] > _EPS_KW:
            flow.serve_segment(int(segment_isp[k]), float(segment_kw[k]))
    return np.ascontiguousarray(flow.x)
