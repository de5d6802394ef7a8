"""API models of the portfolio."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from vpp.api.types import Flag, Name, Number, Text, UtcDatetime


class ChargingNeedWrite(BaseModel):
    """A driver's, app's or car-sharing system's stated need for one session."""

    model_config = ConfigDict(extra="forbid")

    departure: UtcDatetime = Field(description="When the car leaves (with a time zone); in the future.")
    energy_kwh: Number | None = Field(None, ge=0, description="Energy the session must have delivered by departure.")
    target_soc_pct: Number | None = Field(
        None, ge=0, le=100, description="Alternatively, the state of charge wanted (needs battery_kwh)."
    )
    battery_kwh: Number | None = Field(None, gt=0)
    discharge_allowed: Flag = Field(False, description="V2G consent (needs battery_kwh and min_soc_pct).")
    min_soc_pct: Number | None = Field(
        None, ge=0, le=100, description="State of charge never to discharge below (at most target_soc_pct)."
    )


class ChargingNeedRead(BaseModel):
    """A stored need with its feasibility at the connector's maximum power."""

    session_id: str
    departure: datetime
    energy_kwh: float | None
    target_soc_pct: float | None
    battery_kwh: float | None
    discharge_allowed: bool
    min_soc_pct: float | None
    source: str
    confidence: float
    feasible: bool | None = Field(None, description="False when the need exceeds what time and power allow.")
    max_deliverable_kwh: float | None = None
    remaining_kwh: float | None = None


class BookingWrite(BaseModel):
    """A car-sharing booking: the car's next booking sets the departure of its session and, with ``energy_kwh``, its
    need (the booking's energy less what the session has delivered)."""

    model_config = ConfigDict(extra="forbid")

    vehicle_id: Name = Field(min_length=1, max_length=64)
    vehicle_token_uid: Name = Field(min_length=1, max_length=64, description="The uid of the car's charging token.")
    start: UtcDatetime
    end: UtcDatetime = Field(description="After start.")
    energy_kwh: Number | None = Field(None, ge=0, description=(
        "Energy the booking needs, when known: the need of the car's session before it, less what that session "
        "has delivered."))
    cancelled: Flag = False


class BookingRead(BaseModel):
    """A stored booking."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    vehicle_id: str
    start_at: datetime
    end_at: datetime
    energy_kwh: float | None
    cancelled: bool


class PoolRead(BaseModel):
    """A pool with its sessions now."""

    pool: str
    kind: str
    sessions: int
    max_kw_now: float
    capacity_kw: float | None = None


class PoolFlexibilityRead(BaseModel):
    """A pool's flexibility per ISP (kW, kWh cumulative from ``start``; positive = consumption)."""

    pool: str
    start: datetime
    end: datetime
    isp_starts: list[datetime]
    baseline_kw: list[float]
    min_kw: list[float]
    max_kw: list[float]
    max_kw_p10: list[float]
    energy_min_kwh: list[float]
    energy_max_kwh: list[float]
    sessions_now: int
    sessions_forecast: float


class PoolForecastRead(BaseModel):
    """Sessions not yet plugged in per ISP: quantiles of arrivals and plugged-in cars."""

    pool: str
    isp_starts: list[datetime]
    arrivals_p10: list[float]
    arrivals_p50: list[float]
    arrivals_p90: list[float]
    plugged_in_p10: list[float]
    plugged_in_p50: list[float]
    plugged_in_p90: list[float]
    energy_per_arrival_kwh: float | None
    days_of_history: int


class CongestionPointWrite(BaseModel):
    """A DSO congestion point."""

    model_config = ConfigDict(extra="forbid")

    dso: Name = Field(min_length=1, max_length=120)
    name: Text | None = Field(None, max_length=200)
    max_kw: Number | None = Field(None, gt=0)


class SiteWrite(BaseModel):
    """A site: locations behind one grid connection."""

    model_config = ConfigDict(extra="forbid")

    name: Text | None = Field(None, max_length=200)
    capacity_kw: Number | None = Field(None, gt=0, description="Grid capacity shared by chargers and site load.")
    congestion_point_ean: Text | None = Field(None, max_length=64)
    bidding_zone: Name = Field("NL", max_length=16)
    category: str = Field("public", pattern="^(home|public|workplace)$")


class SiteLocationWrite(BaseModel):
    """A CPO location to put on a site."""

    model_config = ConfigDict(extra="forbid")

    party: str = Field(pattern=r"^[A-Za-z]{2}[/-]?[A-Za-z0-9]{3}$",
                       description="Country code and party id, e.g. NL/CPA")
    location_id: str = Field(min_length=1, max_length=36, pattern=r"^[!-~][ -~]*$",
                             description="The CPO's location id (OCPI CiString: printable ASCII).")


