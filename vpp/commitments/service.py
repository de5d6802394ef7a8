"""Use cases of commitments: record what was awarded or ordered, read what a pool must do."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from vpp.commitments.tables import Commitment
from vpp.db import utcnow
from vpp.domain.commitments import CommitmentKind, CommitmentValue
from vpp.domain.errors import InvalidInput
from vpp.domain.pools import PoolId


def _check(value: CommitmentValue) -> None:
    PoolId.parse(value.pool)
    if value.isp_start.tzinfo is None:
        raise InvalidInput("isp_start must be timezone-aware")
    if value.isp_start.minute % 15 or value.isp_start.second or value.isp_start.microsecond:
        raise InvalidInput(f"isp_start {value.isp_start.isoformat()} is not on the 15-minute grid")
    magnitude_kinds = {CommitmentKind.AFRR_CAPACITY_UP, CommitmentKind.AFRR_CAPACITY_DOWN, CommitmentKind.FLEX_ORDER}
    if value.kind in magnitude_kinds and value.power_kw < 0:
        raise InvalidInput(f"{value.kind.value} is a magnitude and cannot be negative")
    if value.kind is CommitmentKind.DEVICE_CURTAILMENT and value.power_kw < 4.2:
        raise InvalidInput("a device curtailment may not go below 4.2 kW per device (§14a floor)")


def record(session: Session, values: Iterable[CommitmentValue]) -> int:
    """Insert or replace commitments (idempotent per pool, ISP, kind and reference); returns how many."""
    items = list(values)
    for value in items:
        _check(value)
    if not items:
        return 0
    pools = {v.pool for v in items}
    starts = [v.isp_start for v in items]
    existing = {
        (c.pool, c.isp_start, c.kind, c.reference): c
        for c in session.scalars(
            select(Commitment).where(
                Commitment.pool.in_(pools),
                Commitment.isp_start >= min(starts),
                Commitment.isp_start <= max(starts),
            )
        )
    }
    now = utcnow()
    for value in items:
        row = existing.get((value.pool, value.isp_start, value.kind.value, value.reference))
        if row is None:
            session.add(
                Commitment(pool=value.pool, isp_start=value.isp_start, kind=value.kind.value,
                           power_kw=value.power_kw, price_eur_per_mwh=value.price_eur_per_mwh,
                           source=value.source, reference=value.reference, created_at=now, updated_at=now)
            )
        else:
            row.power_kw = value.power_kw
            row.price_eur_per_mwh = value.price_eur_per_mwh
            row.source = value.source
            row.updated_at = now
    session.flush()
    return len(items)


def list_for(session: Session, pools: Sequence[str], start: datetime, end: datetime,
             kinds: Sequence[CommitmentKind] | None = None) -> list[CommitmentValue]:
    """The commitments of ``pools`` for ISPs starting in [start, end), ordered by ISP."""
    stmt = select(Commitment).where(
        Commitment.pool.in_(list(pools)), Commitment.isp_start >= start, Commitment.isp_start < end
    )
    if kinds:
        stmt = stmt.where(Commitment.kind.in_([k.value for k in kinds]))
    rows = session.scalars(stmt.order_by(Commitment.isp_start, Commitment.pool, Commitment.kind))
    return [
        CommitmentValue(pool=r.pool, isp_start=r.isp_start, kind=CommitmentKind(r.kind), power_kw=r.power_kw,
                        source=r.source, reference=r.reference, price_eur_per_mwh=r.price_eur_per_mwh)
        for r in rows
    ]
