"""The public instance/output JSON format around the solvers."""

from __future__ import annotations

from collections.abc import Mapping

from vpp.algorithms.scheduling.fast import solve_schedule
from vpp.algorithms.scheduling.problem import ScheduleResult, SchedulingProblem, problem_from_instance


def result_to_output(problem: SchedulingProblem, result: ScheduleResult) -> dict[str, object]:
    """Render a result in the public output format (per-session lists keyed by session id)."""
    return {
        "status": result.status,
        "cost_eur": float(result.cost_eur),
        "schedule_kw": {
            sid: [float(v) for v in row] for sid, row in zip(problem.session_ids, result.schedule_kw, strict=True)
        },
        "pool_kw": [float(v) for v in result.pool_kw],
        "unmet_kwh": {sid: float(v) for sid, v in zip(problem.session_ids, result.unmet_kwh, strict=True)},
        "solve_seconds": float(result.solve_seconds),
    }


def solve_instance(instance: Mapping[str, object]) -> dict[str, object]:
    """Validate an instance, solve it with the fast scheduler and return the public output."""
    problem = problem_from_instance(instance)
    return result_to_output(problem, solve_schedule(problem))
