"""The soak's figures: every acknowledged item looked up in the database after the run, and the dispatch record.

Definitions (docs/operations.md repeats them):

- a setpoint is *persisted* when its (pool, seq) is in ``afrr_setpoints``, *applied* when a dispatch allocation
  used it (``dispatch_allocations.setpoint_seq``); one superseded by the next step before any cycle ran is not
  lost (the dispatcher follows the newest setpoint), it is counted as ``setpoints_superseded``;
- a reading is *stored* when its (session, period start) is in ``session_readings``;
- a profile is *sent twice* when a session's limit went out from two different dispatchers (owners) for the
  same 4-s step: the split brain fencing must prevent;
- a lease takeover lasts from the SIGKILL of a dispatcher to the first allocation another dispatcher wrote for
  each pool the dead one owned;
- the worst gap in dispatch is the longest time between two allocations of a pool the TSO steers.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from sim.soak.load import IngestStats, SetpointSent, percentile
from vpp.activations.tables import AfrrSetpoint, DispatchAllocation, DispatchSend
from vpp.sessions.tables import ChargingSession, SessionReading

STEP_S = 4.0


@dataclass(frozen=True)
class FaultWindow:
    """A fault and the seconds (time.time()) it disturbed the service: from its start to recovery plus a grace."""

    name: str
    start: float
    end: float
    detail: dict[str, Any]


def _ts(value: datetime) -> float:
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


def inside(t: float, windows: Iterable[FaultWindow]) -> bool:
    """Whether ``t`` falls in a fault window."""
    return any(w.start <= t <= w.end for w in windows)


def slowest_acks(sent: Sequence[SetpointSent], windows: Sequence[FaultWindow], origin: float,
                 count: int = 5) -> list[dict[str, Any]]:
    """The ``count`` slowest acknowledgements outside the faults, slowest first, each with when it was sent (seconds
    from ``origin``) and how long after the end of the last fault before it: what an operator needs to tell a tail
    left by a fault's recovery from one of the service's own."""
    outside = [s for s in sent if s.latency_ms is not None and not inside(s.sent_at, windows)]
    slowest = sorted(outside, key=lambda s: s.latency_ms or 0.0, reverse=True)[:count]
    rows = []
    for s in slowest:
        before = [w for w in windows if w.end < s.sent_at]
        last = max(before, key=lambda w: w.end) if before else None
        rows.append({"at_s": round(s.sent_at - origin, 1), "ms": round(s.latency_ms or 0.0, 1), "pool": s.pool,
                     "after_fault": last.name if last else None,
                     "s_after_fault_end": round(s.sent_at - last.end, 1) if last else None})
    return rows


def setpoint_figures(db: Session, sent: Sequence[SetpointSent], windows: Sequence[FaultWindow],
                     origin: float | None = None) -> dict[str, Any]:
    """Acknowledged vs persisted vs applied, and the acknowledgement latency inside and outside the faults."""
    pools = sorted({s.pool for s in sent})
    stored = {(p, q) for p, q in db.execute(select(AfrrSetpoint.pool, AfrrSetpoint.seq)
                                            .where(AfrrSetpoint.pool.in_(pools)))}
    applied = {(p, q) for p, q in db.execute(select(DispatchAllocation.pool, DispatchAllocation.setpoint_seq)
                                             .where(DispatchAllocation.pool.in_(pools)).distinct())}
    acked = [s for s in sent if s.latency_ms is not None]
    lost = [s for s in acked if (s.pool, s.seq) not in stored]
    not_applied = [s for s in acked if (s.pool, s.seq) not in applied]
    newest = {p: max((s.seq for s in acked if s.pool == p), default=None) for p in pools}
    inside_ms = [s.latency_ms for s in acked if s.latency_ms is not None and inside(s.sent_at, windows)]
    outside_ms = [s.latency_ms for s in acked if s.latency_ms is not None and not inside(s.sent_at, windows)]
    return {
        "setpoints_sent": len(sent),
        "setpoints_acknowledged": len(acked),
        "setpoints_refused": len(sent) - len(acked),
        "setpoints_persisted": len(acked) - len(lost),
        "setpoints_lost": len(lost),
        "setpoints_applied": len(acked) - len(not_applied),
        "setpoints_superseded": sum(1 for s in not_applied if s.seq != newest[s.pool]),
        "setpoints_newest_not_applied": sum(1 for s in not_applied if s.seq == newest[s.pool]),
        "ack_p99_ms": percentile(outside_ms, 0.99),
        "ack_p50_ms": percentile(outside_ms, 0.50),
        "ack_p99_ms_in_faults": percentile(inside_ms, 0.99),
        "ack_max_ms": round(max(outside_ms + inside_ms), 1) if acked else None,
        "ack_samples_outside_faults": len(outside_ms),
        "ack_samples_in_faults": len(inside_ms),
        "ack_slowest_outside_faults": slowest_acks(
            sent, windows, origin if origin is not None else min((s.sent_at for s in sent), default=0.0)),
    }


def reading_figures(db: Session, ingest: IngestStats, connection_id: str) -> dict[str, Any]:
    """Acknowledged charging periods vs those stored."""
    rows = db.execute(
        select(ChargingSession.external_id, SessionReading.start_at)
        .join(SessionReading, SessionReading.session_id == ChargingSession.id)
        .where(ChargingSession.connection_id == connection_id)
    )
    stored: dict[str, set[float]] = defaultdict(set)
    for external_id, start_at in rows:
        stored[external_id].add(_ts(start_at))
    lost = sum(1 for sid, starts in ingest.acknowledged.items() for s in starts if _ts(s) not in stored[sid])
    seconds = max(ingest.finished - ingest.started, 1e-9)
    acked = ingest.readings_acknowledged
    return {
        "readings_acknowledged": acked,
        "readings_stored": acked - lost,
        "readings_lost": lost,
        "readings_refused": ingest.patches_failed,
        "ingest_patch_per_s": round(acked / seconds, 1),
        "ingest_cars_equivalent": int(acked / seconds * 900),
        "ingest_p99_ms": percentile(ingest.latencies_ms, 0.99),
    }


def dispatch_figures(db: Session, pools: Sequence[str], start: float, end: float,
                     kills: Sequence[tuple[float, str]]) -> dict[str, Any]:
    """Profiles sent twice, lease takeovers after each dispatcher kill, and the worst gap in dispatch."""
    allocations = db.execute(
        select(DispatchAllocation.id, DispatchAllocation.pool, DispatchAllocation.at, DispatchAllocation.owner)
        .order_by(DispatchAllocation.at)
    ).all()
    owner_of = {a.id: a.owner for a in allocations}
    by_pool: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for a in allocations:
        by_pool[a.pool].append((_ts(a.at), a.owner))

    sent_by: dict[tuple[str, int], set[str]] = defaultdict(set)
    twice = 0
    for send in db.execute(select(DispatchSend.allocation_id, DispatchSend.sent_at, DispatchSend.items)):
        step = int(_ts(send.sent_at) // STEP_S)
        owner = owner_of.get(send.allocation_id, "?")
        for sid in send.items.get("s", []):
            owners = sent_by[(sid, step)]
            if owners and owner not in owners:
                twice += 1
            owners.add(owner)

    takeovers: list[float] = []
    for killed_at, victim in kills:
        for rows in by_pool.values():
            before = [o for t, o in rows if t <= killed_at]
            if not before or before[-1] != victim:
                continue
            after = [t for t, o in rows if t > killed_at and o != victim]
            takeovers.append((after[0] if after else end) - killed_at)

    gaps: list[float] = []
    for pool in pools:
        times = [t for t, _o in by_pool.get(pool, []) if start <= t <= end]
        edges = [start, *times, end]
        gaps.append(max(b - a for a, b in itertools.pairwise(edges)))
    return {
        "profiles_sent_twice": twice,
        "lease_takeovers": len(takeovers),
        "lease_takeover_max_s": round(max(takeovers), 2) if takeovers else None,
        "dispatch_gap_max_s": round(max(gaps), 2) if gaps else None,
        "dispatch_allocations": len(allocations),
        "dispatch_owners": len({a.owner for a in allocations}),
    }
