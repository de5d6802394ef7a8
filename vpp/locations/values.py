"""Domain values of locations, EVSEs and connectors (power in kW, voltage line-to-neutral for AC)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class ConnectorRecord:
    """A connector and what it can deliver."""

    external_id: str
    power_type: str
    phases: int
    max_voltage_v: int
    max_current_a: int
    rated_power_kw: float | None
    standard: str
    format: str
    last_updated: datetime


@dataclass(frozen=True, slots=True)
class EvseRecord:
    """An EVSE: one car at a time through one of its connectors."""

    uid: str
    status: str
    capabilities: tuple[str, ...]
    charging_profile_capable: bool
    last_updated: datetime
    evse_id: str | None = None
    connectors: tuple[ConnectorRecord, ...] = ()


@dataclass(frozen=True, slots=True)
class LocationRecord:
    """A location with its EVSEs, as its CPO describes it."""

    country_code: str
    party_id: str
    external_id: str
    publish: bool
    address: str
    city: str
    country: str
    latitude: str
    longitude: str
    time_zone: str
    last_updated: datetime
    name: str | None = None
    postal_code: str | None = None
    evses: tuple[EvseRecord, ...] = ()


@dataclass(frozen=True, slots=True)
class ConnectorInfo:
    """What steering a session needs to know about where it charges."""

    power_type: str
    phases: int
    max_voltage_v: int
    max_current_a: int
    max_power_kw: float
    charging_profile_capable: bool
    capabilities: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for API answers."""
        return {
            "power_type": self.power_type,
            "phases": self.phases,
            "max_voltage_v": self.max_voltage_v,
            "max_current_a": self.max_current_a,
            "max_power_kw": self.max_power_kw,
            "charging_profile_capable": self.charging_profile_capable,
            "capabilities": list(self.capabilities),
        }
