"""A car's charging taper near full, pure: how long a need takes when it ends high in the battery.

Above ``TAPER_START_SOC`` a battery's management lowers the power it accepts, about linearly in the state of
charge down to ``TAPER_FLOOR`` of the car's full power (constant current, then constant voltage). A need that ends
there takes longer than its energy at full power: planning it at full power up to departure leaves it short.

Where the state of charge and battery of a car are not known (AC charging reports neither, and a need may be stated
in kWh only) a need is taken to end at ``target_soc`` (default: full, the worst case) of a battery of
``battery_kwh``; a need larger than the assumed battery gets a battery its own size.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
TAPER_START_SOC = 0.8
TAPER_FLOOR = 0.1
# Where the taper reaches its floor: (1 - soc) / (1 - TAPER_START_SOC) = TAPER_FLOOR.
FLOOR_SOC = 1.0 - TAPER_FLOOR * (1.0 - TAPER_START_SOC)
ASSUMED_BATTERY_KWH = 60.0
ASSUMED_TARGET_SOC = 1.0


def _battery(need_kwh: FloatArray, battery_kwh: FloatArray | float | None, target_soc: FloatArray | float
             ) -> FloatArray:
    battery = np.full_like(need_kwh, ASSUMED_BATTERY_KWH) if battery_kwh is None else np.broadcast_to(
        np.asarray(battery_kwh, dtype=np.float64), need_kwh.shape)
    battery = np.where(np.isfinite(battery) & (battery > 0), battery, ASSUMED_BATTERY_KWH)
    # A need cannot be more than the battery holds below its target.
    out: FloatArray = np.maximum(battery, need_kwh / np.maximum(np.asarray(target_soc, dtype=np.float64), 1e-6))
    return out


def need_hours(need_kwh: FloatArray, power_kw: FloatArray, *, battery_kwh: FloatArray | float | None = None,
               target_soc: FloatArray | float = ASSUMED_TARGET_SOC) -> FloatArray:
    """Hours to charge each need at ``power_kw`` (the car's full power) when it ends at ``target_soc``."""
    need = np.maximum(np.asarray(need_kwh, dtype=np.float64), 0.0)
    power = np.asarray(power_kw, dtype=np.float64)
    target = np.broadcast_to(np.asarray(target_soc, dtype=np.float64), need.shape)
    battery = _battery(need, battery_kwh, target)
    start = np.maximum(target - need / battery, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        flat = battery * np.maximum(np.minimum(target, TAPER_START_SOC) - start, 0.0) / power
        low = np.maximum(start, TAPER_START_SOC)
        high = np.minimum(target, FLOOR_SOC)
        taper = np.where(high > low, (1.0 - TAPER_START_SOC) * battery / power
                         * np.log((1.0 - low) / np.maximum(1.0 - high, 1e-12)), 0.0)
        floor = battery * np.maximum(target - np.maximum(start, FLOOR_SOC), 0.0) / (TAPER_FLOOR * power)
        hours = np.where(need > 0, flat + taper + floor, 0.0)
    out: FloatArray = np.where(power > 0, hours, np.where(need > 0, np.inf, 0.0))
    return out


def extra_hours(need_kwh: FloatArray, power_kw: FloatArray, *, battery_kwh: FloatArray | float | None = None,
                target_soc: FloatArray | float = ASSUMED_TARGET_SOC) -> FloatArray:
    """What the taper adds to each need's time at full power (0 for a car that cannot charge)."""
    need = np.maximum(np.asarray(need_kwh, dtype=np.float64), 0.0)
    power = np.asarray(power_kw, dtype=np.float64)
    hours = need_hours(need, power, battery_kwh=battery_kwh, target_soc=target_soc)
    with np.errstate(divide="ignore", invalid="ignore"):
        plain = np.where(power > 0, need / power, 0.0)
    out: FloatArray = np.where(np.isfinite(hours), np.maximum(hours - plain, 0.0), 0.0)
    return out


def deliverable_kwh(hours: FloatArray, power_kw: FloatArray, need_kwh: FloatArray, *,
                    battery_kwh: FloatArray | float | None = None,
                    target_soc: FloatArray | float = ASSUMED_TARGET_SOC) -> FloatArray:
    """The most of each need a car can still take in its last ``hours`` before it reaches its target (at most the
    need): the taper's slow end first, then full power (the inverse of ``need_hours``)."""
    h = np.maximum(np.asarray(hours, dtype=np.float64), 0.0)
    power = np.maximum(np.asarray(power_kw, dtype=np.float64), 0.0)
    need = np.maximum(np.asarray(need_kwh, dtype=np.float64), 0.0)
    target = np.broadcast_to(np.asarray(target_soc, dtype=np.float64), need.shape)
    battery = _battery(need, battery_kwh, target)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        floor_e = battery * np.maximum(target - FLOOR_SOC, 0.0)
        floor_h = np.where(power > 0, floor_e / (TAPER_FLOOR * power), np.inf)
        high = np.minimum(target, FLOOR_SOC)
        taper_e = battery * np.maximum(high - TAPER_START_SOC, 0.0)
        tau = (1.0 - TAPER_START_SOC) * battery / np.where(power > 0, power, np.inf)
        taper_h = np.where(high > TAPER_START_SOC, tau * np.log((1.0 - TAPER_START_SOC)
                                                                / np.maximum(1.0 - high, 1e-12)), 0.0)
        in_floor = TAPER_FLOOR * power * h
        in_taper = floor_e + battery * (1.0 - high) * np.expm1(np.minimum((h - floor_h) / tau, 50.0))
        in_flat = floor_e + taper_e + power * (h - floor_h - taper_h)
        energy = np.where(h <= floor_h, in_floor, np.where(h <= floor_h + taper_h, in_taper, in_flat))
    out: FloatArray = np.minimum(np.nan_to_num(energy, nan=0.0, posinf=np.inf), need)
    return out


def taken_kwh(hours: FloatArray, power_kw: FloatArray, need_kwh: FloatArray, *,
              battery_kwh: FloatArray | float | None = None,
              target_soc: FloatArray | float = ASSUMED_TARGET_SOC) -> FloatArray:
    """What each car charging at ``power_kw`` (its full power) from the start of its need takes of it in its first
    ``hours``: full power, then the taper's slow end (what is left is what it can still take in the time its
    need has left, ``deliverable_kwh``). A car that cannot charge takes nothing."""
    h = np.maximum(np.asarray(hours, dtype=np.float64), 0.0)
    power = np.maximum(np.asarray(power_kw, dtype=np.float64), 0.0)
    need = np.maximum(np.asarray(need_kwh, dtype=np.float64), 0.0)
    total = need_hours(need, power, battery_kwh=battery_kwh, target_soc=target_soc)
    with np.errstate(invalid="ignore"):
        left_h = np.where(np.isfinite(total), np.maximum(total - h, 0.0), 0.0)
    left = deliverable_kwh(left_h, power, need, battery_kwh=battery_kwh, target_soc=target_soc)
    out: FloatArray = np.where(power > 0, np.clip(need - left, 0.0, need), 0.0)
    return out
