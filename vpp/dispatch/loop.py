"""The closed loop of one pool: what its cars drew against what they were counted at, and the pool's correction.

A cycle counts every session at the power it expects from it (its limit in force, or what it is known to draw:
a car-limited car, a pinned non-follower). Telemetry arrives later, as period averages (OCPI charging periods,
10-30 s under activation). Each new reading is compared with what the session was counted at over the same
period (the counted history, shifted by the network's latency), which gives the car's deviation. The pool's
power now is then estimated as what it is counted at minus the sum of those deviations, so a reading's age does
not look like an error while the setpoint ramps. The pool error (target minus that estimate) is integrated
into a correction of the target, with anti-windup: no further in a direction the allocation could not follow,
and never beyond what the pool can do.

Faults: a reading older than the newest one seen is ignored (out of order); one above the charger's maximum is
ignored (implausible); a session without a new reading keeps its last deviation until ``estimate_max_age_s``
(its margin widens meanwhile, see ``reading_age_s``); when no session has a fresh deviation (slow telemetry, a
CPO whose pushes stopped) the correction decays back to zero: the pool runs open loop on its plan again.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from vpp.algorithms.dispatch import integral_step, window_average_kw

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class LoopParams:
    """Knobs of the closed loop."""

    # Share of the (estimated) pool error added to the correction per cycle.
    gain: float = 0.5
    # A limit takes effect this long after the cycle that sent it (the CPO's round trip).
    latency_s: float = 2.0
    # Counted power is kept this long: readings averaging older periods are not compared.
    history_s: float = 180.0
    # A reading is compared when the history covers at least this share of its period.
    min_coverage: float = 0.5
    # A session's reading older than this is stale: its last deviation is kept and its margin widens ...
    stale_after_s: float = 60.0
    # ... until this age, when its deviation is forgotten (the loop no longer knows what it does).
    estimate_max_age_s: float = 300.0
    # A reading this far above the charger's maximum is not a measurement of the car.
    implausible_margin_kw: float = 1.0
    # Without any fresh deviation the correction decays by this share per cycle.
    decay: float = 0.5


@dataclass(frozen=True)
class LoopReading:
    """What the loop made of this cycle's telemetry."""

    correction_kw: float
    deviation_kw: float
    reading_age_s: FloatArray
    fresh: BoolArray
    flags: dict[str, int]


