"""Queries of activations: small, indexed, one purpose each (the intake path runs them every 4 s per pool)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from vpp.activations.tables import AfrrSetpoint, DispatchAllocation, PoolResponse
from vpp.commitments.tables import Commitment
from vpp.domain.commitments import CommitmentKind


def capacities_kw(session: Session, pool: str, isp_start: datetime) -> dict[str, float] | None:
    """The awarded aFRR capacity up/down (kW) of ``pool`` in the ISP; None when the pool has no such award."""
    rows = session.execute(
        select(Commitment.kind, func.sum(Commitment.power_kw))
        .where(
            Commitment.pool == pool,
            Commitment.isp_start == isp_start,
            Commitment.kind.in_([CommitmentKind.AFRR_CAPACITY_UP.value, CommitmentKind.AFRR_CAPACITY_DOWN.value]),
        )
        .group_by(Commitment.kind)
    ).all()
    if not rows:
        return None
    return {str(kind): float(total or 0.0) for kind, total in rows}


def pool_known(session: Session, pool: str) -> bool:
    """True when any commitment names the pool (the pool directory until the portfolio offers one)."""
    return session.scalar(select(Commitment.id).where(Commitment.pool == pool).limit(1)) is not None


def max_seq(session: Session, pool: str) -> int | None:
    """The highest setpoint sequence number received for the pool."""
    return session.scalar(select(func.max(AfrrSetpoint.seq)).where(AfrrSetpoint.pool == pool))


def insert_setpoint_if_new(session: Session, values: dict[str, Any]) -> bool:
    """Insert a setpoint unless (pool, seq) exists; True when inserted (one statement, race-free)."""
    dialect = session.get_bind().dialect.name
    stmt: Any
    if dialect == "postgresql":
        stmt = postgresql.insert(AfrrSetpoint).values(**values).on_conflict_do_nothing()
    elif dialect == "sqlite":
        stmt = sqlite.insert(AfrrSetpoint).values(**values).on_conflict_do_nothing()
    else:  # pragma: no cover - only the two supported backends
        stmt = insert(AfrrSetpoint).values(**values)
    # RETURNING, not rowcount: psycopg does not report 0 rows for ON CONFLICT DO NOTHING reliably.
    return session.execute(stmt.returning(AfrrSetpoint.id)).scalar() is not None


def get_setpoint(session: Session, pool: str, seq: int) -> AfrrSetpoint | None:
    """The stored setpoint (pool, seq)."""
    return session.scalar(select(AfrrSetpoint).where(AfrrSetpoint.pool == pool, AfrrSetpoint.seq == seq))


def latest_setpoint(session: Session, pool: str) -> AfrrSetpoint | None:
    """The setpoint with the highest sequence number: a late older one never overrides it."""
    return session.scalar(
        select(AfrrSetpoint).where(AfrrSetpoint.pool == pool).order_by(AfrrSetpoint.seq.desc()).limit(1)
    )


def responses(session: Session, pool: str, start: datetime, end: datetime) -> Sequence[PoolResponse]:
    """The pool's response steps in [start, end), in time order."""
    return session.scalars(
        select(PoolResponse)
        .where(PoolResponse.pool == pool, PoolResponse.at >= start, PoolResponse.at < end)
        .order_by(PoolResponse.at)
    ).all()


def allocations_since_last_full(session: Session, pool: str) -> Sequence[DispatchAllocation]:
    """The pool's last full allocation and every later one, oldest first (the limits now in force)."""
    last_full_at = session.scalar(
        select(func.max(DispatchAllocation.at)).where(DispatchAllocation.pool == pool, DispatchAllocation.full)
    )
    if last_full_at is None:
        return []
    return session.scalars(
        select(DispatchAllocation)
        .where(DispatchAllocation.pool == pool, DispatchAllocation.at >= last_full_at)
        .order_by(DispatchAllocation.at, DispatchAllocation.full.desc())
    ).all()
