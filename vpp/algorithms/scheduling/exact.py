"""The exact per-session LP (HiGHS): the quality reference for the fast solver."""

from __future__ import annotations

import time

import highspy
import numpy as np
from scipy import sparse

from vpp.algorithms.scheduling.model import (
    cost_eur,
    energy_upper_kwh,
    shortfall_penalty_eur_per_kwh,
    status_of,
)
from vpp.algorithms.scheduling.problem import FloatArray, IntArray, ScheduleResult, SchedulingProblem


def solve_exact_lp(problem: SchedulingProblem, *, solver: str = "ipm") -> ScheduleResult:
    """Solve the per-session LP with HiGHS (the reference, slow for large pools)."""
    started = time.perf_counter()
    schedule = lp_schedule(problem, solver)
    schedule = clip_to_bounds(problem, schedule)
    pool_kw = schedule.sum(axis=0)
    return ScheduleResult(
        status=status_of(problem, schedule, exact=True),
        schedule_kw=schedule,
        pool_kw=pool_kw,
        unmet_kwh=np.maximum(problem.energy_kwh - schedule.sum(axis=1) * problem.isp_hours, 0.0),
        cost_eur=cost_eur(problem, pool_kw),
        solve_seconds=time.perf_counter() - started,
        method=f"exact-lp-highs-{solver}",
    )


def clip_to_bounds(problem: SchedulingProblem, schedule: FloatArray) -> FloatArray:
    """Remove solver round-off outside the per-session power bounds."""
    upper = np.maximum(problem.max_kw_by_isp(), 0.0)
    lower = np.minimum(np.minimum(problem.min_kw, 0.0)[:, None], upper)
    return np.clip(schedule, lower, upper)


def lp_schedule(problem: SchedulingProblem, solver: str) -> FloatArray:
    """Sessions x ISPs schedule of the per-session LP solved by HiGHS with ``solver``."""
    return PoolLp(problem, solver).solve()


class PoolLp:
    """The per-session LP held in a live HiGHS instance, so new pool bounds re-solve from the last basis."""

    def __init__(self, problem: SchedulingProblem, solver: str) -> None:
        lp, self._owner, self._isp = _build_lp(problem)
        self._shape = (problem.n_sessions, problem.n_isps)
        self.highs = highspy.Highs()  # type: ignore[no-untyped-call]
        self.highs.setOptionValue("output_flag", False)
        self.highs.setOptionValue("solver", solver)
        self.highs.setOptionValue("threads", 1)
        self.highs.passModel(lp)
        self._duals = np.zeros(problem.n_isps)
        self.objective = 0.0
        # False after a solve whose bounds admit no schedule (a pool bound past what the sessions can reach):
        # the values HiGHS leaves then are no schedule, and its objective no cost.
        self.feasible = True

    def solve(self) -> FloatArray:
        """Run HiGHS and return the sessions x ISPs schedule."""
        self.highs.run()
        self.feasible = self.highs.getModelStatus() == highspy.HighsModelStatus.kOptimal
        solution = self.highs.getSolution()
        values = np.asarray(solution.col_value, dtype=np.float64)
        self._duals = np.asarray(solution.row_dual, dtype=np.float64)[: self._shape[1]]
        self.objective = float(self.highs.getInfo().objective_function_value)
        schedule = np.zeros(self._shape)
        schedule[self._owner, self._isp] = values[: self._owner.size]
        return schedule

    def set_pool_bounds(self, pool_min_kw: FloatArray, pool_max_kw: FloatArray) -> None:
        """Replace the pool rows' bounds (the first ``n_isps`` rows)."""
        n_isps = self._shape[1]
        self.highs.changeRowsBounds(  # type: ignore[attr-defined]
            n_isps, np.arange(n_isps, dtype=np.int32), pool_min_kw.astype(np.float64), pool_max_kw.astype(np.float64)
        )

    def pool_duals(self) -> FloatArray:
        """Marginal cost of one more kW of pool bound per ISP, from the last solve (sign as HiGHS reports)."""
        return self._duals


