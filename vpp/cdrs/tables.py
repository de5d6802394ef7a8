"""Tables of charge detail records."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from vpp.db import ID, Base, new_id, utcnow


class ChargeDetailRecord(Base):
    """A CDR as received; credit CDRs point at the CDR they reverse."""

    __tablename__ = "charge_detail_records"
    __table_args__ = (
        Index("uq_charge_detail_records_connection_party_external", "connection_id", "party_key", "external_key",
              unique=True),
        Index("ix_charge_detail_records_session_id", "session_id"),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    connection_id: Mapped[str] = mapped_column(ForeignKey("ocpi_connections.id"))
    country_code: Mapped[str] = mapped_column(String(2))
    party_id: Mapped[str] = mapped_column(String(3))
    party_key: Mapped[str] = mapped_column(String(6))
    external_id: Mapped[str] = mapped_column(String(39))
    external_key: Mapped[str] = mapped_column(String(39))
    session_external_id: Mapped[str | None] = mapped_column(String(36), default=None)
    session_id: Mapped[str | None] = mapped_column(ForeignKey("charging_sessions.id"), default=None)
    start_at: Mapped[datetime]
    end_at: Mapped[datetime]
    energy_kwh: Mapped[float] = mapped_column(Float)
    total_time_h: Mapped[float] = mapped_column(Float)
    parking_time_h: Mapped[float | None] = mapped_column(Float, default=None)
    currency: Mapped[str] = mapped_column(String(3))
    total_cost_excl_vat: Mapped[float] = mapped_column(Float)
    total_cost_incl_vat: Mapped[float | None] = mapped_column(Float, default=None)
    credit: Mapped[bool] = mapped_column(Boolean, default=False)
    credit_reference_id: Mapped[str | None] = mapped_column(String(39), default=None)
    credited_by: Mapped[str | None] = mapped_column(String(32), default=None)
    location_id: Mapped[str] = mapped_column(String(36))
    evse_uid: Mapped[str] = mapped_column(String(36))
    connector_id: Mapped[str] = mapped_column(String(36))
    last_updated: Mapped[datetime]
    document: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
