"""Domain values of charging sessions, in the domain's words and units (kW, kWh, %, A; UTC)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

SESSION_STATUSES = ("active", "completed", "invalid", "pending", "reservation")


@dataclass(frozen=True, slots=True)
class Reading:
    """What was measured from ``start`` until the next reading (power positive = charging)."""

    start: datetime
    power_kw: float | None = None
    energy_kwh: float | None = None
    soc_pct: float | None = None
    current_a: float | None = None
    extra: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A whole session as its CPO describes it (a create or a full replacement)."""

    country_code: str
    party_id: str
    external_id: str
    status: str
    start: datetime
    energy_kwh: float
    location_id: str
    evse_uid: str
    connector_id: str
    currency: str
    last_updated: datetime
    end: datetime | None = None
    meter_id: str | None = None
    auth_method: str | None = None
    authorization_reference: str | None = None
    driver_token: dict[str, Any] = field(default_factory=dict)
    total_cost_excl_vat: float | None = None
    total_cost_incl_vat: float | None = None
    readings: tuple[Reading, ...] = ()


@dataclass(frozen=True, slots=True)
class SessionChanges:
    """A partial update: ``fields`` maps column names to new values; readings are appended."""

    fields: dict[str, Any]
    last_updated: datetime
    readings: tuple[Reading, ...] = ()


@dataclass(frozen=True, slots=True)
class LimitPoint:
    """From ``start`` on, the charge point caps the session at ``limit_kw``."""

    start: datetime
    limit_kw: float
