"""Learned charging-need defaults per EVSE and location from completed sessions, with fallbacks.

Departure is estimated from a LOW dwell-time quantile (leaving earlier than expected is the costly
mistake) and energy from a HIGH energy quantile (the driver should not come up short). An estimate
is used only with at least ``min_samples`` sessions; otherwise EVSE falls back to location, then to
the location category, then to the ElaadNL statistics for that category.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from vpp.domain.errors import InvalidInput
from vpp.domain.isp import require_utc, require_utc_index
from vpp.domain.needs import ChargingNeed, EstimateLevel, LocationCategory, NeedEstimate, NeedSource

HISTORY_COLUMNS = ("evse_id", "location_id", "category", "arrival", "departure", "energy_kwh")


@dataclass(frozen=True)
class LearnedNeedDefaults:
    """Need estimates by EVSE, location and category, plus the ElaadNL fallback per category."""

    by_evse: dict[str, NeedEstimate]
    by_location: dict[str, NeedEstimate]
    by_category: dict[LocationCategory, NeedEstimate]
    fallback: dict[LocationCategory, NeedEstimate]
    dwell_quantile: float
    energy_quantile: float
    min_samples: int


def _clean_history(history: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in HISTORY_COLUMNS if c not in history.columns]
    if missing:
        raise InvalidInput(f"history: missing columns {missing}")
    arrival = require_utc_index(history["arrival"], "history.arrival")
    departure = require_utc_index(history["departure"], "history.departure")
    frame = pd.DataFrame(
        {
            "evse_id": history["evse_id"].astype(str).to_numpy(),
            "location_id": history["location_id"].astype(str).to_numpy(),
            "category": [LocationCategory.parse(c).value for c in history["category"]],
            "dwell_hours": (departure.asi8 - arrival.asi8) / 3.6e12,
            "energy_kwh": pd.to_numeric(history["energy_kwh"], errors="coerce").to_numpy(dtype=np.float64),
        }
    )
    # Sessions that are unfinished, negative or absurdly long teach nothing about normal behaviour.
    usable = (frame["dwell_hours"] > 0) & (frame["dwell_hours"] <= 7 * 24) & (frame["energy_kwh"] >= 0)
    return frame[usable]


def _estimates(
    frame: pd.DataFrame, column: str, level: EstimateLevel, dwell_q: float, energy_q: float, min_samples: int
) -> dict[str, NeedEstimate]:
    grouped = frame.groupby(column, sort=False)
    stats = pd.DataFrame(
        {
            "samples": grouped.size(),
            "dwell": grouped["dwell_hours"].quantile(dwell_q),
            "energy": grouped["energy_kwh"].quantile(energy_q),
        }
    )
    stats = stats[stats["samples"] >= min_samples]
    return {
        str(key): NeedEstimate(
            level=level,
            key=str(key),
            samples=int(row.samples),
            dwell_hours=float(row.dwell),
            energy_kwh=float(row.energy),
            confidence=float((1.0 - dwell_q) * row.samples / (row.samples + min_samples)),
        )
        for key, row in stats.iterrows()
    }


def learn_need_defaults(
    history: pd.DataFrame,
    fallback: Mapping[LocationCategory, NeedEstimate],
    *,
    dwell_quantile: float = 0.25,
    energy_quantile: float = 0.75,
    min_samples: int = 20,
) -> LearnedNeedDefaults:
    """Learn need estimates from completed sessions (columns: ``HISTORY_COLUMNS``)."""
    for name, q in (("dwell_quantile", dwell_quantile), ("energy_quantile", energy_quantile)):
        if not 0.0 <= q <= 1.0:
            raise InvalidInput(f"{name}: must be within 0..1, got {q}")
    if min_samples < 1:
        raise InvalidInput(f"min_samples: must be >= 1, got {min_samples}")
    missing = [c.value for c in LocationCategory if c not in fallback]
    if missing:
        raise InvalidInput(f"fallback: no estimate for categories {missing}")
    frame = _clean_history(history)
    args = (dwell_quantile, energy_quantile, min_samples)
    by_category = _estimates(frame, "category", EstimateLevel.CATEGORY, *args)
    return LearnedNeedDefaults(
        by_evse=_estimates(frame, "evse_id", EstimateLevel.EVSE, *args),
        by_location=_estimates(frame, "location_id", EstimateLevel.LOCATION, *args),
        by_category={LocationCategory(k): v for k, v in by_category.items()},
        fallback=dict(fallback),
        dwell_quantile=dwell_quantile,
        energy_quantile=energy_quantile,
        min_samples=min_samples,
    )


def estimate_for(
    defaults: LearnedNeedDefaults,
    category: LocationCategory | str,
    *,
    evse_id: str | None = None,
    location_id: str | None = None,
) -> NeedEstimate:
    """The most specific estimate with enough samples: EVSE, then location, category, ElaadNL."""
    if evse_id is not None and evse_id in defaults.by_evse:
        return defaults.by_evse[evse_id]
    if location_id is not None and location_id in defaults.by_location:
        return defaults.by_location[location_id]
    cat = LocationCategory.parse(category)
    return defaults.by_category.get(cat) or defaults.fallback[cat]


def default_need(
    arrival: datetime,
    defaults: LearnedNeedDefaults,
    category: LocationCategory | str,
    *,
    evse_id: str | None = None,
    location_id: str | None = None,
    max_energy_kwh: float | None = None,
) -> ChargingNeed:
    """A need for a session without explicit or booked data: arrival + typical dwell, typical energy."""
    estimate = estimate_for(defaults, category, evse_id=evse_id, location_id=location_id)
    energy = estimate.energy_kwh if max_energy_kwh is None else min(estimate.energy_kwh, max(max_energy_kwh, 0.0))
    return ChargingNeed(
        departure=require_utc(arrival, "arrival") + timedelta(hours=estimate.dwell_hours),
        energy_kwh=energy,
        source=NeedSource.DEFAULT if estimate.level is EstimateLevel.ELAAD else NeedSource.LEARNED,
        confidence=estimate.confidence,
    )
