"""One pool's dispatch state across cycles: what was sent, who is unavailable, who does not follow.

The state lives in the dispatcher that owns the pool; the database keeps enough (the latest setpoint, the
limits of the last allocations) for a successor to resume. ``plan`` runs in a worker thread, outcomes arrive on
the event loop: they are queued and applied at the start of the next ``plan``.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

import numpy as np

from vpp.algorithms.allocation import AllocationProblem, PreparedPool, allocate_prepared, prepare
from vpp.algorithms.dispatch import (
    FINISH_MARGIN_S,
    PoolLimits,
    beyond_deadband,
    build_problem,
    capped_sessions,
    off_limit,
    plan_peak_room_kw,
    plan_start_kw,
    pool_baseline_kw,
    pool_target_kw,
    sent_for_caps,
)
from vpp.algorithms.taper import TAPER_START_SOC
from vpp.dispatch.car_limits import CarLimits
from vpp.dispatch.loop import ClosedLoop
from vpp.domain.dispatch import DispatchSnapshot
from vpp.ports import LimitOutcome, LimitStatus

EXCLUDED_FOR_SESSION = {LimitStatus.REJECTED, LimitStatus.NOT_SUPPORTED, LimitStatus.UNKNOWN_SESSION}
FAILED = {LimitStatus.FAILED, LimitStatus.LOST}
# Below this state of charge a car drawing less than everything that held it is held by its onboard charger (the
# taper starts at TAPER_START_SOC; a reading averages over a period in which the state of charge rises).
ONBOARD_SOC = TAPER_START_SOC - 0.05
IN_FORCE = {LimitStatus.ACCEPTED, LimitStatus.APPLIED}


@dataclass(frozen=True)
class DispatchParams:
    """Knobs of the cycle (from Settings)."""

    deadband_kw: float = 0.5
    deadband_pct: float = 5.0
    unavailable_s: float = 60.0
    too_often_backoff_s: float = 30.0
    follow_cycles: int = 4
    follow_tolerance_kw: float = 1.0
    settle_cycles: int = 2
    # ... and at least this long where power is reported as period averages (OCPI charging periods, 5-15 min):
    # a reading taken sooner still shows the previous limit and is no sign of not following.
    settle_s: float = 0.0
    discount_hold_s: float = 300.0
    setpoint_max_age_s: float = 60.0
    # Plan every need to be met this long before departure (one 15-minute telemetry period and cycle).
    finish_margin_s: float = FINISH_MARGIN_S
    # Hold a planned car at its plan below its even pace while its laxity allows (vpp.algorithms.dispatch,
    # ``plan_need_floor_kw``): the plan's price response; off: every car at least at its even pace.
    plan_floors: bool = True


@dataclass(frozen=True)
class Setpoint:
    """The setpoint a cycle applies (MW, aFRR sign: positive = less consumption)."""

    seq: int | None
    setpoint_mw: float
    timestamp: datetime | None


@dataclass(frozen=True)
class CyclePlan:
    """What one cycle decided: the pool figures, every setpoint, and the limits to send."""

    pool: str
    at: datetime
    setpoint: Setpoint
    target_kw: float
    total_kw: float
    baseline_kw: float
    measured_kw: float
    session_ids: tuple[str, ...]
    setpoints_kw: list[float]
    send_ids: list[str]
    send_kw: list[float]
    flags: dict[str, int]
    full: bool


@dataclass
class PoolDispatch:
    """The dispatch state of one owned pool."""

    pool: str
    params: DispatchParams = field(default_factory=DispatchParams)
    last_kw: dict[str, float] = field(default_factory=dict)
    in_flight: dict[str, float] = field(default_factory=dict)
    blocked_until: dict[str, float] = field(default_factory=dict)
    off_above: dict[str, int] = field(default_factory=dict)
    off_below: dict[str, int] = field(default_factory=dict)
    discounted_until: dict[str, float] = field(default_factory=dict)
    changed_cycle: dict[str, int] = field(default_factory=dict)
    changed_at: dict[str, float] = field(default_factory=dict)
    cycles: int = 0
    car_limits: CarLimits = field(default_factory=CarLimits)
    loop: ClosedLoop = field(default_factory=ClosedLoop)
    fast_at: dict[str, float] = field(default_factory=dict)
    # The most each session was seen drawing (kW): an AC car not yet seen is planned at the least it may draw.
    seen_kw: dict[str, float] = field(default_factory=dict)
    # The most each session was seen feeding back while asked for more (kW): its discharge laxity recharges it no
    # faster (a bidirectional onboard charger, e.g. 7.4 kW both ways on an 11-kW wallbox).
    gives_kw: dict[str, float] = field(default_factory=dict)
    # What each car was seen drawing while nothing but itself held it, below its taper (its onboard charger).
    onboard_kw: dict[str, float] = field(default_factory=dict)
    _outcomes: deque[tuple[float, list[LimitOutcome], list[float]]] = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _prepared: PreparedPool | None = None
    _prepared_for: tuple[tuple[str, ...], np.ndarray, np.ndarray, int] | None = None
    prepares: int = 0

    def _seen_onboard(self, snapshot: DispatchSnapshot, measured: np.ndarray, last: np.ndarray,
                      judged: np.ndarray) -> np.ndarray:
        """What each car draws when held by nothing but itself (NaN: not known), kept per session: a settled
        reading clearly (``follow_tolerance_kw``) below both its limit in force (none: its charger) and its
        charger, while its state of charge (known only with its battery) is below ``ONBOARD_SOC`` (so not its
        taper, nor a need met at its own target), is its onboard charger; a later reading above it raises it."""
        ids = snapshot.session_ids
        out = np.array([self.onboard_kw.get(s, math.nan) for s in ids], dtype=np.float64)
        if snapshot.soc_kwh is None or snapshot.battery_kwh is None:
            return out
        tol = self.params.follow_tolerance_kw
        charger = np.asarray(snapshot.max_kw, dtype=np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            share = np.asarray(snapshot.soc_kwh, dtype=np.float64) / np.asarray(snapshot.battery_kwh, dtype=np.float64)
            bound = np.fmin(last, charger)
            held = judged & (share < ONBOARD_SOC) & (measured > tol) & (measured < bound - tol) & (
                measured < charger - tol)
            out = np.where(held, np.fmax(out, measured), out)
            out = np.where(np.isfinite(out) & (measured > out), measured, out)
        for k in np.flatnonzero(np.isfinite(out)).tolist():
            self.onboard_kw[ids[k]] = float(out[k])
        return out

    def resume(self, limits_kw: Mapping[str, float]) -> None:
        """Start from the limits a predecessor left in force (car limits judge later readings against them)."""
        self.last_kw = dict(limits_kw)
        self.car_limits.resume(dict(limits_kw))

    def outcomes_arrived(self, at_s: float, outcomes: Sequence[LimitOutcome], sent_kw: Sequence[float]) -> None:
        """Queue the outcomes of a send (any thread); applied by the next plan."""
        with self._lock:
            self._outcomes.append((at_s, list(outcomes), list(sent_kw)))

    def _apply_outcomes(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        with self._lock:
            batches = list(self._outcomes)
            self._outcomes.clear()
        for at_s, outcomes, sent in batches:
            for outcome, kw in zip(outcomes, sent, strict=True):
                sid, status = outcome.session_id, outcome.status
                counts[status.value] = counts.get(status.value, 0) + 1
                previous = self.in_flight.pop(sid, math.nan)
                if status in IN_FORCE:
                    self.last_kw[sid] = outcome.limit_kw if outcome.limit_kw is not None else kw
                elif status in EXCLUDED_FOR_SESSION:
                    self.blocked_until[sid] = math.inf
                    self.last_kw.pop(sid, None)
                elif status is LimitStatus.TOO_OFTEN:
                    self.blocked_until[sid] = at_s + (outcome.retry_after_s or self.params.too_often_backoff_s)
                    self._restore(sid, previous)
                elif status in FAILED:
                    self.blocked_until[sid] = at_s + self.params.unavailable_s
                    self.last_kw.pop(sid, None)
                else:
                    self._restore(sid, previous)
        return counts

    def _restore(self, sid: str, previous: float) -> None:
        if math.isnan(previous):
            self.last_kw.pop(sid, None)
        else:
            self.last_kw[sid] = previous

    def current_setpoint(self, setpoint: Setpoint | None, at: datetime) -> Setpoint:
        """The setpoint to apply now: the latest one unless it is too old (then zero)."""
        if setpoint is None or setpoint.timestamp is None:
            return Setpoint(seq=None, setpoint_mw=0.0, timestamp=None)
        if (at - setpoint.timestamp).total_seconds() > self.params.setpoint_max_age_s:
            return Setpoint(seq=setpoint.seq, setpoint_mw=0.0, timestamp=setpoint.timestamp)
        return setpoint

    def plan(self, snapshot: DispatchSnapshot, setpoint: Setpoint | None, limits: PoolLimits) -> CyclePlan:
        """Allocate the pool target to its sessions and pick the limits that moved beyond the deadband."""
        at = snapshot.at
        now_s = at.timestamp()
        outcome_counts = self._apply_outcomes()
        applied = self.current_setpoint(setpoint, at)
        ids = snapshot.session_ids
        n = len(ids)
        present = set(ids)
        tables: tuple[dict[str, float] | dict[str, int], ...] = (
            self.last_kw, self.blocked_until, self.off_above, self.off_below, self.discounted_until,
            self.changed_cycle, self.changed_at, self.fast_at, self.seen_kw, self.gives_kw, self.onboard_kw,
        )
        for table in tables:
            for sid in [s for s in table if s not in present]:
                del table[sid]
        measured = np.asarray(snapshot.current_kw, dtype=np.float64)
        seen = np.array([self.seen_kw.get(s, math.nan) for s in ids], dtype=np.float64)
        seen = np.fmax(seen, np.where(measured > 0, measured, np.nan))
        for k in np.flatnonzero(np.isfinite(seen)).tolist():
            self.seen_kw[ids[k]] = float(seen[k])
        last = np.array([self.last_kw.get(s, math.nan) for s in ids], dtype=np.float64)
        pending = np.array([self.in_flight.get(s, math.nan) for s in ids], dtype=np.float64)
        blocked = np.array([self.blocked_until.get(s, -math.inf) > now_s for s in ids], dtype=bool)

        loop = self.loop.params
        start_s, end_s = snapshot.reading_start_s, snapshot.reading_end_s
        windows = start_s is not None and end_s is not None
        fast = np.zeros(n, dtype=bool)
        age = np.full(n, math.inf)
        if start_s is not None and end_s is not None:
            with np.errstate(invalid="ignore"):
                age = np.where(np.isfinite(end_s), now_s - end_s, math.inf)
                fast = (age <= loop.stale_after_s) & (end_s - start_s <= loop.stale_after_s)
        recent = np.zeros(n, dtype=bool)
        if windows:
            self._seen_fast(ids, fast, now_s)
            # Known to the loop: a fast reading not long ago (a silent car keeps its estimate, with a wider margin).
            recent = (age <= loop.estimate_max_age_s) & (self._fast_at(ids) >= now_s - loop.estimate_max_age_s)
        above, below = off_limit(measured, last, self.params.follow_tolerance_kw)
        # A car that gives back less than it was asked (its own discharge limit, its state of charge) is not a
        # non-follower: pinned at its discharge it went on feeding back past its floor and its need (afrr-v2g-4h:
        # 7.4-kW cars asked for 11 kW were held at -7.4 kW to 20 % SoC and left with nothing). It stays steered:
        # the floors keep it within its state of charge and its need, and the loop makes up the difference.
        with np.errstate(invalid="ignore"):
            above &= ~((last < 0) & (measured <= self.params.follow_tolerance_kw))
        # A session is judged only once its limit has had time to take effect: with fast telemetry, once its
        # latest reading began after its last change; else after ``settle_s``.
        changed_at = np.array([self.changed_at.get(s, -math.inf) for s in ids], dtype=np.float64)
        cycles_since = np.array([self.cycles - self.changed_cycle.get(s, -10**9) for s in ids], dtype=np.int64)
        settled = (cycles_since > self.params.settle_cycles) & (now_s - changed_at >= self.params.settle_s)
        if windows and fast.any():
            assert start_s is not None
            with np.errstate(invalid="ignore"):
                after_change = start_s - loop.latency_s >= changed_at
            settled = np.where(fast, after_change, settled)
        above &= np.isnan(pending) & settled
        below &= np.isnan(pending) & settled
        gives = self._seen_giving(ids, measured, last, np.isnan(pending) & settled)
        onboard = self._seen_onboard(snapshot, measured, last, np.isnan(pending) & settled)
        pinned = np.full(n, math.nan)
        max_override = np.full(n, math.nan)
        discounted = np.zeros(n, dtype=bool)
        for i, sid in enumerate(ids):
            self.off_above[sid] = self.off_above.get(sid, 0) + 1 if above[i] else 0
            self.off_below[sid] = self.off_below.get(sid, 0) + 1 if below[i] else 0
            if self.off_above[sid] >= self.params.follow_cycles or self.off_below[sid] >= self.params.follow_cycles:
                self.discounted_until[sid] = now_s + self.params.discount_hold_s
            if self.discounted_until.get(sid, -math.inf) > now_s:
                discounted[i] = True
                if self.off_above[sid] or not below[i]:
                    pinned[i] = measured[i]
                else:
                    max_override[i] = measured[i]
        # Under a cap, a car drawing below its limits is planned at what it draws and sent that as its limit
        # (vpp.dispatch.car_limits) instead of the below-limit discount, which leaves its old limit in force.
        # With fast telemetry every car is judged so, on its own reading's period (vpp.dispatch.loop).
        capped = capped_sessions(snapshot, limits)
        opened = None
        if windows and recent.any():
            assert start_s is not None
            opened = np.where(fast, start_s - loop.latency_s, now_s - self.params.settle_s)
        margin = np.where(recent, 1.0 + np.clip((age - loop.stale_after_s) / loop.stale_after_s, 0.0, 4.0), 1.0)
        car_kw = self.car_limits.plan_max_kw(
            ids, measured, last, pending, capped | recent, np.asarray(snapshot.max_kw, dtype=np.float64), now_s,
            self.cycles, settle_s=self.params.settle_s, settle_cycles=self.params.settle_cycles,
            tolerance_kw=self.params.follow_tolerance_kw, opened_s=opened, margin_scale=margin)
        steered = (capped | recent) & np.isnan(pinned)
        discounted &= ~steered
        max_override = np.where(steered, car_kw, max_override)
        pinned = np.where(blocked, measured, pinned)
        pinned = np.where(~np.isnan(pending), pending, pinned)

        baseline = pool_baseline_kw(snapshot, limits)
        target = pool_target_kw(baseline, applied.setpoint_mw, snapshot.pool, limits)
        start = np.where(np.isnan(pending), last, pending)
        # A site-planned car's allocation starts from its plan, the others' from their limit in force.
        cycle = build_problem(snapshot, limits, target, plan_start_kw(snapshot, start, pending), pinned,
                              max_override,
                              finish_margin_h=self.params.finish_margin_s / 3600.0,
                              plan_floors=self.params.plan_floors, seen_kw=seen, gives_kw=gives,
                              onboard_kw=onboard)
        problem = cycle.problem
        # The closed loop: the target moves by the integral correction, within what the pool can do.
        low = float(np.sum(problem.min_kw)) - target
        high = float(np.sum(problem.max_kw)) - target
        pool_cap = limits.congestion_max_kw.get(snapshot.pool)
        if pool_cap is not None:
            high = min(high, pool_cap - target)
        # At most up to the plan's peak (without an activation): see ``plan_peak_room_kw``.
        high = min(high, plan_peak_room_kw(snapshot.plan_peak_kw, target, applied.setpoint_mw))
        reading = self.loop.read(ids, measured, start_s, end_s, np.asarray(snapshot.max_kw, dtype=np.float64),
                                 now_s, low, high)
        commanded = target + reading.correction_kw
        if reading.correction_kw:
            problem = replace(problem, target_kw=commanded)
        result = allocate_prepared(self._prepared_pool(ids, problem), problem)
        new_kw = result.setpoints_kw
        free = ~blocked & ~discounted & np.isnan(pending)
        send = free & beyond_deadband(new_kw, last, self.params.deadband_kw, self.params.deadband_pct)
        in_force = np.where(send, new_kw, start)
        send |= sent_for_caps(problem, new_kw, in_force, free & ~send,
                              pool_cap_kw=limits.congestion_max_kw.get(snapshot.pool))
        # What each session is counted at from now on: its new limit or the one left in force (within its
        # bounds), at most what it is known to draw; the loop compares the coming readings with it.
        with np.errstate(invalid="ignore"):
            kept = np.clip(np.where(np.isnan(start), new_kw, start), problem.min_kw, problem.max_kw)
            counted = np.where(send | ~free, new_kw, kept)
            if steered.any():
                counted = np.where(steered, np.fmin(counted, self.car_limits.expected_kw(ids)), counted)
        saturated = 1 if commanded > result.total_kw + 1.0 else (-1 if commanded < result.total_kw - 1.0 else 0)
        self.loop.record(ids, counted, commanded, now_s, saturated)
        send_idx = np.flatnonzero(send)
        send_ids = [ids[i] for i in send_idx]
        send_kw = [float(new_kw[i]) for i in send_idx]
        for sid, kw in zip(send_ids, send_kw, strict=True):
            self.in_flight[sid] = self.last_kw.get(sid, math.nan)
            self.last_kw[sid] = kw
            self.changed_cycle[sid] = self.cycles
            self.changed_at[sid] = now_s
        self.car_limits.record_sent(send_ids, send_kw, now_s, self.cycles)

        flags = dict(cycle.flags)
        flags.update(reading.flags)
        if reading.correction_kw:
            flags["loop_correction_kw"] = round(reading.correction_kw)
        flags.update({f"outcome_{k}": v for k, v in outcome_counts.items()})
        if blocked.any():
            flags["unavailable"] = int(blocked.sum())
        if discounted.any():
            flags["discounted"] = int(discounted.sum())
        if result.target_clipped:
            flags["target_clipped"] = 1
        if applied.seq is not None and setpoint is not None and applied.setpoint_mw != setpoint.setpoint_mw:
            flags["setpoint_expired"] = 1
        full = self.cycles == 0
        self.cycles += 1
        return CyclePlan(
            pool=snapshot.pool, at=at, setpoint=applied, target_kw=target, total_kw=result.total_kw,
            baseline_kw=baseline, measured_kw=float(measured.sum()), session_ids=ids,
            setpoints_kw=[float(v) for v in new_kw], send_ids=send_ids, send_kw=send_kw, flags=flags, full=full,
        )

    def _seen_giving(self, ids: Sequence[str], measured: np.ndarray, last: np.ndarray, judged: np.ndarray
                     ) -> np.ndarray:
        """The most each session was seen feeding back while its limit in force asked clearly more (NaN: never),
        updated with this cycle's settled readings."""
        tolerance = self.params.follow_tolerance_kw
        with np.errstate(invalid="ignore"):
            short = judged & (last < 0) & (measured < -tolerance) & (measured > last + tolerance)
        gives = np.array([self.gives_kw.get(s, math.nan) for s in ids], dtype=np.float64)
        gives = np.fmax(gives, np.where(short, -measured, np.nan))
        for k in np.flatnonzero(np.isfinite(gives)).tolist():
            self.gives_kw[ids[k]] = float(gives[k])
        return gives

    def _fast_at(self, ids: Sequence[str]) -> np.ndarray:
        """When each session last had a fast reading (-inf: never)."""
        return np.array([self.fast_at.get(s, -math.inf) for s in ids], dtype=np.float64)

    def _seen_fast(self, ids: Sequence[str], fast: np.ndarray, now_s: float) -> None:
        for i in np.flatnonzero(fast):
            self.fast_at[ids[int(i)]] = now_s

    def _prepared_pool(self, ids: tuple[str, ...], problem: AllocationProblem) -> PreparedPool:
        """The pool's prepared allocation structure, prepared again only when its sessions or groups changed."""
        key = self._prepared_for
        groups = int(np.shape(problem.group_max_kw)[0])
        if (
            self._prepared is None or key is None or key[3] != groups or key[0] != ids
            or not np.array_equal(key[1], problem.member_session)
            or not np.array_equal(key[2], problem.member_group)
        ):
            self._prepared = prepare(problem)
            self._prepared_for = (ids, np.array(problem.member_session), np.array(problem.member_group), groups)
            self.prepares += 1
        return self._prepared

    def in_force(self) -> dict[str, float]:
        """The limits believed in force now (sent and not refused)."""
        return dict(self.last_kw)