class SiteLoadPoint(BaseModel):
    """Non-EV site load in one ISP."""

    model_config = ConfigDict(extra="forbid")

    isp_start: UtcDatetime
    load_kw: Number


class TopologyImportRead(BaseModel):
    """What a topology CSV import changed."""

    congestion_points: int
    sites: int
    locations: int


class BatteryWrite(BaseModel):
    """A stationary battery behind the site's meter (the domain refuses SoC limits outside its capacity)."""

    model_config = ConfigDict(extra="forbid")

    capacity_kwh: Number
    power_kw: Number
    efficiency: Number = Field(0.95, description="one way: charging and discharging each lose this share")
    min_soc_pct: Number = 0.0
    max_soc_pct: Number = 100.0
    cycle_cost_eur_per_kwh: Number = Field(0.0, description="wear per kWh discharged")
    soc_kwh: Number | None = Field(None, description="state of charge now, if known")


class TariffPeriodWrite(BaseModel):
    """A time-of-use period: local ``HH:MM`` to ``HH:MM`` (``24:00`` is midnight; an end before the start wraps)."""

    model_config = ConfigDict(extra="forbid")

    name: Name = Field(max_length=40)
    start: str = Field(max_length=5, pattern=r"^\d{2}:\d{2}$")
    end: str = Field(max_length=5, pattern=r"^\d{2}:\d{2}$")
    price_eur_per_kwh: Number


class TariffWrite(BaseModel):
    """How the site's grid exchange is billed (see vpp.domain.sites.Tariff)."""

    model_config = ConfigDict(extra="forbid")

    energy: Literal["tou", "dynamic"] = "tou"
    periods: list[TariffPeriodWrite] = Field(default_factory=list, max_length=48)
    markup_eur_per_kwh: Number = 0.0
    export_eur_per_kwh: Number = 0.0
    export_dynamic: Flag = False
    capacity_eur_per_kw: Number = 0.0
    capacity_period: Literal["day", "month"] = "month"
    v2g_cycle_eur_per_kwh: Number = 0.0
    timezone: Name = Field("Europe/Amsterdam", max_length=64)


class SiteEquipmentWrite(BaseModel):
    """What is behind a site's meter besides its chargers."""

    model_config = ConfigDict(extra="forbid")

    import_max_kw: Number | None = None
    export_max_kw: Number | None = None
    subscription_kva: Number | None = None
    power_factor: Number = 1.0
    pv_kwp: Number = 0.0
    battery: BatteryWrite | None = None
    tariff: TariffWrite | None = None


class SiteSeriesWrite(BaseModel):
    """A PV, load or meter series from ``start``, one value per ISP (to ``end`` when given)."""

    model_config = ConfigDict(extra="forbid")

    start: UtcDatetime
    end: UtcDatetime | None = None
    unit: str = Field("kW", max_length=8, pattern=r"^[A-Za-z]{1,8}$",
                      description="kW (average power per ISP), W, or kWh per ISP")
    values: list[Number] = Field(min_length=1, max_length=40_000)


class BatterySocWrite(BaseModel):
    """The battery's metered state of charge."""

    model_config = ConfigDict(extra="forbid")

    soc_kwh: Number
    at: UtcDatetime


class SiteSignalWrite(BaseModel):
    """A grid-stress signal (``stop`` charging, or ``discharge`` too) or an outage of one site."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["grid_stress", "outage"]
    start: UtcDatetime
    end: UtcDatetime
    site_id: Name | None = Field(None, max_length=64)
    bidding_zone: Name | None = Field(None, max_length=16)
    mode: Literal["stop", "discharge"] = "stop"


class SitePlanRead(BaseModel):
    """A site's latest plan: per ISP from ``start`` (kW; battery positive when charging) and its bill (EUR)."""

    site_id: str
    planned_at: datetime
    start: datetime
    battery_kw: list[float]
    battery_soc_kwh: list[float]
    import_kw: list[float]
    export_kw: list[float]
    cars_kw: list[float]
    bill_eur: dict[str, float]
    status: str


class MeterReadingWrite(BaseModel):
    """One ISP of a site's meter (kW averages; the battery's state of charge at the ISP's end, kWh)."""

    model_config = ConfigDict(extra="forbid")

    site_id: Name = Field(max_length=64)
    isp_start: UtcDatetime
    load_kw: Number | None = None
    pv_kw: Number | None = None
    import_kw: Number | None = None
    export_kw: Number | None = None
    battery_soc_kwh: Number | None = None
