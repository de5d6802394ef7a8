"""Scenario files: what a simulation runs (parties, fleets, grid events, markets) and how it is loaded."""

from __future__ import annotations

from datetime import date, time
from importlib.resources import files
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from vpp.simulation.site_spec import SiteSpec

Category = Literal["home", "public", "workplace"]
BUNDLED_PACKAGE = "sim.scenarios"


class CpoSpec(BaseModel):
    """One simulated CPO: its chargers and the sessions they see."""

    model_config = ConfigDict(extra="forbid")

    party: str = Field(pattern=r"^[A-Z]{2}/[A-Z0-9]{3}$", description="CC/PID, e.g. NL/CPA")
    locations: int = Field(ge=1)
    evses_per_location: int = Field(ge=1)
    evse_max_kw: float = Field(11.0, gt=0)
    dc: bool = Field(False, description="DC chargers (the car's DC power limits, not its onboard AC charger)")
    v2g: bool = False
    category: Category = "public"
    sessions_per_evse_per_day: float = Field(1.0, ge=0, le=12)
    site_max_kw: float | None = Field(None, gt=0, description="grid capacity of each location (site)")
    needs: Literal["explicit", "learned"] = Field(
        "explicit", description="explicit: the CPO's app states departure and energy per session (API)")
    target_soc: float | None = Field(None, gt=0, le=1, description="charge to this SoC (depot) instead of ElaadNL")
    arrival_window: tuple[str, str] | None = Field(
        None, description="arrivals uniform in this local HH:MM window instead of ElaadNL (depot)")
    dwell_hours: tuple[float, float] | None = Field(None, description="dwell uniform in [low, high] hours")

    @property
    def evses(self) -> int:
        """Number of EVSEs of the CPO."""
        return self.locations * self.evses_per_location


class CarSharingSpec(BaseModel):
    """Shared cars that stay plugged in between bookings (bookings stated over the API)."""

    model_config = ConfigDict(extra="forbid")

    party: str = Field("NL/CSH", pattern=r"^[A-Z]{2}/[A-Z0-9]{3}$")
    cars: int = Field(ge=1)
    bookings_per_car_per_day: float = Field(1.0, ge=0, le=6)
    evse_max_kw: float = Field(11.0, gt=0)
    v2g: bool = True
    booking_hours: tuple[float, float] = (2.0, 6.0)
    booking_energy_kwh: tuple[float, float] = (10.0, 30.0)


class CongestionSpec(BaseModel):
    """A DSO congestion limit on the locations of some CPOs, every simulated day between two local times."""

    model_config = ConfigDict(extra="forbid")

    congestion_point: str = Field(min_length=1, max_length=100)
    cpos: list[str] = Field(min_length=1)
    start: str = Field(pattern=r"^\d{2}:\d{2}$")
    end: str = Field(pattern=r"^\d{2}:\d{2}$")
    max_kw: float | None = Field(None, gt=0, description="cap of the point; null: a share of its uncontrolled peak")
    max_share_of_peak: float = Field(0.6, gt=0, le=1, description="used when max_kw is null")
    signal: Literal["limit", "curtailment", "uftp"] = Field(
        "limit", description="limit: POST /api/v1/dso/limits; curtailment: §14a per device; uftp: not simulated yet")
    max_kw_per_device: float = Field(4.2, ge=4.2, description="§14a cap per device (curtailment)")

    @field_validator("signal")
    @classmethod
    def _simulated(cls, signal: str) -> str:
        if signal == "uftp":
            # Refused rather than run as a plain limit: the scenario would not be what it says.
            raise ValueError("signal 'uftp' is not simulated yet (the UFTP DSO in sim/dso.py is not driven by "
                             "scenarios); use 'limit' or 'curtailment'")
        return signal

    def window(self) -> tuple[time, time]:
        """Start and end as local times."""
        return time.fromisoformat(self.start), time.fromisoformat(self.end)


