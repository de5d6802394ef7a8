"""Tables of the congestion feature: UFTP participants, the message log, the outbox, offers, orders, prognoses."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Index, Integer, Numeric, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from vpp.db import ID, Base, new_id, utcnow


class UftpParticipant(Base):
    """A DSO we trade with: its UFTP domain, public signing key and message endpoint."""

    __tablename__ = "uftp_participants"

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    domain: Mapped[str] = mapped_column(String(253), unique=True)
    role: Mapped[str] = mapped_column(String(8), default="DSO")
    public_key_b64: Mapped[str] = mapped_column(String(64))
    endpoint_url: Mapped[str] = mapped_column(String(500))
    penalty_eur_per_mw: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class UftpCongestionPoint(Base):
    """A congestion point (``ean.<digits>`` or an entity address) managed by one participant."""

    __tablename__ = "uftp_congestion_points"

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    congestion_point: Mapped[str] = mapped_column(String(120), unique=True)
    participant_id: Mapped[str] = mapped_column(ForeignKey("uftp_participants.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class UftpMessage(Base):
    """Every UFTP message in or out, as XML, with what became of it."""

    __tablename__ = "uftp_messages"
    __table_args__ = (
        UniqueConstraint("direction", "sender_domain", "message_id"),
        Index("ix_uftp_messages_conversation_id", "conversation_id"),
        Index("ix_uftp_messages_created_at", "created_at"),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    direction: Mapped[str] = mapped_column(String(8))
    message_type: Mapped[str] = mapped_column(String(40))
    message_id: Mapped[str] = mapped_column(String(64))
    conversation_id: Mapped[str] = mapped_column(String(64))
    sender_domain: Mapped[str] = mapped_column(String(253))
    recipient_domain: Mapped[str] = mapped_column(String(253))
    xml: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class UftpOutbox(Base):
    """Delivery state of one outgoing message: retried with back-off until delivered or given up."""

    __tablename__ = "uftp_outbox"
    __table_args__ = (Index("ix_uftp_outbox_status_next_attempt_at", "status", "next_attempt_at"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    message_row_id: Mapped[str] = mapped_column(ForeignKey("uftp_messages.id", ondelete="CASCADE"), unique=True)
    recipient_domain: Mapped[str] = mapped_column(String(253))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    claimed_until: Mapped[datetime | None] = mapped_column(default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    delivered_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class CongestionPrognosis(Base):
    """A D-Prognosis we sent: expected load per ISP of a congestion point's local day."""

    __tablename__ = "congestion_prognoses"
    __table_args__ = (UniqueConstraint("congestion_point", "period", "revision"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    message_id: Mapped[str] = mapped_column(String(64), unique=True)
    dso_domain: Mapped[str] = mapped_column(String(253))
    congestion_point: Mapped[str] = mapped_column(String(120))
    period: Mapped[date]
    revision: Mapped[int] = mapped_column(Integer)
    power_kw: Mapped[list[float]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class CongestionOffer(Base):
    """A FlexOffer we sent (one option): reduction per ISP at a total price."""

    __tablename__ = "congestion_offers"

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    message_id: Mapped[str] = mapped_column(String(64), unique=True)
    flex_request_message_id: Mapped[str] = mapped_column(String(64))
    conversation_id: Mapped[str] = mapped_column(String(64))
    dso_domain: Mapped[str] = mapped_column(String(253))
    congestion_point: Mapped[str] = mapped_column(String(120))
    period: Mapped[date]
    option_reference: Mapped[str] = mapped_column(String(64))
    price_eur: Mapped[Decimal] = mapped_column(Numeric(18, 4))
    min_activation_factor: Mapped[Decimal] = mapped_column(Numeric(4, 2))
    d_prognosis_message_id: Mapped[str | None] = mapped_column(String(64), default=None)
    isps: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    expires_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(16), default="offered")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class CongestionOrder(Base):
    """A FlexOrder we accepted and, later, how its settlement compared with ours."""

    __tablename__ = "congestion_orders"
    __table_args__ = (UniqueConstraint("dso_domain", "order_reference"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    message_id: Mapped[str] = mapped_column(String(64))
    order_reference: Mapped[str] = mapped_column(String(120))
    offer_id: Mapped[str] = mapped_column(ForeignKey("congestion_offers.id"))
    dso_domain: Mapped[str] = mapped_column(String(253))
    congestion_point: Mapped[str] = mapped_column(String(120))
    period: Mapped[date]
    price_eur: Mapped[Decimal] = mapped_column(Numeric(18, 4))
    activation_factor: Mapped[Decimal] = mapped_column(Numeric(4, 2))
    isps: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    settlement_status: Mapped[str] = mapped_column(String(16), default="open")
    settlement_reason: Mapped[str | None] = mapped_column(Text, default=None)
    settlement_message_id: Mapped[str | None] = mapped_column(String(64), default=None)
    our_net_eur: Mapped[float | None] = mapped_column(Float, default=None)
    their_net_eur: Mapped[float | None] = mapped_column(Float, default=None)
    settled_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
