"""Tables of charging sessions, their readings and the limit requests sent for them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from vpp.db import ID, Base, new_id, utcnow


class ChargingSession(Base):
    """A charging session on a CPO's EVSE; ids keep the CPO's spelling, the keys are case-folded copies."""

    __tablename__ = "charging_sessions"
    __table_args__ = (
        Index(
            "uq_charging_sessions_connection_external_party",
            "connection_id", "external_key", "party_key", unique=True,
        ),
        Index("ix_charging_sessions_status_connection", "status", "connection_id"),
        Index("ix_charging_sessions_start_at", "start_at"),
        # The oldest active session's start (the flexibility read's lower bound on readings) in one probe: with
        # start_at alone, the probe walked every completed session before the first active one.
        Index("ix_charging_sessions_status_start_at", "status", "start_at"),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    connection_id: Mapped[str] = mapped_column(ForeignKey("ocpi_connections.id"))
    country_code: Mapped[str] = mapped_column(String(2))
    party_id: Mapped[str] = mapped_column(String(3))
    party_key: Mapped[str] = mapped_column(String(6))
    external_id: Mapped[str] = mapped_column(String(36))
    external_key: Mapped[str] = mapped_column(String(36))
    status: Mapped[str] = mapped_column(String(16))
    start_at: Mapped[datetime]
    end_at: Mapped[datetime | None] = mapped_column(default=None)
    energy_kwh: Mapped[float] = mapped_column(Float, default=0.0)
    location_id: Mapped[str] = mapped_column(String(36))
    evse_uid: Mapped[str] = mapped_column(String(36))
    connector_id: Mapped[str] = mapped_column(String(36))
    currency: Mapped[str] = mapped_column(String(3))
    meter_id: Mapped[str | None] = mapped_column(String(255), default=None)
    auth_method: Mapped[str | None] = mapped_column(String(16), default=None)
    authorization_reference: Mapped[str | None] = mapped_column(String(36), default=None)
    driver_token: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    total_cost_excl_vat: Mapped[float | None] = mapped_column(Float, default=None)
    total_cost_incl_vat: Mapped[float | None] = mapped_column(Float, default=None)
    last_updated: Mapped[datetime]
    active_limit: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, default=None)
    active_limit_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class SessionReading(Base):
    """One measured period of a session; the primary key de-duplicates periods by start time."""

    __tablename__ = "session_readings"
    __table_args__ = (Index("ix_session_readings_start_at", "start_at"),)

    session_id: Mapped[str] = mapped_column(ForeignKey("charging_sessions.id"), primary_key=True)
    start_at: Mapped[datetime] = mapped_column(primary_key=True)
    power_kw: Mapped[float | None] = mapped_column(Float, default=None)
    energy_kwh: Mapped[float | None] = mapped_column(Float, default=None)
    soc_pct: Mapped[float | None] = mapped_column(Float, default=None)
    current_a: Mapped[float | None] = mapped_column(Float, default=None)
    extra: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)


class LimitRequest(Base):
    """One request to set or clear a session's power limit at its CPO, with every answer it got."""

    __tablename__ = "charging_profile_requests"
    __table_args__ = (
        Index("ix_charging_profile_requests_session_created", "session_id", "created_at"),
        Index("ix_charging_profile_requests_status_deadline", "status", "deadline_at"),
        # Outstanding requests of given sessions, and sessions backing off, without walking each session's history.
        Index("ix_charging_profile_requests_session_status", "session_id", "status"),
        Index("ix_charging_profile_requests_retry_at", "retry_at"),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    session_id: Mapped[str] = mapped_column(ForeignKey("charging_sessions.id"))
    connection_id: Mapped[str] = mapped_column(ForeignKey("ocpi_connections.id"))
    kind: Mapped[str] = mapped_column(String(8))
    requested_limit_kw: Mapped[float | None] = mapped_column(Float, default=None)
    limit_kw: Mapped[float | None] = mapped_column(Float, default=None)
    sent_limit: Mapped[float | None] = mapped_column(Float, default=None)
    sent_unit: Mapped[str | None] = mapped_column(String(1), default=None)
    clipped: Mapped[bool] = mapped_column(Boolean, default=False)
    valid_until: Mapped[datetime | None] = mapped_column(default=None)
    status: Mapped[str] = mapped_column(String(16), default="sending")
    answer: Mapped[str | None] = mapped_column(String(16), default=None)
    result: Mapped[str | None] = mapped_column(String(16), default=None)
    timeout_s: Mapped[int | None] = mapped_column(Integer, default=None)
    deadline_at: Mapped[datetime | None] = mapped_column(default=None)
    backoff_s: Mapped[float | None] = mapped_column(Float, default=None)
    retry_at: Mapped[datetime | None] = mapped_column(default=None)
    message: Mapped[str | None] = mapped_column(String(500), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    answered_at: Mapped[datetime | None] = mapped_column(default=None)
    result_at: Mapped[datetime | None] = mapped_column(default=None)
