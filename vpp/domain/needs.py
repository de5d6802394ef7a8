"""Charging needs: how much energy a car wants by when, and how sure we are of it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from vpp.domain.errors import InvalidInput
from vpp.domain.isp import require_utc


class NeedSource(StrEnum):
    """Where a charging need came from, most to least trustworthy."""

    EXPLICIT = "explicit"
    BOOKING = "booking"
    LEARNED = "learned"
    DEFAULT = "default"


class LocationCategory(StrEnum):
    """ElaadNL location categories; ``home`` is accepted as an alias of ``private``."""

    PRIVATE = "private"
    PUBLIC = "public"
    WORKPLACE = "workplace"

    @classmethod
    def parse(cls, value: str | LocationCategory) -> LocationCategory:
        """Parse a category name (case-insensitive; ``home`` means private)."""
        if isinstance(value, LocationCategory):
            return value
        text = str(value).strip().lower()
        aliases = {"home": cls.PRIVATE, "work": cls.WORKPLACE}
        if text in aliases:
            return aliases[text]
        try:
            return cls(text)
        except ValueError as exc:
            raise InvalidInput(
                f"category: unknown location category {value!r}; use private/home, public or workplace"
            ) from exc


def _finite(value: float, field: str) -> float:
    number = float(value)
    if not math.isfinite(number):
        raise InvalidInput(f"{field}: must be a finite number, got {value!r}")
    return number


@dataclass(frozen=True, slots=True)
class ChargingNeed:
    """Energy a session needs by its departure (UTC), with the need's source and confidence."""

    departure: datetime
    energy_kwh: float
    source: NeedSource
    confidence: float = 1.0
    discharge_allowed: bool = False
    min_soc_kwh: float = 0.0
    battery_kwh: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "departure", require_utc(self.departure, "departure"))
        object.__setattr__(self, "source", NeedSource(self.source))
        energy = _finite(self.energy_kwh, "energy_kwh")
        if energy < 0:
            raise InvalidInput(f"energy_kwh: must be >= 0, got {energy}")
        confidence = _finite(self.confidence, "confidence")
        if not 0.0 <= confidence <= 1.0:
            raise InvalidInput(f"confidence: must be within 0..1, got {confidence}")
        min_soc = _finite(self.min_soc_kwh, "min_soc_kwh")
        if min_soc < 0:
            raise InvalidInput(f"min_soc_kwh: must be >= 0, got {min_soc}")
        if self.battery_kwh is not None:
            battery = _finite(self.battery_kwh, "battery_kwh")
            if battery <= 0:
                raise InvalidInput(f"battery_kwh: must be > 0, got {battery}")
            if min_soc > battery:
                raise InvalidInput(f"min_soc_kwh: {min_soc} exceeds battery_kwh {battery}")
            if energy > battery:
                raise InvalidInput(f"energy_kwh: {energy} exceeds battery_kwh {battery}")


def energy_for_target_soc(target_soc: float, battery_kwh: float, current_soc_kwh: float) -> float:
    """Energy (kWh) to bring the battery from ``current_soc_kwh`` to ``target_soc`` (fraction); never negative."""
    target = _finite(target_soc, "target_soc")
    battery = _finite(battery_kwh, "battery_kwh")
    current = _finite(current_soc_kwh, "current_soc_kwh")
    if not 0.0 <= target <= 1.0:
        raise InvalidInput(f"target_soc: must be a fraction within 0..1, got {target}")
    if battery <= 0:
        raise InvalidInput(f"battery_kwh: must be > 0, got {battery}")
    if not 0.0 <= current <= battery:
        raise InvalidInput(f"current_soc_kwh: must be within 0..battery_kwh ({battery}), got {current}")
    return max(0.0, target * battery - current)


def explicit_need(
    departure: datetime,
    *,
    target_soc: float,
    battery_kwh: float,
    current_soc_kwh: float,
    discharge_allowed: bool = False,
    min_soc_kwh: float = 0.0,
) -> ChargingNeed:
    """A driver-stated need from a target state of charge."""
    return ChargingNeed(
        departure=departure,
        energy_kwh=energy_for_target_soc(target_soc, battery_kwh, current_soc_kwh),
        source=NeedSource.EXPLICIT,
        confidence=1.0,
        discharge_allowed=discharge_allowed,
        min_soc_kwh=min_soc_kwh,
        battery_kwh=battery_kwh,
    )


class EstimateLevel(StrEnum):
    """How specific a learned need estimate is, most to least."""

    EVSE = "evse"
    LOCATION = "location"
    CATEGORY = "category"
    ELAAD = "elaad"


@dataclass(frozen=True, slots=True)
class NeedEstimate:
    """A typical dwell time and energy for one EVSE, location, category or the ElaadNL fallback."""

    level: EstimateLevel
    key: str
    samples: int
    dwell_hours: float
    energy_kwh: float
    confidence: float

    def __post_init__(self) -> None:
        if _finite(self.dwell_hours, "dwell_hours") < 0:
            raise InvalidInput(f"dwell_hours: must be >= 0, got {self.dwell_hours}")
        if _finite(self.energy_kwh, "energy_kwh") < 0:
            raise InvalidInput(f"energy_kwh: must be >= 0, got {self.energy_kwh}")
        if not 0.0 <= _finite(self.confidence, "confidence") <= 1.0:
            raise InvalidInput(f"confidence: must be within 0..1, got {self.confidence}")
