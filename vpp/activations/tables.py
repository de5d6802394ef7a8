"""Tables of activations: setpoints received, allocations made, limits sent, pool response, dispatch fences."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Float, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from vpp.db import ID, Base, new_id, utcnow


class AfrrSetpoint(Base):
    """One aFRR setpoint as received (MW, positive = upward = less consumption), with what we apply of it."""

    __tablename__ = "afrr_setpoints"
    __table_args__ = (UniqueConstraint("pool", "seq"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    pool: Mapped[str] = mapped_column(String(120))
    seq: Mapped[int] = mapped_column(BigInteger)
    timestamp: Mapped[datetime]
    requested_mw: Mapped[float] = mapped_column(Float)
    setpoint_mw: Mapped[float] = mapped_column(Float)
    clipped: Mapped[bool] = mapped_column(Boolean, default=False)
    capacity_up_mw: Mapped[float] = mapped_column(Float)
    capacity_down_mw: Mapped[float] = mapped_column(Float)
    stale: Mapped[bool] = mapped_column(Boolean, default=False)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class DispatchAllocation(Base):
    """One dispatcher cycle of a pool: its target, totals and flags, and the limits it changed.

    ``items`` holds ``{"s": [session ids], "kw": [limits]}``: every limit when ``full`` (the first cycle of an
    owner), else only the limits that moved beyond the deadband; the limits in force at any time are the
    last full row plus the later rows.
    """

    __tablename__ = "dispatch_allocations"
    __table_args__ = (Index("ix_dispatch_allocations_pool_at", "pool", "at"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    pool: Mapped[str] = mapped_column(String(120))
    at: Mapped[datetime]
    setpoint_seq: Mapped[int | None] = mapped_column(BigInteger, default=None)
    setpoint_mw: Mapped[float] = mapped_column(Float)
    target_kw: Mapped[float] = mapped_column(Float)
    total_kw: Mapped[float] = mapped_column(Float)
    baseline_kw: Mapped[float] = mapped_column(Float)
    measured_kw: Mapped[float] = mapped_column(Float)
    sessions: Mapped[int] = mapped_column(Integer)
    changed: Mapped[int] = mapped_column(Integer)
    full: Mapped[bool] = mapped_column(Boolean, default=False)
    flags: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    items: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    owner: Mapped[str] = mapped_column(String(64))
    fence: Mapped[int] = mapped_column(BigInteger)


class DispatchSend(Base):
    """One batch of limits sent to the charge-point network and the outcomes that came back.

    ``items`` holds ``{"s": [...], "kw": [...], "status": [...], "message": [...]}`` aligned per session.
    """

    __tablename__ = "dispatch_sends"
    __table_args__ = (Index("ix_dispatch_sends_pool_sent_at", "pool", "sent_at"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    allocation_id: Mapped[str] = mapped_column(ID)
    pool: Mapped[str] = mapped_column(String(120))
    batch: Mapped[str] = mapped_column(String(120))
    sent_at: Mapped[datetime]
    completed_at: Mapped[datetime]
    items: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class PoolResponse(Base):
    """A pool's aFRR response in one 4-second step.

    ``requested_mw`` and ``supplied_mw`` use the aFRR sign (positive = upward = less consumption);
    ``measured_kw``, ``baseline_kw`` and ``supplied_kw = measured_kw - baseline_kw`` use the consumption sign.
    """

    __tablename__ = "pool_responses"
    __table_args__ = (UniqueConstraint("pool", "at"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    pool: Mapped[str] = mapped_column(String(120))
    at: Mapped[datetime]
    setpoint_seq: Mapped[int | None] = mapped_column(BigInteger, default=None)
    requested_mw: Mapped[float] = mapped_column(Float)
    supplied_mw: Mapped[float] = mapped_column(Float)
    target_kw: Mapped[float] = mapped_column(Float)
    measured_kw: Mapped[float] = mapped_column(Float)
    baseline_kw: Mapped[float] = mapped_column(Float)
    supplied_kw: Mapped[float] = mapped_column(Float)


class DispatchFence(Base):
    """The highest lease fence that has written for a pool; a write with a lower fence is refused."""

    __tablename__ = "dispatch_fences"

    pool: Mapped[str] = mapped_column(String(120), primary_key=True)
    fence: Mapped[int] = mapped_column(BigInteger)
    owner: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