@dataclass
class ClosedLoop:
    """Per pool: the counted history, each session's latest deviation, and the integral correction."""

    params: LoopParams = field(default_factory=LoopParams)
    correction_kw: float = 0.0
    ids: tuple[str, ...] = ()
    deviation_kw: FloatArray = field(default_factory=lambda: np.zeros(0))
    deviation_end_s: FloatArray = field(default_factory=lambda: np.zeros(0))
    newest_end_s: FloatArray = field(default_factory=lambda: np.zeros(0))
    history: deque[tuple[float, FloatArray]] = field(default_factory=deque)
    # Last cycle: commanded target minus what it counted (deadband, clipping), and whether it was clipped.
    mismatch_kw: float = 0.0
    saturated: int = 0
    last_at_s: float = math.nan

    def _align(self, ids: tuple[str, ...]) -> None:
        """Carry the per-session state over to this cycle's sessions (arrivals NaN, departures dropped)."""
        if ids == self.ids:
            return
        n = len(ids)
        if self.ids:
            where = {sid: i for i, sid in enumerate(self.ids)}
            old = np.array([where.get(sid, -1) for sid in ids], dtype=np.int64)
        else:
            old = np.full(n, -1, dtype=np.int64)
        known = old >= 0
        pick = np.where(known, old, 0)

        def carry(values: FloatArray) -> FloatArray:
            if values.size == 0:
                return np.full(n, math.nan)
            return np.where(known, values[pick], math.nan)

        self.deviation_kw = carry(self.deviation_kw)
        self.deviation_end_s = carry(self.deviation_end_s)
        self.newest_end_s = carry(self.newest_end_s)
        self.history = deque((t, carry(values)) for t, values in self.history)
        self.ids = ids

    def read(self, ids: tuple[str, ...], measured_kw: FloatArray, start_s: FloatArray | None,
             end_s: FloatArray | None, charger_max_kw: FloatArray, now_s: float, low_kw: float, high_kw: float
             ) -> LoopReading:
        """Take this cycle's readings and move the correction (bounded to ``[low_kw, high_kw]``)."""
        p = self.params
        self._align(ids)
        n = len(ids)
        if start_s is None or end_s is None:
            # A source that does not say what period a reading averages cannot be compared: open loop.
            start_s = end_s = np.full(n, math.nan)
        flags: dict[str, int] = {}
        with np.errstate(invalid="ignore"):
            has = np.isfinite(end_s) & np.isfinite(measured_kw)
            out_of_order = has & (end_s < self.newest_end_s)
            new = has & ~(end_s <= self.newest_end_s)
            implausible = new & (measured_kw > charger_max_kw + p.implausible_margin_kw)
        self.newest_end_s = np.where(new, end_s, self.newest_end_s)
        usable = new & ~implausible
        if out_of_order.any():
            flags["readings_out_of_order"] = int(out_of_order.sum())
        if implausible.any():
            flags["readings_implausible"] = int(implausible.sum())
        rows = np.flatnonzero(usable)
        if rows.size and self.history:
            times = np.array([t for t, _ in self.history])
            values = np.vstack([v[rows] for _, v in self.history])
            expected, covered = window_average_kw(times, values, start_s[rows] - p.latency_s,
                                                  end_s[rows] - p.latency_s)
            compared = covered >= p.min_coverage
            idx = rows[compared]
            self.deviation_kw[idx] = expected[compared] - measured_kw[idx]
            self.deviation_end_s[idx] = end_s[idx]
        age = np.where(np.isfinite(self.newest_end_s), now_s - self.newest_end_s, math.inf)
        estimate_age = np.where(np.isfinite(self.deviation_end_s), now_s - self.deviation_end_s, math.inf)
        forget = estimate_age > p.estimate_max_age_s
        self.deviation_kw[forget] = math.nan
        self.deviation_end_s[forget] = math.nan
        fresh = age <= p.stale_after_s
        stale = ~fresh & np.isfinite(self.deviation_kw)
        if stale.any():
            flags["readings_stale"] = int(stale.sum())
        deviation = float(np.nansum(self.deviation_kw)) if n else 0.0
        if (fresh & np.isfinite(self.deviation_kw)).any():
            error = deviation + self.mismatch_kw - self.correction_kw
            self.correction_kw = integral_step(self.correction_kw, error, p.gain, low_kw, high_kw, self.saturated)
        else:
            self.correction_kw *= 1.0 - p.decay
            if abs(self.correction_kw) < 1e-3:
                self.correction_kw = 0.0
            flags["loop_open"] = 1
        self.correction_kw = min(max(self.correction_kw, min(low_kw, 0.0)), max(high_kw, 0.0))
        self.last_at_s = now_s
        return LoopReading(correction_kw=self.correction_kw, deviation_kw=deviation, reading_age_s=age,
                           fresh=fresh, flags=flags)

    def record(self, ids: Sequence[str], counted_kw: FloatArray, commanded_kw: float, now_s: float,
               saturated: int) -> None:
        """Remember what this cycle counted each session at, from now on, and how far that is from its command."""
        if tuple(ids) != self.ids:
            self._align(tuple(ids))
        self.history.append((now_s, np.asarray(counted_kw, dtype=np.float64).copy()))
        while len(self.history) > 1 and self.history[1][0] <= now_s - self.params.history_s:
            self.history.popleft()
        self.mismatch_kw = float(commanded_kw - np.sum(counted_kw))
        self.saturated = saturated
