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
    """The price-order flow, whose state this module copies to warm-start its continuations.

    (It overrode the path search's inflow with the array operation the base class now uses itself: the base's
    search, with the served ISPs' columns taken once per path, gives the same numbers.)
    """


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


def _bounds(cap_kw: FloatArray, need_kw_isps: FloatArray, pool_cap_kw: FloatArray, met: bool
            ) -> tuple[FloatArray, FloatArray]:
    """Bounds on t's demand at any position: ``f({t})`` first in the order, the must-run ``f(V) - f(V - t)`` last.

    The must-run is computed without the cap (``f <= h``, equal on V when every need is met), so it is only a
    valid lower bound when ``met``; otherwise 0.
    """
    window_kw = cap_kw.sum(axis=1)
    first = np.minimum(pool_cap_kw, np.minimum(need_kw_isps[:, None], cap_kw).sum(axis=0))
    if not met:
        return first, np.zeros(cap_kw.shape[1])
    last = np.clip(need_kw_isps[:, None] - (window_kw[:, None] - cap_kw), 0.0, cap_kw).sum(axis=0)
    return first, last


def moved_isp_demand(cap_kw: FloatArray, need_kw_isps: FloatArray, pool_cap_kw: FloatArray, order: IntArray,
                     before: Mapping[int, IntArray], *, tol_kw: float = 1e-7) -> dict[int, FloatArray]:
    """Flexible pool power at ISP t when t is served after ``before[t][k]`` other ISPs of ``order`` (t removed).

    Equals ``price_order_flow(...)[:, t].sum()`` for the order with t moved there, for each t and k (within
    ``tol_kw``). The demand does not increase with the position (submodularity), so once it meets t's own
    forecast value (earlier positions) or its must-run (later positions) the remaining positions are known.
    """
    n = order.size
    position = np.empty(n, dtype=np.int64)
    position[order] = np.arange(n)
    total_need = float(need_kw_isps.sum())
    base = _Flow(cap_kw, need_kw_isps, pool_cap_kw)
    for t in order:
        base.serve(int(t))
    own = base.x.sum(axis=0)  # t's demand at its forecast position
    served = np.concatenate(([0.0], np.cumsum(own[order])))  # f of the forecast prefix of j ISPs
    met = float(base.need.sum()) <= tol_kw
    first, last = _bounds(cap_kw, need_kw_isps, pool_cap_kw, met)
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
    settled = {t for t in before if own[t] >= first[t] - tol_kw}  # earlier positions give own[t]
    flow = _Flow(cap_kw, need_kw_isps, pool_cap_kw)
    for j in range(n + 1):
        for t, k in early[j]:
            if t in settled:
                result[t][k] = own[t]
                continue
            twin = _copy(flow)
            twin.serve(t)
            result[t][k] = float(twin.x[:, t].sum())
            if result[t][k] <= own[t] + tol_kw:
                settled.add(t)
        if j == n:
            break
        t = int(order[j])
        if t in late:
            _continue_without(flow, t, sorted(late[t]), order, served, total_need, own[t], last[t], tol_kw,
                              result[t])
        flow.serve(t)
    return result


def _continue_without(flow: _PriceOrderFlow, t: int, wanted: list[tuple[int, int]], order: IntArray,
                      served: FloatArray, total_need: float, own: float, floor: float, tol_kw: float,
                      out: FloatArray) -> None:
    """t's demand at positions ``wanted`` beyond its own: ``f(P) - f(P - t)``, the run continued without t."""
    if own <= floor + tol_kw:
        for _, k in wanted:
            out[k] = own
        return
    twin = _copy(flow)
    step = int(np.flatnonzero(order == t)[0])
    value = own
    for jj, k in wanted:
        if value > floor + tol_kw:
            while step < jj:
                twin.serve(int(order[step + 1]))
                step += 1
            value = float(served[jj + 1]) - (total_need - float(twin.need.sum()))
        out[k] = value
