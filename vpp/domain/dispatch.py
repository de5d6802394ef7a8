"""What the dispatcher sees of a pool at one instant: its plugged-in sessions, their bounds and its groups."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class GroupCaps:
    """Groups (sites, congestion points, curtailed devices) as (session index, group index) pairs."""

    group_ids: tuple[str, ...]
    max_kw: FloatArray
    member_session: IntArray
    member_group: IntArray


@dataclass(frozen=True)
class DispatchSnapshot:
    """A pool's controllable sessions now; arrays are aligned with ``session_ids``.

    ``min_kw`` is negative only where discharge is allowed (EVSE capable, connection flag, driver consent,
    state of charge above the floor). ``baseline_kw`` is each session's uncontrolled power now.
    ``schedule_kw`` is the pool's committed schedule for the current ISP (NaN when none).
    ``planned_kw`` is each session's planned power now, what it does when nothing is activated (NaN where a
    session has no plan; None without a plan for the pool).
    """

    pool: str
    at: datetime
    session_ids: tuple[str, ...]
    min_kw: FloatArray
    max_kw: FloatArray
    energy_needed_kwh: FloatArray
    hours_to_departure: FloatArray
    current_kw: FloatArray
    baseline_kw: FloatArray
    groups: GroupCaps
    schedule_kw: float
    # The period each session's latest reading averages (``current_kw``), in epoch seconds (NaN where none; the
    # whole arrays None where the source does not know): the closed loop compares it with the limits of then.
    reading_start_s: FloatArray | None = None
    reading_end_s: FloatArray | None = None
    needs_outrank_target: bool = True
    planned_kw: FloatArray | None = None
    # Energy each session may still discharge above its state-of-charge floor (kWh); None: not known.
    discharge_kwh: FloatArray | None = None
    # Cars planned by their behind-the-meter site: under a grid-stress signal (``stress_signal``: stop, or
    # discharge too) they follow their plan down to their laxity floor, below 0 kW where it discharges; with plan
    # floors their plan's other discharges too. None: none. Elsewhere a need floor keeps every car at >= 0 kW.
    follows_plan_discharge: BoolArray | None = None
    stress_signal: BoolArray | None = None
    # Sessions whose site is in an outage (its grid is gone): they charge not at all; None: none.
    islanded: BoolArray | None = None
    # Per group (aligned with ``groups``): what its cars may draw without raising a capacity tariff's paid peak
    # (the site's free import less its load; inf: none). Soft: never below what the cars' needs require now.
    tariff_max_kw: FloatArray | None = None
    # Each car's state of charge and battery where known (kWh; NaN: not; None: none known): its need then ends at
    # its own target, not full, in the taper the need floors allow for (``vpp.algorithms.taper``).
    soc_kwh: FloatArray | None = None
    battery_kwh: FloatArray | None = None
    # Where its state of charge is not known, the state of charge each car's need ends at, learned from its (or its
    # pool's) finished sessions (``vpp.algorithms.end_soc``; NaN or None: not known, taken as full).
    target_soc: FloatArray | None = None
    # The pool plan's highest power over its horizon (kW; None: no plan): the pool's baseline is held at or below it
    # (``vpp.algorithms.dispatch.pool_baseline_kw``), a soft cap that need floors and activations go above.
    plan_peak_kw: float | None = None
