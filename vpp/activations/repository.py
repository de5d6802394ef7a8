"""Queries of activations: small, indexed, one purpose each (the intake path runs them every 4 s per pool)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, TextClause, bindparam, func, insert, select, text
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


_INSERT_ALONE = text("""
WITH award AS (
    SELECT COALESCE(SUM(power_kw) FILTER (WHERE kind = :up_kind), 0.0) AS up_kw,
           COALESCE(SUM(power_kw) FILTER (WHERE kind = :down_kind), 0.0) AS down_kw,
           COUNT(*) AS n
    FROM commitments WHERE pool = :pool AND isp_start = :isp_start AND kind IN (:up_kind, :down_kind)
),
newest AS (SELECT MAX(seq) AS seq FROM afrr_setpoints WHERE pool = :pool),
known AS (
    SELECT award.up_kw / 1000.0 AS up_mw, award.down_kw / 1000.0 AS down_mw,
           newest.seq IS NOT NULL AND CAST(:seq AS bigint) < newest.seq AS stale
    FROM award, newest
    WHERE award.n > 0 OR EXISTS (SELECT 1 FROM commitments WHERE pool = :pool)
),
inserted AS (
    INSERT INTO afrr_setpoints (id, pool, seq, timestamp, requested_mw, setpoint_mw, clipped, capacity_up_mw,
                                capacity_down_mw, stale, received_at)
    SELECT :id, :pool, :seq, :timestamp, CAST(:requested_mw AS float8),
           LEAST(GREATEST(CAST(:requested_mw AS float8), -known.down_mw), known.up_mw),
           LEAST(GREATEST(CAST(:requested_mw AS float8), -known.down_mw), known.up_mw) <> CAST(:requested_mw AS float8),
           known.up_mw, known.down_mw, known.stale, :received_at
    FROM known
    ON CONFLICT DO NOTHING
    RETURNING setpoint_mw, clipped, capacity_up_mw, capacity_down_mw, stale
)
SELECT EXISTS (SELECT 1 FROM known) AS known, inserted.setpoint_mw, inserted.clipped, inserted.capacity_up_mw,
       inserted.capacity_down_mw, inserted.stale
FROM (SELECT 1) AS one LEFT JOIN inserted ON true""")


def _insert_alone_statement() -> TextClause:
    column = AfrrSetpoint.__table__.c
    return _INSERT_ALONE.bindparams(
        bindparam("isp_start", type_=column.timestamp.type), bindparam("timestamp", type_=column.timestamp.type),
        bindparam("received_at", type_=column.received_at.type),
    )


def insert_setpoint_alone(session: Session, values: dict[str, Any], isp_start: datetime) -> tuple[bool, Any]:
    """PostgreSQL: read the pool's award and newest seq and insert the setpoint, in one statement that commits
    itself (one round trip, where the steps one by one took five). (pool known, the inserted row's computed
    values or None when (pool, seq) existed). The session must be fresh."""
    connection = session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
    row = connection.execute(
        _insert_alone_statement(),
        {**values, "isp_start": isp_start, "up_kind": CommitmentKind.AFRR_CAPACITY_UP.value,
         "down_kind": CommitmentKind.AFRR_CAPACITY_DOWN.value},
    ).one()
    return bool(row[0]), (row[1:] if row[1] is not None else None)


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


def allocations_since_last_full(session: Session, pool: str,
                                until: datetime | None = None) -> Sequence[Row[tuple[datetime, bool, dict[str, Any]]]]:
    """The ``at``, ``full`` and ``items`` of the pool's last full allocation and every later one, oldest first (the
    limits now in force); with ``until``, only the cycles up to that moment (the limits in force then).

    Only those columns: a dispatcher writes a full allocation when it takes the pool, so these are every cycle
    since, read by every re-plan.
    """
    last_full_at = last_full_allocation_at(session, pool, until)
    if last_full_at is None:
        return []
    return allocations_from(session, pool, last_full_at, until)


def last_full_allocation_at(session: Session, pool: str, until: datetime | None = None) -> datetime | None:
    """When the pool's last full allocation (up to ``until``) was made; None without one."""
    earlier = [] if until is None else [DispatchAllocation.at <= until]
    return session.scalar(
        select(func.max(DispatchAllocation.at)).where(DispatchAllocation.pool == pool, DispatchAllocation.full,
                                                      *earlier)
    )


def allocations_from(session: Session, pool: str, start: datetime,
                     until: datetime | None = None) -> Sequence[Row[tuple[datetime, bool, dict[str, Any]]]]:
    """The ``at``, ``full`` and ``items`` of the pool's allocations from ``start`` (up to ``until``), oldest first
    and a full one first among those of one moment."""
    earlier = [] if until is None else [DispatchAllocation.at <= until]
    return session.execute(
        select(DispatchAllocation.at, DispatchAllocation.full, DispatchAllocation.items)
        .where(DispatchAllocation.pool == pool, DispatchAllocation.at >= start, *earlier)
        .order_by(DispatchAllocation.at, DispatchAllocation.full.desc())
    ).all()


def full_allocation_id(session: Session, pool: str, at: datetime) -> str | None:
    """The least id among the pool's full allocations at ``at`` (ids are never reused: a pool's cycles deleted and
    written again from the same moment have other ids)."""
    return session.scalar(
        select(func.min(DispatchAllocation.id)).where(DispatchAllocation.pool == pool, DispatchAllocation.full,
                                                      DispatchAllocation.at == at)
    )


def count_allocations(session: Session, pool: str, start: datetime, end: datetime) -> int:
    """How many allocations the pool has from ``start`` up to (not including) ``end`` (one probe of its index)."""
    return int(session.scalar(
        select(func.count()).select_from(DispatchAllocation)
        .where(DispatchAllocation.pool == pool, DispatchAllocation.at >= start, DispatchAllocation.at < end)
    ) or 0)