class AfrrSpec(BaseModel):
    """aFRR: capacity bid and awarded, then TSO setpoints every 4 s in the activation windows."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    reliability: float = Field(0.9, gt=0, lt=1)
    direction: Literal["up", "down"] = Field(
        "up", description="awarded and activated: up = less consumption (setpoints > 0), down = more (< 0)")
    activations: list[tuple[str, str]] = Field(
        default_factory=lambda: [("18:00", "18:30")], description="local HH:MM windows with setpoints")
    tail_seconds: float = Field(300.0, ge=0, le=900, description="4-s steps kept after a window (ramp-down)")
    setpoint_share: float = Field(0.8, gt=0, le=1, description="share of the awarded MW the TSO asks for")
    setpoint_shape: Literal["flat", "varying"] = Field(
        "flat", description="flat: the share throughout; varying: a ramp over the 5-min full activation time, "
                            "then between the share and half of it")
    award_mw: float | None = Field(None, gt=0, description="award this (at most the offer); default: all whole MW")
    min_award_mw: float = Field(1.0, gt=0, description="the TSO's minimum bid size")
    telemetry_seconds: float = Field(
        10.0, ge=1, le=900, description="the CPOs' charging period (Session PATCH cadence) while the pool is under "
                                        "activation (the windows and their tail); report_period_seconds elsewhere")


class Scenario(BaseModel):
    """A simulation scenario (see docs/scenarios.md)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    start: date = Field(description="first local delivery day")
    days: int = Field(1, ge=1, le=7)
    timezone: str = "Europe/Amsterdam"
    seed: int = 1
    prices: Literal["nl-day-ahead"] | list[float] = "nl-day-ahead"
    cpos: list[CpoSpec] = Field(min_length=1)
    car_sharing: CarSharingSpec | None = None
    congestion: list[CongestionSpec] = Field(default_factory=list)
    afrr: AfrrSpec = Field(default_factory=AfrrSpec)
    strategy: Literal["smart", "smart+v2g"] = "smart"
    step_seconds: float = Field(300.0, ge=4, le=900, description="simulated seconds per step of the delivery days")
    warmup_hours: float = Field(24.0, ge=0, le=72, description="uncontrolled history before the trading day")
    warmup_from: str | None = Field(
        None, pattern=r"^\d{2}:\d{2}$",
        description="begin the simulation at this local time of the trading day (at most the trading time, "
                    "08:45) instead of warmup_hours before it; with history_days the forecast still has history")
    history_days: float = Field(
        0.0, ge=0, le=28, description="days of completed sessions each CPO reports (OCPI PUT) before the begin: "
                                      "the history the forecast learns from, without simulating it")
    warmup_step_seconds: float = Field(900.0, ge=60, le=3600)
    report_period_seconds: float = Field(300.0, ge=60, description="CPO session update cadence (OCPI PATCH)")
    physics_step_seconds: float = Field(
        60.0, ge=1, le=900, description="longest step of the simulated cars' charging physics (4 s in aFRR windows)")
    dayahead: bool = Field(True, description="buy the day-ahead schedule (curve, exchange, awards)")
    follow_hours: float = Field(
        48.0, ge=0, le=168,
        description="follow the delivery period's sessions past its end until they leave, for at most this long "
                    "(like-for-like KPIs); 0 stops at the end and leaves the last sessions plugged in")
    delivery_window: tuple[str, str] | None = Field(
        None, description="local HH:MM window of the first day to simulate instead of whole days (quick runs)")
    reference: dict[str, str] = Field(default_factory=dict, description="the pilot's figures, for the report")
    sites: list[SiteSpec] = Field(default_factory=list, description="behind the meter: PV, load, battery, tariff")

    @field_validator("cpos")
    @classmethod
    def _unique_parties(cls, cpos: list[CpoSpec]) -> list[CpoSpec]:
        parties = [c.party for c in cpos]
        if len(set(parties)) != len(parties):
            raise ValueError("every CPO needs its own party")
        return cpos

    @model_validator(mode="after")
    def _congestion_cpos_exist(self) -> Scenario:
        parties = {c.party for c in self.cpos} | ({self.car_sharing.party} if self.car_sharing else set())
        for spec in self.congestion:
            unknown = set(spec.cpos) - parties
            if unknown:
                raise ValueError(f"congestion {spec.congestion_point}: unknown cpos {sorted(unknown)}")
        for site in self.sites:
            if site.cpo not in parties:
                raise ValueError(f"sites: unknown cpo {site.cpo!r}")
        if isinstance(self.prices, list) and len(self.prices) not in (24, 96):
            raise ValueError("prices: give 96 values per ISP (or 24 hourly) of one day, repeated every day")
        return self


def bundled_scenarios() -> list[str]:
    """Names of the scenarios shipped with the package."""
    root = files(BUNDLED_PACKAGE)
    return sorted(p.name.removesuffix(".yaml") for p in root.iterdir() if p.name.endswith(".yaml"))


def load_scenario(source: str | Path) -> Scenario:
    """A scenario from a YAML file, or a bundled one by name (``demo``, ``utrecht``, ...)."""
    path = Path(source)
    if path.exists():
        text = path.read_text(encoding="utf-8")
    else:
        name = str(source).removesuffix(".yaml")
        bundled = files(BUNDLED_PACKAGE).joinpath(f"{name}.yaml")
        if not bundled.is_file():
            raise FileNotFoundError(f"no scenario file {source!r} and no bundled scenario {name!r} "
                                    f"(bundled: {', '.join(bundled_scenarios())})")
        text = bundled.read_text(encoding="utf-8")
    raw = yaml.safe_load(text)
    if not isinstance(raw, dict):
        raise ValueError(f"{source}: a scenario is a YAML mapping")
    return Scenario.model_validate(raw)
