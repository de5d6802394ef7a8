"""What a dispatcher cycle reads from and writes to the database (the caller owns the transaction)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from vpp.activations import repository
from vpp.activations.tables import DispatchAllocation, DispatchFence, DispatchSend, PoolResponse
from vpp.algorithms.dispatch import PoolLimits
from vpp.commitments.tables import Commitment
from vpp.db import KeptPerDatabase, utcnow
from vpp.dispatch.cycle import CyclePlan, Setpoint
from vpp.domain.commitments import CommitmentKind
from vpp.domain.errors import Conflict
from vpp.domain.isp import floor_to_isp
from vpp.ports import LimitOutcome

STEP = timedelta(seconds=4)
_LIMIT_KINDS = [
    CommitmentKind.CONGESTION_LIMIT.value,
    CommitmentKind.FLEX_ORDER.value,
    CommitmentKind.DEVICE_CURTAILMENT.value,
    CommitmentKind.DAY_AHEAD_SCHEDULE.value,
]


class StaleOwner(Conflict):
    """A dispatcher whose lease was taken over tried to write for the pool."""

    code = "stale_dispatcher"


def latest_setpoint(session: Session, pool: str) -> Setpoint | None:
    """The pool's setpoint with the highest seq (the source of truth for a resuming dispatcher)."""
    row = repository.latest_setpoint(session, pool)
    if row is None:
        return None
    return Setpoint(seq=row.seq, setpoint_mw=row.setpoint_mw, timestamp=row.timestamp)


def limits_for(session: Session, pool: str, at: datetime) -> PoolLimits:
    """The DSO limits and schedule in force in the ISP of ``at`` (all pools: they are few and groups many)."""
    rows = session.scalars(
        select(Commitment).where(Commitment.isp_start == floor_to_isp(at), Commitment.kind.in_(_LIMIT_KINDS))
    ).all()
    congestion: dict[str, float] = {}
    reduction: dict[str, float] = {}
    device: dict[str, float] = {}
    schedule: float | None = None
    for row in rows:
        if row.kind == CommitmentKind.CONGESTION_LIMIT.value:
            congestion[row.pool] = min(congestion.get(row.pool, row.power_kw), row.power_kw)
        elif row.kind == CommitmentKind.FLEX_ORDER.value:
            reduction[row.pool] = reduction.get(row.pool, 0.0) + row.power_kw
        elif row.kind == CommitmentKind.DEVICE_CURTAILMENT.value:
            device[row.pool] = min(device.get(row.pool, row.power_kw), row.power_kw)
        elif row.pool == pool:
            schedule = (schedule or 0.0) + row.power_kw
    return PoolLimits(congestion_max_kw=congestion, reduction_kw=reduction, device_max_kw=device,
                      schedule_kw=schedule)


def check_fence(session: Session, pool: str, fence: int, owner: str) -> None:
    """Refuse the write when a newer lease holder has written for the pool (fencing token).

    An equal fence passes only for the owner that wrote it: two dispatchers holding the same number (a lease store
    that restarted and counts from 1 again) must not both write.
    """
    result: Any = session.execute(
        update(DispatchFence)
        .where(DispatchFence.pool == pool,
               or_(DispatchFence.fence < fence, and_(DispatchFence.fence == fence, DispatchFence.owner == owner)))
        .values(fence=fence, owner=owner, updated_at=utcnow())
    )
    if result.rowcount:
        return
    current = session.get(DispatchFence, pool)
    if current is not None:
        raise StaleOwner(f"pool {pool} is owned by fence {current.fence} ({current.owner}); ours is {fence}")
    session.add(DispatchFence(pool=pool, fence=fence, owner=owner, updated_at=utcnow()))
    session.flush()


def last_writer(session: Session, pool: str) -> tuple[str, int] | None:
    """The dispatcher (owner, fence) that last wrote for the pool, if any."""
    row = session.get(DispatchFence, pool)
    return None if row is None else (row.owner, row.fence)


def record_cycle(
    session: Session, plan: CyclePlan, *, fence: int, owner: str, in_force: dict[str, float] | None = None
) -> str:
    """Persist a cycle after the fence check: the allocation and, once per 4-s step, the pool response."""
    check_fence(session, plan.pool, fence, owner)
    if plan.full and in_force is not None:
        items = {"s": list(in_force), "kw": [round(v, 3) for v in in_force.values()]}
    else:
        items = {"s": plan.send_ids, "kw": [round(v, 3) for v in plan.send_kw]}
    allocation = DispatchAllocation(
        pool=plan.pool, at=plan.at, setpoint_seq=plan.setpoint.seq, setpoint_mw=plan.setpoint.setpoint_mw,
        target_kw=plan.target_kw, total_kw=plan.total_kw, baseline_kw=plan.baseline_kw,
        measured_kw=plan.measured_kw, sessions=len(plan.session_ids), changed=len(plan.send_ids),
        full=plan.full, flags=plan.flags, items=items, owner=owner, fence=fence,
    )
    session.add(allocation)
    step = _step_start(plan.at)
    exists = session.scalar(select(PoolResponse.id).where(PoolResponse.pool == plan.pool, PoolResponse.at == step))
    if exists is None:
        supplied_kw = plan.measured_kw - plan.baseline_kw
        session.add(PoolResponse(
            pool=plan.pool, at=step, setpoint_seq=plan.setpoint.seq, requested_mw=plan.setpoint.setpoint_mw,
            supplied_mw=-supplied_kw / 1000.0, target_kw=plan.target_kw, measured_kw=plan.measured_kw,
            baseline_kw=plan.baseline_kw, supplied_kw=supplied_kw,
        ))
    session.flush()
    return allocation.id


