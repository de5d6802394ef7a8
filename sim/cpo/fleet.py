"""EV physics of the simulated CPO: how much power a car draws given hardware, battery and profile limits."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from adapters.ocpi.v2_2_1.schemas import PHASES, ChargingProfile, ChargingRateUnit, PowerType
from sim.cpo.elaad import EvModel

# Above this state of charge the battery management tapers the charging power.
TAPER_START_SOC = 0.8
TAPER_FLOOR = 0.1
MIN_DISCHARGE_SOC = 0.2


@dataclass
class Car:
    """A plugged-in car: its model, state of charge (0..1) and the energy its driver asked for."""

    model: EvModel
    soc: float
    energy_demand_kwh: float
    reports_soc: bool = False
    delivered_kwh: float = 0.0

    @property
    def energy_needed_kwh(self) -> float:
        """Energy still wanted: demand minus net energy delivered, bounded by the room in the battery."""
        room = (1.0 - self.soc) * self.model.battery_kwh
        return max(0.0, min(self.energy_demand_kwh - self.delivered_kwh, room))

    def can_discharge(self, dc: bool) -> bool:
        """True when the model can feed energy back on this kind of EVSE."""
        return (self.model.max_dc_discharge_kw if dc else self.model.max_ac_discharge_kw) > 0


def taper_factor(soc: float) -> float:
    """Share of full power the battery accepts at this SoC: 1 below 80 %, falling linearly to 10 %."""
    if soc >= 1.0:
        return 0.0
    if soc <= TAPER_START_SOC:
        return 1.0
    return max(TAPER_FLOOR, (1.0 - soc) / (1.0 - TAPER_START_SOC))


def charge_power_kw(
    car: Car,
    *,
    evse_max_kw: float,
    dc: bool,
    limit_kw: float | None,
    v2g_allowed: bool,
    seconds: float,
) -> float:
    """Power for the next ``seconds``: positive charges, negative (V2G, negative limit) discharges."""
    if limit_kw is not None and limit_kw < 0:
        if not (v2g_allowed and car.can_discharge(dc)) or car.soc <= MIN_DISCHARGE_SOC:
            return 0.0
        car_max = car.model.max_dc_discharge_kw if dc else car.model.max_ac_discharge_kw
        available_kwh = (car.soc - MIN_DISCHARGE_SOC) * car.model.battery_kwh
        by_energy = available_kwh * 3600.0 / seconds if seconds > 0 else car_max
        return -min(-limit_kw, car_max, evse_max_kw, by_energy)
    hardware_kw = min(evse_max_kw, car.model.max_dc_kw if dc else car.model.max_ac_kw)
    power = hardware_kw * taper_factor(car.soc)
    if limit_kw is not None:
        power = min(power, limit_kw)
    if seconds > 0:
        power = min(power, car.energy_needed_kwh * 3600.0 / seconds)
    return max(0.0, power)


def apply_power(car: Car, power_kw: float, seconds: float) -> float:
    """Move the car's battery by ``power_kw`` for ``seconds``; return the energy in kWh (signed)."""
    energy_kwh = power_kw * seconds / 3600.0
    car.soc = min(1.0, max(0.0, car.soc + energy_kwh / car.model.battery_kwh))
    car.delivered_kwh += energy_kwh
    return energy_kwh


def limit_to_kw(limit: float, unit: ChargingRateUnit, power_type: PowerType, voltage_v: float) -> float:
    """Convert a profile limit to kW; A is per phase, so it scales with the connector's phases."""
    if unit == ChargingRateUnit.W:
        return limit / 1000.0
    return limit * voltage_v * PHASES[power_type] / 1000.0


def profile_start(profile: ChargingProfile, session_start: datetime) -> datetime:
    """Absolute start of a profile; relative profiles count from the start of the session."""
    return profile.start_date_time or session_start


def profile_limit_at(profile: ChargingProfile, at: datetime, session_start: datetime) -> float | None:
    """The profile's limit (in its own unit) at ``at``, or None where it sets no limit."""
    start = profile_start(profile, session_start)
    offset = (at - start).total_seconds()
    if offset < 0 or (profile.duration is not None and offset >= profile.duration):
        return None
    limit: float | None = None
    for period in profile.charging_profile_period:
        if period.start_period <= offset:
            limit = period.limit
        else:
            break
    return limit


def profile_changes_after(profile: ChargingProfile, after: datetime, session_start: datetime) -> datetime | None:
    """The first moment after ``after`` at which the profile's limit may change."""
    start = profile_start(profile, session_start)
    moments = [start + timedelta(seconds=p.start_period) for p in profile.charging_profile_period]
    if profile.duration is not None:
        moments.append(start + timedelta(seconds=profile.duration))
    later = [moment for moment in moments if moment > after]
    return min(later) if later else None
