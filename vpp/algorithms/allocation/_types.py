"""The allocation's problem and result objects and the array aliases shared by the package."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


def _empty_float() -> FloatArray:
    return np.zeros(0, dtype=np.float64)


def _empty_int() -> IntArray:
    return np.zeros(0, dtype=np.int64)


@dataclass(frozen=True)
class AllocationProblem:
    """A pool's target and its sessions; groups as unique (session, group) index pairs, best sorted by session."""

    min_kw: FloatArray
    max_kw: FloatArray
    energy_needed_kwh: FloatArray
    hours_to_departure: FloatArray
    current_kw: FloatArray
    target_kw: float
    member_session: IntArray = field(default_factory=_empty_int)
    member_group: IntArray = field(default_factory=_empty_int)
    group_max_kw: FloatArray = field(default_factory=_empty_float)
    # -inf (or None for all groups) means the group has no minimum.
    group_min_kw: FloatArray | None = None
    # Accepted for compatibility and checked for shape only: the cut order (device, site, congestion point)
    # is derived from how the groups nest, which is exact where a hint could be wrong.
    group_level: IntArray | None = None
    # Energy the session must receive before departure even when the target outranks needs (hard).
    energy_floor_kwh: FloatArray | None = None
    needs_outrank_target: bool = True
    # The caller's need floor per session (kW), in place of the even pace ``energy_needed_kwh /
    # hours_to_departure`` (e.g. a car's plan where its plan keeps its need feasible); clipped to the bounds.
    need_floor_kw: FloatArray | None = None


@dataclass(frozen=True)
class Allocation:
    """Per-session setpoints and what bound the result."""

    setpoints_kw: FloatArray
    total_kw: float
    target_kw: float
    target_clipped: bool
    need_floors_binding: bool
    sessions_below_need_floor: int
    group_min_unmet: bool
    rounds: int
