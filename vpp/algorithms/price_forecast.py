"""Day-ahead price forecast from history: the same-weekday profile of recent weeks, pure.

For each ISP of the target period, the forecast is the mean price at the same local time of day on the same
weekday of the previous ``weeks`` weeks (local time, so a profile survives DST changes). When the history ends
before those weeks, the target is moved back by whole years of 52 weeks (keeping the weekday) until it is
covered: a seasonal analogue, which is what a simulation far beyond the data needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from vpp.domain.errors import InvalidInput

FloatArray = NDArray[np.float64]
_YEAR_OF_WEEKS = timedelta(weeks=52)


def _lookup(history: pd.Series, moments_utc: pd.DatetimeIndex) -> FloatArray:
    """Price at each moment: the value of the history step that contains it (NaN where missing)."""
    positions = history.index.searchsorted(moments_utc, side="right") - 1
    values = np.full(len(moments_utc), np.nan)
    inside = positions >= 0
    values[inside] = history.to_numpy(dtype=np.float64)[positions[inside]]
    step = history.index[1] - history.index[0] if len(history) > 1 else pd.Timedelta(hours=1)
    beyond = moments_utc >= history.index[-1] + step
    values[np.asarray(beyond)] = np.nan
    return values


def forecast_prices(history: pd.Series, isp_starts: Sequence[datetime], *, weeks: int = 4,
                    tz: str = "Europe/Amsterdam") -> FloatArray:
    """Forecast price (EUR/MWh) per ISP start from ``history`` (regular steps, UTC index, EUR/MWh)."""
    if weeks <= 0:
        raise InvalidInput("weeks must be positive")
    if len(history) == 0:
        raise InvalidInput("the price history is empty")
    if not isp_starts:
        return np.zeros(0)
    zone = ZoneInfo(tz)
    index = history.index
    if not isinstance(index, pd.DatetimeIndex) or index.tz is None:
        raise InvalidInput("the price history needs a timezone-aware index")
    clean = history.dropna()
    local = [start.astimezone(zone) for start in isp_starts]
    shift = timedelta(0)
    first_needed = min(local) - timedelta(weeks=weeks)
    while first_needed - shift > clean.index[-1].to_pydatetime() - timedelta(days=1):
        shift += _YEAR_OF_WEEKS
    if first_needed - shift < clean.index[0].to_pydatetime():
        raise InvalidInput(
            f"the price history ({clean.index[0]} to {clean.index[-1]}) does not cover {weeks} weeks "
            f"before {min(isp_starts).isoformat()}"
        )
    samples = np.full((weeks, len(local)), np.nan)
    for k in range(1, weeks + 1):
        # Same wall-clock time k weeks earlier, re-localised so that DST days map by local time of day.
        moments = [
            (moment.replace(tzinfo=None) - shift - timedelta(weeks=k)).replace(tzinfo=zone) for moment in local
        ]
        samples[k - 1] = _lookup(clean, pd.DatetimeIndex([m.astimezone(zone) for m in moments]).tz_convert("UTC"))
    counts = (~np.isnan(samples)).sum(axis=0)
    forecast: FloatArray = np.where(counts > 0, np.nansum(samples, axis=0) / np.maximum(counts, 1), np.nan)
    missing = np.isnan(forecast)
    if missing.all():
        raise InvalidInput("the price history has no values for the forecast period")
    if missing.any():
        forecast = np.array(pd.Series(forecast).interpolate(limit_direction="both"), dtype=np.float64)
    return np.asarray(forecast, dtype=np.float64)
