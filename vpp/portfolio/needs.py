"""Use cases of charging needs: explicit needs from eMSPs and apps, car-sharing bookings."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from vpp.db import utcnow
from vpp.domain.errors import InvalidInput, NotFound
from vpp.locations.service import connector_info
from vpp.portfolio.fleet import DEFAULT_MAX_KW
from vpp.portfolio.tables import Booking, ChargingNeedRow
from vpp.sessions.tables import ChargingSession


@dataclass(frozen=True, slots=True)
class NeedInput:
    """A stated need: departure, and the energy (kWh) or target state of charge (%), V2G consent, SoC floor."""

    departure: datetime
    energy_kwh: float | None = None
    target_soc_pct: float | None = None
    battery_kwh: float | None = None
    discharge_allowed: bool = False
    min_soc_pct: float | None = None


@dataclass(frozen=True, slots=True)
class NeedAssessment:
    """A stored need and whether it can be met by departure at the connector's maximum power."""

    need: ChargingNeedRow
    max_kw: float
    max_deliverable_kwh: float
    remaining_kwh: float | None
    feasible: bool


def _check(need: NeedInput, now: datetime) -> None:
    if need.departure.tzinfo is None:
        raise InvalidInput("departure must carry a time zone (e.g. 2025-06-01T17:00:00Z)")
    if need.departure <= now:
        raise InvalidInput(f"departure {need.departure.isoformat()} is in the past")
    if need.energy_kwh is None and need.target_soc_pct is None:
        raise InvalidInput("give energy_kwh or target_soc_pct")
    if need.energy_kwh is not None and (not math.isfinite(need.energy_kwh) or need.energy_kwh < 0):
        raise InvalidInput(f"energy_kwh must be a non-negative number, got {need.energy_kwh}")
    for name, pct in (("target_soc_pct", need.target_soc_pct), ("min_soc_pct", need.min_soc_pct)):
        if pct is not None and not 0 <= pct <= 100:
            raise InvalidInput(f"{name} must be within 0..100, got {pct}")
    if need.target_soc_pct is not None and need.battery_kwh is None:
        raise InvalidInput("target_soc_pct needs battery_kwh")
    if need.battery_kwh is not None and not (math.isfinite(need.battery_kwh) and need.battery_kwh > 0):
        raise InvalidInput(f"battery_kwh must be positive, got {need.battery_kwh}")
    if need.discharge_allowed and (need.battery_kwh is None or need.min_soc_pct is None):
        raise InvalidInput("discharge_allowed needs battery_kwh and min_soc_pct (the floor to keep)")
    if (need.min_soc_pct is not None and need.target_soc_pct is not None
            and need.min_soc_pct > need.target_soc_pct):
        raise InvalidInput("min_soc_pct cannot exceed target_soc_pct")


def put_need(db: Session, session_id: str, need: NeedInput, *, now: datetime | None = None) -> NeedAssessment:
    """Store a session's explicit need; an unmeetable one is kept and flagged with the most that can be delivered."""
    now = now or utcnow()
    charging = db.get(ChargingSession, session_id)
    if charging is None:
        raise NotFound(f"session {session_id!r} does not exist")
    if charging.status != "active":
        raise InvalidInput(f"session {session_id!r} is {charging.status}, not active")
    _check(need, now)
    row = db.get(ChargingNeedRow, session_id)
    if row is None:
        row = ChargingNeedRow(session_id=session_id, departure_at=need.departure)
        db.add(row)
    row.departure_at = need.departure
    row.energy_kwh = need.energy_kwh
    row.target_soc_pct = need.target_soc_pct
    row.battery_kwh = need.battery_kwh
    row.discharge_allowed = need.discharge_allowed
    row.min_soc_pct = need.min_soc_pct
    row.source = "explicit"
    row.confidence = 1.0
    row.updated_at = now
    db.flush()
    info = connector_info(db, charging.connection_id, charging.location_id, charging.evse_uid, charging.connector_id)
    max_kw = info.max_power_kw if info is not None else DEFAULT_MAX_KW
    deliverable = max_kw * (need.departure - now).total_seconds() / 3600.0
    remaining = None if need.energy_kwh is None else max(need.energy_kwh - charging.energy_kwh, 0.0)
    feasible = remaining is None or remaining <= deliverable + 1e-9
    return NeedAssessment(need=row, max_kw=max_kw, max_deliverable_kwh=round(deliverable, 3),
                          remaining_kwh=remaining, feasible=feasible)


def get_need(db: Session, session_id: str) -> ChargingNeedRow:
    """A session's explicit need, or NotFound."""
    row = db.get(ChargingNeedRow, session_id)
    if row is None:
        raise NotFound(f"session {session_id!r} has no explicit charging need")
    return row


@dataclass(frozen=True, slots=True)
class BookingInput:
    """A car-sharing booking of a car (identified by its charging token's uid)."""

    vehicle_id: str
    vehicle_token_uid: str
    start: datetime
    end: datetime
    energy_kwh: float | None = None
    cancelled: bool = False


def put_booking(db: Session, booking_id: str, booking: BookingInput) -> Booking:
    """Create or replace a booking; the car's next booking sets its session's departure."""
    if not booking_id.strip():
        raise InvalidInput("booking id must not be empty")
    if booking.start.tzinfo is None or booking.end.tzinfo is None:
        raise InvalidInput("start and end must carry a time zone")
    if booking.end <= booking.start:
        raise InvalidInput("end must be after start")
    if booking.energy_kwh is not None and booking.energy_kwh < 0:
        raise InvalidInput("energy_kwh must not be negative")
    if not booking.vehicle_token_uid.strip():
        raise InvalidInput("vehicle_token_uid must not be empty")
    row = db.get(Booking, booking_id)
    if row is None:
        row = Booking(id=booking_id, vehicle_id=booking.vehicle_id, vehicle_key="", start_at=booking.start,
                      end_at=booking.end)
        db.add(row)
    row.vehicle_id = booking.vehicle_id
    row.vehicle_key = booking.vehicle_token_uid.strip().casefold()
    row.start_at, row.end_at = booking.start, booking.end
    row.energy_kwh, row.cancelled = booking.energy_kwh, booking.cancelled
    row.updated_at = utcnow()
    db.flush()
    return row
