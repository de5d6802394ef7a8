"""Tables of locations, EVSEs and connectors; ids keep the CPO's spelling, keys are case-folded copies."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from vpp.db import ID, Base, new_id


class ChargingLocation(Base):
    """A CPO's charging location."""

    __tablename__ = "charging_locations"
    __table_args__ = (
        Index("uq_charging_locations_connection_party_external", "connection_id", "party_key", "external_key",
              unique=True),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    connection_id: Mapped[str] = mapped_column(ForeignKey("ocpi_connections.id"))
    country_code: Mapped[str] = mapped_column(String(2))
    party_id: Mapped[str] = mapped_column(String(3))
    party_key: Mapped[str] = mapped_column(String(6))
    external_id: Mapped[str] = mapped_column(String(36))
    external_key: Mapped[str] = mapped_column(String(36))
    publish: Mapped[bool] = mapped_column(Boolean, default=True)
    name: Mapped[str | None] = mapped_column(String(255), default=None)
    address: Mapped[str] = mapped_column(String(45))
    city: Mapped[str] = mapped_column(String(45))
    postal_code: Mapped[str | None] = mapped_column(String(10), default=None)
    country: Mapped[str] = mapped_column(String(3))
    latitude: Mapped[str] = mapped_column(String(10))
    longitude: Mapped[str] = mapped_column(String(11))
    time_zone: Mapped[str] = mapped_column(String(255))
    last_updated: Mapped[datetime]


class ChargingEvse(Base):
    """An EVSE of a location."""

    __tablename__ = "charging_evses"
    __table_args__ = (Index("uq_charging_evses_location_uid", "location_pk", "uid_key", unique=True),)

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    location_pk: Mapped[str] = mapped_column(ForeignKey("charging_locations.id"))
    uid: Mapped[str] = mapped_column(String(36))
    uid_key: Mapped[str] = mapped_column(String(36))
    evse_id: Mapped[str | None] = mapped_column(String(48), default=None)
    status: Mapped[str] = mapped_column(String(16))
    capabilities: Mapped[list[str]] = mapped_column(JSON, default=list)
    charging_profile_capable: Mapped[bool] = mapped_column(Boolean, default=False)
    last_updated: Mapped[datetime]


class ChargingConnector(Base):
    """A connector of an EVSE, with its power type and maximum power."""

    __tablename__ = "charging_connectors"
    __table_args__ = (Index("uq_charging_connectors_evse_external", "evse_pk", "external_key", unique=True),)

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    evse_pk: Mapped[str] = mapped_column(ForeignKey("charging_evses.id"))
    external_id: Mapped[str] = mapped_column(String(36))
    external_key: Mapped[str] = mapped_column(String(36))
    power_type: Mapped[str] = mapped_column(String(20))
    phases: Mapped[int] = mapped_column(Integer)
    max_voltage_v: Mapped[int] = mapped_column(Integer)
    max_current_a: Mapped[int] = mapped_column(Integer)
    rated_power_kw: Mapped[float | None] = mapped_column(Float, default=None)
    max_power_kw: Mapped[float] = mapped_column(Float)
    standard: Mapped[str] = mapped_column(String(40))
    format: Mapped[str] = mapped_column(String(8))
    last_updated: Mapped[datetime]
