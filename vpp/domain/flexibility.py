"""Flexibility value objects: per-session inputs and envelopes, the pool model, pool aggregates.

Sign convention: positive power/energy = charging (consumption), negative = discharging (V2G).
Cumulative energies count from the horizon start (or the plug-in, if later) to the END of each ISP.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from vpp.domain.errors import InvalidInput
from vpp.domain.isp import IspHorizon, require_utc_index

FloatArray = np.ndarray


def _unset() -> FloatArray:
    return np.empty(0)


def _vector(values: object, name: str, n: int, *, default: float | None = None) -> FloatArray:
    if values is None or (isinstance(values, np.ndarray) and values.size == 0 and n > 0 and default is not None):
        if default is None:
            raise InvalidInput(f"{name}: required")
        return np.full(n, default, dtype=np.float64)
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 0:
        array = np.full(n, float(array))
    if array.shape != (n,):
        raise InvalidInput(f"{name}: expected {n} values, got shape {array.shape}")
    return array


def _first_bad(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def discharge_limit_kw(
    discharge_kw: FloatArray, evse_capable: np.ndarray, connection_allows: np.ndarray, driver_consents: np.ndarray
) -> FloatArray:
    """The ``min_kw`` per session: ``-discharge_kw`` when EVSE, connection and driver all allow V2G, else 0."""
    allowed = np.asarray(evse_capable, bool) & np.asarray(connection_allows, bool) & np.asarray(driver_consents, bool)
    return np.where(allowed, -np.abs(np.asarray(discharge_kw, dtype=np.float64)), 0.0)


@dataclass(frozen=True)
class SessionFlexInput:
    """Per-session arrays (length n): the problem object for building envelopes.

    ``energy_kwh`` is the energy still needed from max(plugged_in, horizon start) until departure.
    ``battery_kwh`` / ``soc_kwh`` may hold NaN where unknown; ``min_kw`` is 0 or a negative discharge limit.
    Optional arrays left out default to: min_kw 0, battery and SoC unknown, min_soc_kwh 0.
    """

    plugged_in: pd.DatetimeIndex
    departure: pd.DatetimeIndex
    energy_kwh: FloatArray
    max_kw: FloatArray
    min_kw: FloatArray = field(default_factory=_unset)
    battery_kwh: FloatArray = field(default_factory=_unset)
    soc_kwh: FloatArray = field(default_factory=_unset)
    min_soc_kwh: FloatArray = field(default_factory=_unset)

    def __post_init__(self) -> None:
        plugged = require_utc_index(self.plugged_in, "plugged_in")
        departure = require_utc_index(self.departure, "departure")
        n = len(plugged)
        if len(departure) != n:
            raise InvalidInput(f"departure: expected {n} values, got {len(departure)}")
        if plugged.hasnans or departure.hasnans:
            raise InvalidInput("plugged_in/departure: missing timestamps")
        early = departure.asi8 < plugged.asi8
        if early.any():
            raise InvalidInput(f"departure: session {_first_bad(early)} departs before it is plugged in")
        fields: dict[str, FloatArray] = {
            "energy_kwh": _vector(self.energy_kwh, "energy_kwh", n),
            "max_kw": _vector(self.max_kw, "max_kw", n),
            "min_kw": _vector(self.min_kw, "min_kw", n, default=0.0),
            "battery_kwh": _vector(self.battery_kwh, "battery_kwh", n, default=np.nan),
            "soc_kwh": _vector(self.soc_kwh, "soc_kwh", n, default=np.nan),
            "min_soc_kwh": _vector(self.min_soc_kwh, "min_soc_kwh", n, default=0.0),
        }
        for name in ("energy_kwh", "max_kw", "min_kw", "min_soc_kwh"):
            if not np.all(np.isfinite(fields[name])):
                raise InvalidInput(f"{name}: session {_first_bad(~np.isfinite(fields[name]))} is not finite")
        checks = {
            "energy_kwh": fields["energy_kwh"] < 0,
            "max_kw": fields["max_kw"] < 0,
            "min_kw": fields["min_kw"] > 0,
            "min_soc_kwh": fields["min_soc_kwh"] < 0,
            "battery_kwh": fields["battery_kwh"] <= 0,
            "soc_kwh": (fields["soc_kwh"] < 0) | (fields["soc_kwh"] > fields["battery_kwh"]),
        }
        reasons = {
            "energy_kwh": "must be >= 0",
            "max_kw": "must be >= 0",
            "min_kw": "must be <= 0 (a discharge limit)",
            "min_soc_kwh": "must be >= 0",
            "battery_kwh": "must be > 0 when known",
            "soc_kwh": "must be within 0..battery_kwh",
        }
        for name, bad in checks.items():
            if bad.any():
                raise InvalidInput(f"{name}: session {_first_bad(bad)} {reasons[name]}")
        object.__setattr__(self, "plugged_in", plugged)
        object.__setattr__(self, "departure", departure)
        for name, value in fields.items():
            object.__setattr__(self, name, value)

    @property
    def n(self) -> int:
        """Number of sessions."""
        return len(self.plugged_in)


@dataclass(frozen=True)
class SessionEnvelopes:
    """Per-session flexibility over a horizon in compact form (float64 vectors of length n).

    ``start_h`` / ``departure_h``: plug-in (clipped to the horizon start) and departure, hours from the
    horizon start. ``energy_required_kwh`` must be delivered by departure; ``energy_max_kwh`` is the most
    that can be; ``unmet`` flags needs above that, with ``shortfall_kwh`` the part that cannot be delivered.
    ``headroom_kwh`` caps the cumulative energy (battery room), ``floor_kwh`` (<= 0) is the SoC floor for
    V2G relative to the start. ``envelope_arrays`` turns this into per-ISP arrays.
    """

    horizon: IspHorizon
    start_h: FloatArray
    departure_h: FloatArray
    max_kw: FloatArray
    min_kw: FloatArray
    energy_requested_kwh: FloatArray
    energy_required_kwh: FloatArray
    energy_max_kwh: FloatArray
    headroom_kwh: FloatArray
    floor_kwh: FloatArray
    unmet: np.ndarray
    shortfall_kwh: FloatArray

    @property
    def n(self) -> int:
        """Number of sessions."""
        return int(self.start_h.shape[0])

    @property
    def window_h(self) -> FloatArray:
        """Plugged-in hours from the (clipped) start until departure."""
        return np.asarray(np.maximum(self.departure_h - self.start_h, 0.0), dtype=np.float64)


@dataclass(frozen=True)
class EnvelopeArrays:
    """Dense per-session (rows) and per-ISP (columns) envelopes for the sessions ``index``.

    ``p_min_kw``/``p_max_kw`` are average-power bounds per ISP (0 outside the plugged window, prorated in
    partial ISPs); ``e_min_kwh``/``e_max_kwh`` bound the cumulative energy at the end of each ISP;
    ``baseline_kw`` is the uncontrolled counterfactual (max power from plug-in until the need is met).
    """

    index: np.ndarray
    p_min_kw: FloatArray
    p_max_kw: FloatArray
    e_min_kwh: FloatArray
    e_max_kwh: FloatArray
    baseline_kw: FloatArray


@dataclass(frozen=True)
class LagModel:
    """The shared-lag pool model: which sessions are pooled flexibly and their nominal charging ramps.

    A flexible session charges along its nominal ramp ``energy_required_kwh * clip((s - start_h) /
    nominal_h, 0, 1)`` evaluated at a pool-wide virtual time ``s`` that lags real time by at most
    ``max_lag_h`` and advances at most ``catch_up`` ISPs per ISP. Rigid sessions follow their baseline.
    """

    envelopes: SessionEnvelopes
    flexible: np.ndarray
    nominal_h: FloatArray
    max_lag_h: float
    catch_up: int
    site_codes: np.ndarray | None
    site_overloaded: np.ndarray | None

    @property
    def nominal_kw(self) -> FloatArray:
        """Nominal ramp power per session (0 for rigid sessions)."""
        rate = np.zeros(self.envelopes.n)
        np.divide(self.envelopes.energy_required_kwh, self.nominal_h, out=rate, where=self.flexible)
        return rate


@dataclass(frozen=True)
class PoolFlexibility:
    """Per pool (rows) and ISP (columns): baseline, guaranteed power and cumulative-energy bounds.

    Any pool trajectory with power within [p_min_kw, p_max_kw] and cumulative energy (end of ISP) within
    [e_min_kwh, e_max_kwh] can be split exactly over the members by ``disaggregate``. ``feasible`` is
    False for a pool whose bounds are empty (e.g. a site whose must-run load exceeds its cap).
    """

    horizon: IspHorizon
    baseline_kw: FloatArray
    p_min_kw: FloatArray
    p_max_kw: FloatArray
    e_min_kwh: FloatArray
    e_max_kwh: FloatArray
    sessions: np.ndarray
    flexible_sessions: np.ndarray
    feasible: np.ndarray

    @property
    def n_pools(self) -> int:
        """Number of pools."""
        return int(self.baseline_kw.shape[0])
