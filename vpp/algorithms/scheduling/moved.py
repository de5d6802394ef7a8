"""An ISP's flexible demand as it moves through the price order, exact under a pool cap (charge-only).

The price-order flow gives ISP t the increment ``f(S + t) - f(S)`` of the polymatroid rank ``f`` (max flow
from the sessions into an ISP set, see flow.py), S being the ISPs served before t. Moving t's price to a level
moves t in the order and nothing else, so S is a prefix of the forecast order with t taken out:

* t served after the first j ISPs of the forecast order, j below t's own position: serve t on a copy of the
  forecast run's state after j ISPs;
* j at or beyond t's position: S = P - t for the forecast prefix P of j + 1 ISPs, and the demand is
  ``f(P) - f(P - t)``; ``f(P - t)`` comes from one continuation of the run without t, started from the
  forecast state just before t.

One forecast run plus these warm-started pieces replaces a full re-solve per (ISP, level).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from vpp.algorithms.scheduling.flow import _PriceOrderFlow
from vpp.algorithms.scheduling.problem import FloatArray, IntArray


class _Flow(_PriceOrderFlow):
    """The price-order flow with the path search's inflow per served ISP in one array operation.

    The same paths up to float summation order; much faster when many ISPs are served, as in the curves'
    late continuations.
    """

    def _inflow(self, movers: IntArray, room_kw: FloatArray, done_cols: IntArray) -> FloatArray:
        inflow: FloatArray = np.minimum(self.x[np.ix_(movers, done_cols)], room_kw[:, None]).sum(axis=0)
        return inflow


def _copy(flow: _PriceOrderFlow) -> _PriceOrderFlow:
    twin = _Flow.__new__(_Flow)
    twin.cap = flow.cap  # read-only
    twin.x = flow.x.copy(order="F")
    twin.need = flow.need.copy()
    twin.pool_left = flow.pool_left.copy()
    twin.future_kw_isps = flow.future_kw_isps.copy()
    twin.done = flow.done.copy()
    twin.blocked = flow.blocked.copy()
    return twin


def moved_isp_demand(cap_kw: FloatArray, need_kw_isps: FloatArray, pool_cap_kw: FloatArray, order: IntArray,
                     before: Mapping[int, IntArray]) -> dict[int, FloatArray]:
    """Flexible pool power at ISP t when t is served after ``before[t][k]`` other ISPs of ``order`` (t removed).

    Equals ``price_order_flow(...)[:, t].sum()`` for the order with t moved there, for each t and k.
    """
    n = order.size
    position = np.empty(n, dtype=np.int64)
    position[order] = np.arange(n)
    total_need = float(need_kw_isps.sum())
    result = {t: np.zeros(np.asarray(js).size) for t, js in before.items()}
    early: list[list[tuple[int, int]]] = [[] for _ in range(n + 1)]  # by j: (t, k) with j < position[t]
    late: dict[int, list[tuple[int, int]]] = {}  # by t: (j, k) with j >= position[t]
    for t, js in before.items():
        for k, j in enumerate(np.asarray(js, dtype=np.int64)):
            if not 0 <= j < n:
                raise ValueError(f"ISP {t} cannot follow {j} of {n - 1} other ISPs")
            if j < position[t]:
                early[int(j)].append((t, k))
            else:
                late.setdefault(t, []).append((int(j), k))
    without: dict[int, list[tuple[int, int, float]]] = {}  # t: (j, k, f(P_{j+1} - t))
    served = np.zeros(n + 1)  # f of the forecast prefix of j ISPs
    flow = _Flow(cap_kw, need_kw_isps, pool_cap_kw)
    for j in range(n + 1):
        served[j] = total_need - float(flow.need.sum())
        for t, k in early[j]:
            twin = _copy(flow)
            twin.serve(t)
            result[t][k] = float(twin.x[:, t].sum())
        if j == n:
            break
        t = int(order[j])
        if t in late:
            wanted = sorted(late[t])
            twin = _copy(flow)
            values: list[tuple[int, int, float]] = []
            step = j
            for jj, k in wanted:
                while step < jj:
                    twin.serve(int(order[step + 1]))
                    step += 1
                values.append((jj, k, total_need - float(twin.need.sum())))
            without[t] = values
        flow.serve(t)
    for t, values in without.items():
        for jj, k, rest in values:
            result[t][k] = served[jj + 1] - rest
    return result
