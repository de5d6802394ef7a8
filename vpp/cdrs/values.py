"""Domain values of charge detail records."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class CdrRecord:
    """A CDR in the domain's words; ``document`` keeps the CPO's whole record for settlement disputes."""

    country_code: str
    party_id: str
    external_id: str
    start: datetime
    end: datetime
    energy_kwh: float
    total_time_h: float
    currency: str
    total_cost_excl_vat: float
    last_updated: datetime
    location_id: str
    evse_uid: str
    connector_id: str
    session_external_id: str | None = None
    parking_time_h: float | None = None
    total_cost_incl_vat: float | None = None
    credit: bool = False
    credit_reference_id: str | None = None
    document: dict[str, Any] = field(default_factory=dict)
