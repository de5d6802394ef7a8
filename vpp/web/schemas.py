"""API models of the web view's read models."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field


class PrincipalRead(BaseModel):
    """Who the caller is, so the view can show the pages the role may use."""

    key_id: str
    name: str
    role: str
    market_timezone: str = Field(description="Times are shown in this zone, with the UTC offset.")


class PoolSessionRead(BaseModel):
    """A plugged-in session of a pool, as the portfolio sees it now."""

    session_id: str
    cpo: str = Field(description="The OCPI connection's name.")
    cpo_pool: str | None
    location_id: str
    evse_uid: str
    plugged_in: datetime
    departure: datetime = Field(description="Resolved departure (explicit need, booking, learned or default).")
    need_source: str
    energy_needed_kwh: float = Field(description="Energy still to charge before departure.")
    delivered_kwh: float
    max_kw: float
    current_kw: float | None = Field(description="Latest metered power; positive = charging, negative = V2G.")
    v2g: bool = Field(description="True when the car may discharge (EVSE, CPO connection and driver agree).")
    discharge_kw: float


class PoolSessionPage(BaseModel):
    """A page of a pool's sessions, with the total matching the filters."""

    pool: str
    at: datetime
    items: list[PoolSessionRead]
    total: int
    limit: int
    offset: int
    cpos: list[str] = Field(description="CPO names present in the pool (for the filter).")


SortKey = Literal["departure", "-departure", "energy_needed_kwh", "-energy_needed_kwh", "current_kw", "-current_kw",
                  "location_id", "cpo"]


class LiveStep(BaseModel):
    """One 4-second step of the pool's aFRR response with the tolerance band."""

    at: datetime
    setpoint_seq: int | None
    requested_mw: float
    supplied_mw: float
    band_low_mw: float = Field(description="Near/far edges of the band: ramped setpoint -/+ 5 % of it.")
    band_high_mw: float
    measured_kw: float
    baseline_kw: float
    target_kw: float


class LiveSetpoint(BaseModel):
    """The latest setpoint received for the pool."""

    seq: int
    timestamp: datetime
    requested_mw: float
    setpoint_mw: float
    clipped: bool
    capacity_up_mw: float
    capacity_down_mw: float
    received_at: datetime


class LiveLimit(BaseModel):
    """A congestion obligation in force against the load it constrains."""

    pool: str
    kind: str
    isp_start: datetime
    limit_kw: float
    load_kw: float | None = Field(description="Current load of the pool (latest readings), kW.")
    headroom_kw: float | None


class LiveOutcomes(BaseModel):
    """Charging-profile outcomes of one CPO over the window."""

    connection_id: str
    cpo: str
    by_status: dict[str, int]
    total: int
    last_at: datetime | None
    last_message: str | None


class LiveActivations(BaseModel):
    """What the activations page shows for a pool at one moment."""

    pool: str
    at: datetime
    window_s: int
    setpoint: LiveSetpoint | None
    steps: list[LiveStep]
    within_band_share: float | None = Field(description="Share of steps whose supply lies within the band.")
    limits: list[LiveLimit]
    outcomes: list[LiveOutcomes]


class ConnectionActivityRead(BaseModel):
    """What a CPO connection has done lately, beside what the connections API lists."""

    connection_id: str
    last_push_at: datetime | None = Field(description="Latest change to one of its sessions (pushed or pulled).")
    active_sessions: int
    profile_errors_24h: int = Field(description="Charging profiles failed, rejected or lost in the last 24 h.")