def _step_start(at: datetime) -> datetime:
    epoch = at.timestamp()
    return at - timedelta(seconds=epoch % STEP.total_seconds())


def record_send(
    session: Session,
    *,
    allocation_id: str,
    pool: str,
    batch: str,
    sent_at: datetime,
    limits_kw: Sequence[float],
    outcomes: Iterable[LimitOutcome],
) -> None:
    """Persist one batch of limits and the outcomes the network returned."""
    done = list(outcomes)
    session.add(DispatchSend(
        allocation_id=allocation_id, pool=pool, batch=batch, sent_at=sent_at, completed_at=utcnow(),
        items={"s": [o.session_id for o in done], "kw": [round(v, 3) for v in limits_kw],
               "status": [o.status.value for o in done], "message": [o.message for o in done]},
    ))
    session.flush()


def limits_in_force(session: Session, pool: str) -> dict[str, float]:
    """The limits the pool's last owner left: the last full allocation overlaid with the later ones."""
    limits: dict[str, float] = {}
    for row in repository.allocations_since_last_full(session, pool):
        limits.update(zip(row.items.get("s", []), row.items.get("kw", []), strict=True))
    return limits


def limits_sent_at(session: Session, pool: str, until: datetime | None = None) -> dict[str, tuple[float, datetime]]:
    """Each session's limit in force and when it was sent (the cycle's time), as the pool's last owner left them;
    with ``until``, as the cycles up to that moment left them (not a later cycle's). Folded incrementally across
    calls (``LIMITS_SENT``): the same result as folding every cycle since the last full one."""
    return LIMITS_SENT.read(session, pool, until)


def _fold_sent(limits: dict[str, tuple[float, datetime]], rows: Iterable[Any]) -> None:
    """Overlay the allocation ``rows`` (oldest first) on ``limits``, in place."""
    for row in rows:
        for sid, kw in zip(row.items.get("s", []), row.items.get("kw", []), strict=True):
            old = limits.get(sid)
            # A full cycle restates the limits in force: keep when a limit was sent, not when it was restated.
            limits[sid] = (kw, old[1] if row.full and old is not None and old[0] == kw else row.at)


@dataclass
class _SentFold:
    last_full_at: datetime
    last_full_id: str | None
    # The fold of the ``before`` allocations from ``last_full_at`` up to (not including) ``boundary``, the latest
    # moment folded: those of that moment are read again by the next call, whatever committed since among them.
    boundary: datetime
    before: int
    limits: dict[str, tuple[float, datetime]]


class LimitsSentCache(KeptPerDatabase[dict[str, _SentFold]]):
    """The fold of a pool's cycles since its last full allocation, kept per database and pool between re-plans.

    Each re-plan asked for every cycle since the pool was taken (in a simulated day, every cycle of the run) and
    decoded their JSON again. The fold of the cycles before the latest moment already folded is kept; a later
    call with the same last full allocation (its moment and id), asked up to that moment or later, checks their
    count (one probe of
    the (pool, at) index: a cycle committed late among them, or one deleted, reads everything again), reads only
    the cycles from that moment on and folds them onto a copy, in the same order a whole read folds them.
    """

    def __init__(self) -> None:
        super().__init__()
        self.full_reads = 0
        self.partial_reads = 0

    def read(self, session: Session, pool: str, until: datetime | None) -> dict[str, tuple[float, datetime]]:
        """The limits in force up to ``until`` (None: now) with when each was sent."""
        last_full_at = repository.last_full_allocation_at(session, pool, until)
        if last_full_at is None:
            return {}
        last_full_id = repository.full_allocation_id(session, pool, last_full_at)
        bind = session.get_bind()
        with self._lock:
            kept = self._kept.get(bind, {}).get(pool)
        if (kept is not None and kept.last_full_at == last_full_at and kept.last_full_id == last_full_id
                and (until is None or until >= kept.boundary)
                and repository.count_allocations(session, pool, last_full_at, kept.boundary) == kept.before):
            self.partial_reads += 1
            rows = repository.allocations_from(session, pool, kept.boundary, until)
            limits, before = dict(kept.limits), kept.before
        else:
            self.full_reads += 1
            rows = repository.allocations_from(session, pool, last_full_at, until)
            limits, before = {}, 0
        if not rows:
            return limits
        boundary = rows[-1].at
        settled = [row for row in rows if row.at < boundary]
        _fold_sent(limits, settled)
        fold = _SentFold(last_full_at=last_full_at, last_full_id=last_full_id, boundary=boundary,
                         before=before + len(settled), limits=dict(limits))
        with self._lock:
            self._kept.setdefault(bind, {})[pool] = fold
        _fold_sent(limits, rows[len(settled):])
        return limits


LIMITS_SENT = LimitsSentCache()
