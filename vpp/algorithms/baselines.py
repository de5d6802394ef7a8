"""Baselines: what would have been consumed without the activation (markets.md section 5.1).

Sign convention: positive power is consumption. Every baseline carries its method name so that a
settlement can state what it was measured against.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from vpp.domain.errors import InvalidInput

FloatArray = npt.NDArray[np.float64]

NOMINATED = "nominated"
METER_BEFORE = "meter_before"
UNCONTROLLED = "uncontrolled_counterfactual"
D_PROGNOSIS = "d_prognosis"


@dataclass(frozen=True)
class Baseline:
    """Baseline power values (kW, one per interval; sessions x intervals when per session) and method."""

    values_kw: FloatArray
    method: str


def _series(name: str, values: object) -> FloatArray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise InvalidInput(f"{name}: must be one-dimensional, got shape {array.shape}")
    return array


def nominated_baseline(schedule_kw: object) -> Baseline:
    """Use the declared (nominated) schedule as the baseline, unchanged."""
    return Baseline(values_kw=_series("schedule_kw", schedule_kw).copy(), method=NOMINATED)


def d_prognosis_baseline(prognosis_kw: object) -> Baseline:
    """Use the USEF D-Prognosis sent to the DSO as the baseline, unchanged."""
    return Baseline(values_kw=_series("prognosis_kw", prognosis_kw).copy(), method=D_PROGNOSIS)


def meter_before_baseline(
    measured_kw: object,
    *,
    step_s: float,
    activation_start: int,
    activation_steps: int,
    window_s: float = 300.0,
    min_coverage: float = 0.5,
) -> Baseline:
    """Hold the mean of the measurements in ``window_s`` before the activation start over the activation.

    Missing measurements are NaN; when fewer than ``min_coverage`` of the window's samples exist the
    baseline is NaN (unknown) rather than a guess.
    """
    measured = _series("measured_kw", measured_kw)
    if step_s <= 0 or window_s <= 0:
        raise InvalidInput("step_s/window_s: must be positive")
    if not 0 <= activation_start <= measured.shape[0]:
        raise InvalidInput(f"activation_start: {activation_start} outside the measured series")
    if activation_steps < 0:
        raise InvalidInput("activation_steps: negative")
    window_steps = max(1, round(window_s / step_s))
    window = measured[max(0, activation_start - window_steps) : activation_start]
    valid = ~np.isnan(window)
    if window_steps and valid.sum() >= min_coverage * window_steps and valid.any():
        level = float(window[valid].mean())
    else:
        level = float("nan")
    return Baseline(values_kw=np.full(activation_steps, level), method=METER_BEFORE)


def uncontrolled_baseline(
    arrival_h: object,
    departure_h: object,
    energy_needed_kwh: object,
    max_kw: object,
    *,
    intervals: int,
    interval_h: float = 0.25,
) -> Baseline:
    """Per session: charge at full power from plug-in until the need is met (or departure), per interval.

    Times are hours from the start of the grid; values are the mean power in each interval, sessions x
    intervals.
    """
    arrival = _series("arrival_h", arrival_h)
    departure = _series("departure_h", departure_h)
    energy = _series("energy_needed_kwh", energy_needed_kwh)
    power = _series("max_kw", max_kw)
    n = arrival.shape[0]
    for name, array in (("departure_h", departure), ("energy_needed_kwh", energy), ("max_kw", power)):
        if array.shape[0] != n:
            raise InvalidInput(f"{name}: expected {n} values, got {array.shape[0]}")
    if (departure < arrival).any():
        raise InvalidInput("departure_h: before arrival_h")
    if (energy < 0).any() or (power < 0).any():
        raise InvalidInput("energy_needed_kwh/max_kw: negative")
    with np.errstate(divide="ignore", invalid="ignore"):
        duration_h = np.where(power > 0, energy / power, 0.0)
    end = np.minimum(arrival + duration_h, departure)
    edges = np.arange(intervals + 1, dtype=np.float64) * interval_h
    overlap_h = np.clip(
        np.minimum(end[:, None], edges[None, 1:]) - np.maximum(arrival[:, None], edges[None, :-1]), 0.0, None
    )
    return Baseline(values_kw=power[:, None] * overlap_h / interval_h, method=UNCONTROLLED)
