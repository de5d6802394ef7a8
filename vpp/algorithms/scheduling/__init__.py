"""Portfolio scheduling: the cheapest charging/V2G schedule of a pool against day-ahead prices."""

from vpp.algorithms.scheduling.exact import solve_exact_lp
from vpp.algorithms.scheduling.fast import solve_schedule
from vpp.algorithms.scheduling.output import result_to_output, solve_instance
from vpp.algorithms.scheduling.problem import ScheduleResult, SchedulingProblem, problem_from_instance

__all__ = [
    "ScheduleResult",
    "SchedulingProblem",
    "problem_from_instance",
    "result_to_output",
    "solve_exact_lp",
    "solve_instance",
    "solve_schedule",
]
