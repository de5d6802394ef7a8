"""Tables of the bids feature: drafts and their audit log."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Date, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from vpp.db import ID, Base, new_id, utcnow


class Bid(Base):
    """One bid of one pool for one market, product and period, from draft to awarded."""

    __tablename__ = "bids"
    __table_args__ = (
        UniqueConstraint("market", "product", "pool", "period_start", "period_end"),
        Index("ix_bids_market_pool_status", "market", "pool", "status"),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    market: Mapped[str] = mapped_column(String(16))
    product: Mapped[str] = mapped_column(String(32))
    pool: Mapped[str] = mapped_column(String(120))
    period_start: Mapped[datetime]
    period_end: Mapped[datetime]
    delivery_day: Mapped[date | None] = mapped_column(Date, default=None)
    status: Mapped[str] = mapped_column(String(16), default="draft")
    version: Mapped[int] = mapped_column(Integer, default=1)
    edited: Mapped[bool] = mapped_column(Boolean, default=False)
    gate_closure_at: Mapped[datetime]
    content: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    submitted_at: Mapped[datetime | None] = mapped_column(default=None)
    awarded_at: Mapped[datetime | None] = mapped_column(default=None)


class BidAudit(Base):
    """One action on a bid: who, what, when, and the values before and after."""

    __tablename__ = "bid_audit"
    __table_args__ = (Index("ix_bid_audit_bid_id_at", "bid_id", "at"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    bid_id: Mapped[str] = mapped_column(ID, ForeignKey("bids.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    action: Mapped[str] = mapped_column(String(32))
    actor_key_id: Mapped[str | None] = mapped_column(String(32), default=None)
    actor_name: Mapped[str] = mapped_column(String(200))
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
