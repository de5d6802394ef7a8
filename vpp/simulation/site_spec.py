"""Scenario keys of sites behind the meter (``sites:`` in a scenario file, see docs/scenarios.md).

Each entry equips every location of one CPO (each location is a site) with PV, a building load, a battery, a
grid connection and a tariff, and may give grid-stress signals and outages as local windows of every delivery
day. Values are checked by the same domain rules as the API, so a scenario with a battery whose SoC limits lie
outside its capacity, or a tariff with overlapping periods, is refused when it is loaded.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from vpp.domain.errors import InvalidInput
from vpp.domain.sites import Battery, GridConnection
from vpp.portfolio.sites import tariff_from_spec

LoadProfile = Literal["none", "household", "office", "depot", "flat"]


class BatterySpec(BaseModel):
    """A stationary battery at each site."""

    model_config = ConfigDict(extra="forbid")

    capacity_kwh: float
    power_kw: float
    efficiency: float = 0.95
    min_soc_pct: float = 0.0
    max_soc_pct: float = 100.0
    cycle_cost_eur_per_kwh: float = 0.0
    soc_pct: float = Field(50.0, description="state of charge at the begin of the simulation")

    def battery(self) -> Battery:
        """The domain value (refuses what cannot be)."""
        soc = self.capacity_kwh * self.soc_pct / 100.0 if self.capacity_kwh > 0 else None
        return Battery.from_pct(capacity_kwh=self.capacity_kwh, power_kw=self.power_kw, efficiency=self.efficiency,
                                min_soc_pct=self.min_soc_pct, max_soc_pct=self.max_soc_pct,
                                cycle_cost_eur_per_kwh=self.cycle_cost_eur_per_kwh, soc_kwh=soc)


class SignalWindow(BaseModel):
    """A local HH:MM window of every delivery day."""

    model_config = ConfigDict(extra="forbid")

    start: str = Field(pattern=r"^\d{2}:\d{2}$")
    end: str = Field(pattern=r"^\d{2}:\d{2}$")
    mode: Literal["stop", "discharge"] = "stop"


class SiteSpec(BaseModel):
    """What is behind the meter of every location of ``cpo``."""

    model_config = ConfigDict(extra="forbid")

    cpo: str = Field(pattern=r"^[A-Z]{2}/[A-Z0-9]{3}$")
    pv_kwp: float = Field(0.0, ge=0)
    load: LoadProfile = Field("none", description="household (ev2gym homes), office, depot (synthetic), flat")
    load_kw: float | None = Field(None, gt=0, description="mean kW the load profile is scaled to (flat: the load)")
    household: int = Field(0, ge=0, description="first household profile; the n-th location takes the next")
    import_max_kw: float | None = Field(None, gt=0)
    export_max_kw: float | None = Field(None, ge=0)
    subscription_kva: float | None = Field(None, gt=0)
    battery: BatterySpec | None = None
    tariff: dict[str, Any] | None = Field(None, description="as PUT /api/v1/portfolio/sites/{id}/equipment takes it")
    grid_stress: list[SignalWindow] = Field(default_factory=list)
    outages: list[SignalWindow] = Field(default_factory=list)

    @model_validator(mode="after")
    def _valid(self) -> SiteSpec:
        try:
            if self.battery is not None:
                self.battery.battery()
            GridConnection(import_max_kw=self.import_max_kw, export_max_kw=self.export_max_kw,
                           subscription_kva=self.subscription_kva)
            if self.tariff is not None:
                tariff_from_spec(self.tariff)
        except InvalidInput as exc:
            raise ValueError(f"sites ({self.cpo}): {exc.message}") from exc
        if self.load == "flat" and self.load_kw is None:
            raise ValueError(f"sites ({self.cpo}): a flat load needs load_kw")
        return self
