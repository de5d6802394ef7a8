"""What a schedule must satisfy, shared by the exact LP and the fast solver.

* Every session draws ``min_kw <= p <= max_kw`` while plugged and 0 otherwise.
* A charge-only session (``min_kw >= 0``) receives its need and no more: its delivered energy lies in
  ``[energy_kwh, max(energy_kwh, min_kw * window)]``; a full battery stops drawing, so extra charging at
  negative prices is not modelled.
* A V2G session (``min_kw < 0``) keeps its state of charge in ``[min_soc_kwh, battery_kwh]`` at every ISP
  boundary and ends with at least ``soc_kwh + energy_kwh``.
* The pool draws ``pool_min_kw <= sum <= pool_max_kw`` at every ISP.

Objectives are lexicographic: first honour the pool bounds as far as possible (status "infeasible" when
they cannot be honoured), then minimise the total shortfall of needs (status "feasible" when some need is
short, reported per session in ``unmet_kwh``), then minimise cost (status "optimal" when every need is met
and the method is exact).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from vpp.algorithms.scheduling.problem import FloatArray, SchedulingProblem

ENERGY_TOL_KWH = 1e-3
POWER_TOL_KW = 1e-6
OPTIMAL = "optimal"
FEASIBLE = "feasible"
INFEASIBLE = "infeasible"


def cost_eur(problem: SchedulingProblem, pool_kw: FloatArray) -> float:
    """Cost of a pool profile: sum of price * power * ISP length, in EUR."""
    return float(problem.prices_eur_per_mwh @ pool_kw) * problem.isp_hours / 1000.0


def shortfall_penalty_eur_per_kwh(problem: SchedulingProblem) -> float:
    """A price per unmet kWh that outweighs any saving an unmet kWh could buy."""
    top = float(np.max(np.abs(problem.prices_eur_per_mwh))) if problem.n_isps else 0.0
    return 1.0 + 4.0 * top / 1000.0


def window_mask(problem: SchedulingProblem) -> NDArray[np.bool_]:
    """Boolean sessions x ISPs: True while the session is plugged."""
    t = np.arange(problem.n_isps)
    return (t[None, :] >= problem.arrival[:, None]) & (t[None, :] < problem.departure[:, None])


def energy_upper_kwh(problem: SchedulingProblem) -> FloatArray:
    """Most energy a charge-only session may take: its need, or more if its minimum power forces it."""
    window_h = (problem.departure - problem.arrival) * problem.isp_hours
    upper: FloatArray = np.maximum(problem.energy_kwh, np.maximum(problem.min_kw, 0.0) * window_h)
    return upper


def unmet_kwh(problem: SchedulingProblem, schedule_kw: FloatArray) -> FloatArray:
    """Each session's shortfall against its need at departure (0 when met)."""
    delivered = schedule_kw.sum(axis=1) * problem.isp_hours
    shortfall: FloatArray = np.maximum(problem.energy_kwh - delivered, 0.0)
    return shortfall


def pool_violation_kw(problem: SchedulingProblem, pool_kw: FloatArray) -> float:
    """Largest excursion of the pool profile outside its bounds."""
    over = np.maximum(pool_kw - problem.pool_max_kw, 0.0)
    under = np.maximum(problem.pool_min_kw - pool_kw, 0.0)
    return float(max(over.max(initial=0.0), under.max(initial=0.0)))


def status_of(problem: SchedulingProblem, schedule_kw: FloatArray, *, exact: bool) -> str:
    """Status from what a schedule achieves (see the module docstring)."""
    pool_kw = schedule_kw.sum(axis=0)
    if pool_violation_kw(problem, pool_kw) > 1e-4 * max(1.0, float(np.abs(pool_kw).max(initial=0.0))):
        return INFEASIBLE
    if float(unmet_kwh(problem, schedule_kw).max(initial=0.0)) > ENERGY_TOL_KWH:
        return FEASIBLE
    return OPTIMAL if exact else FEASIBLE
