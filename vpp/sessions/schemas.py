"""API models of charging sessions (the trader's view)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict


class ReadingRead(BaseModel):
    """One measured period of a session."""

    model_config = ConfigDict(from_attributes=True)

    start_at: datetime
    power_kw: float | None
    energy_kwh: float | None
    soc_pct: float | None
    current_a: float | None


class SessionRead(BaseModel):
    """A charging session as listed."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    connection_id: str
    cpo: str
    country_code: str
    party_id: str
    external_id: str
    status: str
    start_at: datetime
    end_at: datetime | None
    energy_kwh: float
    location_id: str
    evse_uid: str
    connector_id: str
    last_updated: datetime


class LimitRequestRead(BaseModel):
    """A limit request sent for a session and what became of it."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    kind: str
    requested_limit_kw: float | None
    limit_kw: float | None
    sent_limit: float | None
    sent_unit: str | None
    clipped: bool
    status: str
    answer: str | None
    result: str | None
    message: str | None
    created_at: datetime
    deadline_at: datetime | None


class SessionDetail(SessionRead):
    """A session with its readings, its connector, the limit in force and the limit requests sent."""

    connector: dict[str, Any] | None
    active_limit: list[dict[str, Any]] | None
    active_limit_at: datetime | None
    readings: list[ReadingRead]
    limit_requests: list[LimitRequestRead]


class SessionPage(BaseModel):
    """A page of sessions and the total matching the filters."""

    items: list[SessionRead]
    total: int
    limit: int
    offset: int