def _build_lp(problem: SchedulingProblem) -> tuple[highspy.HighsLp, IntArray, IntArray]:
    n, n_isps, h = problem.n_sessions, problem.n_isps, problem.isp_hours
    length = (problem.departure - problem.arrival).astype(np.int64)
    owner: IntArray = np.repeat(np.arange(n), length)
    offset = np.concatenate(([0], np.cumsum(length)))
    step = np.arange(owner.size) - offset[owner]
    isp = problem.arrival[owner] + step
    n_x = owner.size

    v2g = problem.is_v2g
    soc_of_x = v2g[owner]
    x_with_soc = np.flatnonzero(soc_of_x)
    n_s = x_with_soc.size
    # SoC column k belongs to x column x_with_soc[k]; its predecessor is the previous column of the session.
    s_col = n_x + np.arange(n_s)
    n_z = n
    z_col = n_x + n_s + np.arange(n_z)
    over_col = n_x + n_s + n_z + np.arange(n_isps)
    under_col = over_col + n_isps
    # Leaving the committed position: above (short of) it by dev_above (dev_below), at the imbalance price.
    position = problem.position_kw if problem.has_position else None
    dev_above_col = under_col + n_isps
    dev_below_col = dev_above_col + n_isps
    n_cols = n_x + n_s + n_z + 2 * n_isps + (2 * n_isps if position is not None else 0)

    penalty = shortfall_penalty_eur_per_kwh(problem)
    cost = np.zeros(n_cols)
    cost[:n_x] = problem.prices_eur_per_mwh[isp] * h / 1000.0
    cost[z_col] = penalty
    cost[over_col] = 100.0 * penalty * h
    cost[under_col] = 100.0 * penalty * h
    col_lower = np.zeros(n_cols)
    col_upper = np.full(n_cols, np.inf)
    col_upper[:n_x] = problem.max_kw_by_isp()[owner, isp]
    col_lower[:n_x] = np.minimum(problem.min_kw[owner], col_upper[:n_x])
    soc_owner = owner[x_with_soc]
    col_lower[s_col] = problem.min_soc_kwh[soc_owner]
    if problem.soc_floor_kwh is not None:
        raised = problem.soc_floor_kwh[soc_owner, isp[x_with_soc]]
        col_lower[s_col] = np.fmax(col_lower[s_col], np.minimum(raised, problem.battery_kwh[soc_owner]))
    col_upper[s_col] = problem.battery_kwh[soc_owner]
    has_upper = np.isfinite(problem.pool_max_kw)
    has_lower = np.isfinite(problem.pool_min_kw)
    col_upper[over_col[~has_upper]] = 0.0
    col_upper[under_col[~has_lower]] = 0.0
    if position is not None:
        cost[dev_above_col] = problem.imbalance_eur_per_mwh * h / 1000.0
        cost[dev_below_col] = problem.imbalance_eur_per_mwh * h / 1000.0
        uncommitted = ~np.isfinite(position)
        col_upper[dev_above_col[uncommitted]] = 0.0
        col_upper[dev_below_col[uncommitted]] = 0.0

    # Rows: pool (n_isps), energy (n), SoC dynamics (n_s).
    rows: list[IntArray] = []
    cols: list[IntArray] = []
    vals: list[FloatArray] = []

    def add(r: IntArray, c: IntArray, v: FloatArray | float) -> None:
        rows.append(r)
        cols.append(c)
        vals.append(np.broadcast_to(np.asarray(v, dtype=np.float64), r.shape))

    x_cols = np.arange(n_x)
    add(isp, x_cols, 1.0)
    add(np.arange(n_isps), over_col, -1.0)
    add(np.arange(n_isps), under_col, 1.0)
    energy_row = n_isps + np.arange(n)
    charge_x = np.flatnonzero(~soc_of_x)
    add(energy_row[owner[charge_x]], charge_x, h)
    add(energy_row, z_col, 1.0)
    last_of_session = offset[1:] - 1
    v2g_sessions = np.flatnonzero(v2g)
    s_index_of_x = np.full(n_x, -1)
    s_index_of_x[x_with_soc] = np.arange(n_s)
    add(energy_row[v2g_sessions], s_col[s_index_of_x[last_of_session[v2g_sessions]]], 1.0)
    dyn_row = n_isps + n + np.arange(n_s)
    add(dyn_row, s_col, 1.0)
    add(dyn_row, x_with_soc, -h)
    not_first = step[x_with_soc] > 0
    add(dyn_row[not_first], s_col[np.flatnonzero(not_first) - 1], -1.0)
    n_rows = n_isps + n + n_s
    if position is not None:
        # Rows after the others, so the pool rows stay the first n_isps (PoolLp.set_pool_bounds).
        position_row = n_rows + np.arange(n_isps)
        add(position_row[isp], x_cols, 1.0)
        add(position_row, dev_above_col, -1.0)
        add(position_row, dev_below_col, 1.0)
        n_rows += n_isps

    row_lower = np.zeros(n_rows)
    row_upper = np.zeros(n_rows)
    row_lower[:n_isps] = np.where(has_lower, problem.pool_min_kw, -np.inf)
    row_upper[:n_isps] = np.where(has_upper, problem.pool_max_kw, np.inf)
    charge_sessions = ~v2g
    row_lower[energy_row] = np.where(charge_sessions, problem.energy_kwh, problem.soc_kwh + problem.energy_kwh)
    row_upper[energy_row] = np.where(charge_sessions, energy_upper_kwh(problem), np.inf)
    row_lower[dyn_row] = np.where(not_first, 0.0, problem.soc_kwh[soc_owner])
    row_upper[dyn_row] = row_lower[dyn_row]
    if position is not None:
        committed = np.where(np.isfinite(position), position, 0.0)
        row_lower[position_row] = np.where(np.isfinite(position), committed, -np.inf)
        row_upper[position_row] = np.where(np.isfinite(position), committed, np.inf)

    matrix = sparse.csc_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n_rows, n_cols)
    )
    lp = highspy.HighsLp()
    lp.num_col_ = n_cols
    lp.num_row_ = n_rows
    lp.col_cost_ = cost
    lp.col_lower_ = col_lower
    lp.col_upper_ = col_upper
    lp.row_lower_ = row_lower
    lp.row_upper_ = row_upper
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = matrix.indptr
    lp.a_matrix_.index_ = matrix.indices
    lp.a_matrix_.value_ = matrix.data
    return lp, owner, isp
