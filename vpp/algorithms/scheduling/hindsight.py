"""The cheapest way the realised sessions could have been charged, had every arrival and need been known.

The reference a controlled day is measured against: the same sessions, the same energy, the same prices and
the same caps (congestion points, sites, curtailed devices), with perfect foresight. A session is plugged in
for a share of each ISP (``available``, 0..1: it may arrive or leave inside one), so the bound of its ISP
average power is that share of its maximum. Taper near full is not modelled, which makes the optimum a little
better than reachable: a lower bound on the price that control can pay.

Method: a session that shares no cap and cannot discharge fills its cheapest ISPs (exact, it is alone with
its need); the others are one LP (HiGHS, dual simplex) with the caps as rows and, for V2G sessions, their
state of charge kept between floor and full at every ISP boundary.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import sparse

from vpp.algorithms.lp import solve_lp
from vpp.domain.errors import InvalidInput

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, eq=False)
class HindsightProblem:
    """Sessions x ISPs; caps per group and ISP (+inf where none); energy in kWh, power in kW (ISP averages).

    ``energy_low_kwh``/``energy_high_kwh`` bound the energy a V2G session has taken since the start at every
    ISP boundary (its SoC floor and a full battery, relative to its SoC at the start); NaN for charge-only.
    """

    isp_hours: float
    prices_eur_per_mwh: FloatArray
    available: FloatArray
    energy_kwh: FloatArray
    max_kw: FloatArray
    min_kw: FloatArray
    energy_low_kwh: FloatArray
    energy_high_kwh: FloatArray
    group_members: tuple[IntArray, ...] = ()
    group_cap_kw: FloatArray | None = None

    def check(self) -> None:
        """Refuse inconsistent shapes or bounds."""
        n, t = self.available.shape
        if self.prices_eur_per_mwh.shape != (t,):
            raise InvalidInput(f"prices have {self.prices_eur_per_mwh.shape[0]} values for {t} ISPs")
        for name in ("energy_kwh", "max_kw", "min_kw", "energy_low_kwh", "energy_high_kwh"):
            if getattr(self, name).shape != (n,):
                raise InvalidInput(f"{name} must have one value per session ({n})")
        if np.any(self.min_kw > self.max_kw):
            raise InvalidInput("a session's min_kw exceeds its max_kw")
        caps = self.group_cap_kw
        if len(self.group_members) and (caps is None or caps.shape != (len(self.group_members), t)):
            raise InvalidInput("group_cap_kw must be groups x ISPs")


@dataclass(frozen=True, eq=False)
class HindsightResult:
    """The optimum: sessions x ISPs power, the pool's power, its cost and each session's shortfall."""

    schedule_kw: FloatArray
    pool_kw: FloatArray
    cost_eur: float
    unmet_kwh: FloatArray
    solve_seconds: float
    method: str


def solve_hindsight(problem: HindsightProblem) -> HindsightResult:
    """The perfect-foresight schedule of ``problem`` (see the module's docstring)."""
    started = time.perf_counter()
    problem.check()
    n, t = problem.available.shape
    capped = np.zeros(n, dtype=bool)
    caps = problem.group_cap_kw
    for g, members in enumerate(problem.group_members):
        if caps is not None and np.isfinite(caps[g]).any():
            capped[members] = True
    joint = capped | (problem.min_kw < 0)
    schedule = np.zeros((n, t))
    free = np.flatnonzero(~joint)
    if free.size:
        schedule[free] = _cheapest_isps(problem, free)
    method = "greedy"
    if joint.any():
        schedule[joint] = _lp(problem, np.flatnonzero(joint))
        method = "greedy+lp-highs" if free.size else "lp-highs"
    pool = schedule.sum(axis=0)
    delivered = schedule.sum(axis=1) * problem.isp_hours
    return HindsightResult(
        schedule_kw=schedule, pool_kw=pool,
        cost_eur=float(np.sum(pool * problem.prices_eur_per_mwh) * problem.isp_hours / 1000.0),
        unmet_kwh=np.maximum(problem.energy_kwh - delivered, 0.0),
        solve_seconds=time.perf_counter() - started, method=method)


def _cheapest_isps(problem: HindsightProblem, sessions: IntArray) -> FloatArray:
    """Each session alone: full power in its cheapest ISPs (earliest first on ties) until its energy is in."""
    h = problem.isp_hours
    order = np.lexsort((np.arange(problem.prices_eur_per_mwh.size), problem.prices_eur_per_mwh))
    room_kwh = (problem.available[sessions] * problem.max_kw[sessions, None] * h)[:, order]
    before = np.cumsum(room_kwh, axis=1) - room_kwh
    take = np.clip(problem.energy_kwh[sessions, None] - before, 0.0, room_kwh)
    out = np.zeros_like(take)
    out[:, order] = take / h
    return out


def _lp(problem: HindsightProblem, sessions: IntArray) -> FloatArray:
    """The sessions that share caps or discharge, as one LP: x[s, t] is the ISP-average power (kW)."""
    h = problem.isp_hours
    available = problem.available[sessions]
    owner, isp = np.nonzero(available > 0)
    n_x = owner.size
    local = {int(s): k for k, s in enumerate(sessions)}
    lower = np.minimum(problem.min_kw[sessions], 0.0)[owner] * available[owner, isp]
    upper = np.maximum(problem.max_kw[sessions], 0.0)[owner] * available[owner, isp]
    cost = problem.prices_eur_per_mwh[isp] * h / 1000.0

    rows: list[IntArray] = []
    cols: list[IntArray] = []
    vals: list[FloatArray] = []
    row_low: list[FloatArray] = []
    row_high: list[FloatArray] = []
    next_row = 0

    # Each session takes exactly its energy, or pays for the shortfall far above any price (where the caps leave
    # too little room for what the twin drew without them).
    n_cols = n_x + sessions.size
    rows.append(np.concatenate((owner, np.arange(sessions.size))).astype(np.int64))
    cols.append(np.arange(n_cols, dtype=np.int64))
    vals.append(np.concatenate((np.full(n_x, h), np.ones(sessions.size))))
    penalty = 10.0 * (float(np.max(np.abs(problem.prices_eur_per_mwh), initial=0.0)) + 1000.0) / 1000.0
    cost = np.concatenate((cost, np.full(sessions.size, penalty)))
    lower = np.concatenate((lower, np.zeros(sessions.size)))
    upper = np.concatenate((upper, np.full(sessions.size, np.inf)))
    energy = problem.energy_kwh[sessions]
    row_low.append(energy)
    row_high.append(energy)
    next_row += sessions.size

    # Caps: the members' sum in each ISP where the group has a finite cap.
    caps = problem.group_cap_kw
    for g, members in enumerate(problem.group_members):
        if caps is None:
            break
        inside = np.array([local[int(m)] for m in members if int(m) in local], dtype=np.int64)
        capped_isps = np.flatnonzero(np.isfinite(caps[g]))
        if inside.size == 0 or capped_isps.size == 0:
            continue
        row_of_isp = np.full(available.shape[1], -1, dtype=np.int64)
        row_of_isp[capped_isps] = next_row + np.arange(capped_isps.size)
        hit = np.isin(owner, inside) & (row_of_isp[isp] >= 0)
        rows.append(row_of_isp[isp[hit]])
        cols.append(np.flatnonzero(hit).astype(np.int64))
        vals.append(np.ones(int(hit.sum())))
        row_low.append(np.full(capped_isps.size, -np.inf))
        row_high.append(caps[g, capped_isps])
        next_row += capped_isps.size

    # V2G: the energy taken up to the end of each plugged-in ISP stays within the battery's bounds.
    for k, s in enumerate(sessions):
        if problem.min_kw[s] >= 0:
            continue
        columns = np.flatnonzero(owner == k)
        count = columns.size
        # Row j sums the session's columns 0..j (they are in ISP order).
        r, c = np.tril_indices(count)
        rows.append(next_row + r.astype(np.int64))
        cols.append(columns[c].astype(np.int64))
        vals.append(np.full(r.size, h))
        row_low.append(np.full(count, problem.energy_low_kwh[s]))
        row_high.append(np.full(count, problem.energy_high_kwh[s]))
        next_row += count

    matrix = sparse.csc_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                               shape=(next_row, n_cols))
    values, status = solve_lp(cost, lower, upper, matrix, np.concatenate(row_low), np.concatenate(row_high))
    if values is None:
        raise InvalidInput(f"the hindsight LP has no optimum: {status}")
    out = np.zeros(available.shape)
    out[owner, isp] = np.clip(values[:n_x], lower[:n_x], upper[:n_x])
    return out


__all__ = ["HindsightProblem", "HindsightResult", "solve_hindsight"]
