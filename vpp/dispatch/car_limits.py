"""Sessions under a consumption cap that draw less than their limits: limited by the car, not by us.

Under a DSO cap (a congestion point, a site, an ordered reduction) the cap's room is shared out as limits. A
car whose onboard charger takes 7 kW on a 22 kW charger draws 7 kW whatever limit above that it gets, so
counting its 22 kW limit against the cap leaves room unused that urgent cars need, and its laxity looks far
larger than it is. Once a whole telemetry window shows a session clearly below every limit that was in force
over it, it is planned at what it draws plus a little headroom, and that (not the charger's maximum) is the
limit it is sent, so the cap holds whatever the car does. It gets its charger maximum back when it draws
clearly more, and is probed a step higher every ``probe_s``.

The same holds for any session whose telemetry is fast (a pool under aFRR activation, vpp.dispatch.loop): a
car whose onboard charger, taper above ~80 % SoC or own target keeps it below its limit is planned at what it
draws, so the pool's allocation counts on power the cars really take. With 15-minute telemetry only capped
sessions are judged this way, and elsewhere the dispatcher's below-limit discount (vpp.dispatch.cycle) applies.
With per-session reading periods (``opened_s``) a session is judged on its latest reading against the limits in
force over that reading's own period.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
MAX_SENT_KEPT = 32


@dataclass(frozen=True)
class CarLimitParams:
    """When a session counts as car-limited, and the room it is left."""

    headroom_kw: float = 0.5
    headroom_pct: float = 5.0
    probe_s: float = 3600.0
    probe_step_kw: float = 1.0
    probe_step_pct: float = 15.0


@dataclass
class CarLimits:
    """Per pool: the limits sent to each session (back to the window's start) and who is car-limited."""

    params: CarLimitParams = field(default_factory=CarLimitParams)
    sent: dict[str, list[tuple[float, int, float]]] = field(default_factory=dict)
    observed_kw: dict[str, float] = field(default_factory=dict)
    probe_at: dict[str, float] = field(default_factory=dict)

    def resume(self, limits_kw: dict[str, float]) -> None:
        """Limits a predecessor left in force count as sent before any window."""
        self.sent = {sid: [(-math.inf, -10**9, kw)] for sid, kw in limits_kw.items()}

    def headroom_kw(self, observed_kw: float) -> float:
        """Room left above what a car-limited session draws, so that a car able to draw more shows it."""
        return max(self.params.headroom_kw, self.params.headroom_pct / 100.0 * observed_kw)

    def plan_max_kw(self, ids: Sequence[str], measured_kw: FloatArray, last_kw: FloatArray,
                    pending_kw: FloatArray, capped: BoolArray, charger_max_kw: FloatArray, now_s: float,
                    cycle: int, *, settle_s: float, settle_cycles: int, tolerance_kw: float,
                    opened_s: FloatArray | None = None, margin_scale: FloatArray | None = None) -> FloatArray:
        """The maximum to plan each steered (``capped``) car-limited session at (what it draws plus headroom);
        NaN elsewhere.

        A session is judged once its limits cover a whole window of ``settle_s`` and ``settle_cycles`` cycles
        (period-average telemetry shows a new limit only after a period) or, given ``opened_s``, the period its
        reading averages, and it drew more than ``tolerance_kw`` below the lowest of them. ``margin_scale``
        widens the headroom of sessions whose reading is old (default 1).
        """
        present = set(ids)
        for table in (self.sent, self.observed_kw, self.probe_at):
            for sid in [s for s in table if s not in present]:
                del table[sid]
        out = np.full(len(ids), math.nan)
        # Every session is judged (a cap may start later); only capped ones are planned at what they draw. The
        # window's floor is at most the limit in force, so only sessions clearly below that are candidates.
        with np.errstate(invalid="ignore"):
            candidates = (measured_kw < last_kw - tolerance_kw) & np.isnan(pending_kw)
        below = np.zeros(len(ids), dtype=bool)
        rows = np.flatnonzero(candidates)
        if rows.size:
            opened = np.full(rows.size, now_s - settle_s) if opened_s is None else opened_s[rows]
            floor = self._window_floor([ids[int(i)] for i in rows], last_kw[rows], opened,
                                       cycle - settle_cycles, by_time=settle_s > 0 or opened_s is not None)
            with np.errstate(invalid="ignore"):
                below[rows] = measured_kw[rows] < floor - tolerance_kw
        known = np.array([sid in self.observed_kw for sid in ids], dtype=bool) if self.observed_kw else below
        for i in (int(k) for k in np.flatnonzero(below | known)):
            sid = ids[i]
            observed = self.observed_kw.get(sid)
            measured = float(measured_kw[i])
            if observed is not None and measured >= observed + 0.5 * self.headroom_kw(observed):
                # It draws clearly more than it did: its charger's maximum again.
                del self.observed_kw[sid]
                self.probe_at.pop(sid, None)
                observed = None
            elif observed is not None and now_s >= self.probe_at.get(sid, math.inf):
                # Probe a step higher: a car that takes it gets its maximum back, one that does not is marked
                # again at what it draws once a settled window shows it.
                step = max(self.params.probe_step_kw, self.params.probe_step_pct / 100.0 * observed)
                observed = min(observed + step, float(charger_max_kw[i]))
                self.observed_kw[sid] = observed
                self.probe_at[sid] = now_s + self.params.probe_s
            if below[i] and measured < charger_max_kw[i]:
                if observed is None:
                    self.probe_at[sid] = now_s + self.params.probe_s
                observed = max(measured, 0.0)
                self.observed_kw[sid] = observed
            if observed is not None and capped[i]:
                scale = 1.0 if margin_scale is None else float(margin_scale[i])
                out[i] = min(observed + scale * self.headroom_kw(observed), float(charger_max_kw[i]))
        return out

    def record_sent(self, ids: Sequence[str], limits_kw: Sequence[float], now_s: float, cycle: int) -> None:
        """Remember the limits sent this cycle (the window floor is judged against them)."""
        for sid, kw in zip(ids, limits_kw, strict=True):
            history = self.sent.setdefault(sid, [])
            history.append((now_s, cycle, kw))
            if len(history) > MAX_SENT_KEPT:
                # A window longer than this many changes is not judged (the limit at its start is forgotten).
                del history[: len(history) - MAX_SENT_KEPT]

    def expected_kw(self, ids: Sequence[str]) -> FloatArray:
        """What each car-limited session is known to draw (NaN where it is not known to be car-limited)."""
        return np.array([self.observed_kw.get(sid, math.nan) for sid in ids], dtype=np.float64)

    def _window_floor(self, ids: Sequence[str], last_kw: FloatArray, opened_s: FloatArray, opened_cycle: int,
                      *, by_time: bool) -> FloatArray:
        """The lowest limit in force over each session's window; NaN while the window is not covered.

        The window opened at ``opened_s`` (period-average telemetry: the reading covers that period) or, without
        a period, ``opened_cycle``. The limit in force when it opened is the last one sent at or before that
        moment (or the limit resumed from a predecessor); without one the session is not judged yet.
        """
        floor = np.full(len(ids), math.nan)
        for i, sid in enumerate(ids):
            history = self.sent.get(sid)
            if not history or math.isnan(last_kw[i]):
                continue
            opened = float(opened_s[i])
            if math.isnan(opened):
                continue
            before = [k for k, (at_s, sent_cycle, _) in enumerate(history)
                      if (at_s <= opened if by_time else sent_cycle <= opened_cycle)]
            if not before:
                continue
            # Keep the limit in force when the window opened and everything after it.
            del history[: before[-1]]
            floor[i] = min(float(last_kw[i]), *(kw for _, _, kw in history))
        return floor
