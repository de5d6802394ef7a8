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


class ForecastMemo:
    """Each ISP's forecast before gaps are filled, kept across calls over one ``history`` (read-only): it depends
    only on the ISP, the years moved back, ``weeks`` and ``tz``, and a planner forecasts the same ISPs again each
    time its horizon moves on by one. Holds at most ``max_entries`` (then starts over)."""

    def __init__(self, history: pd.Series, max_entries: int = 100_000) -> None:
        self.history = history
        self.max_entries = max_entries
        self.values: dict[tuple[datetime, timedelta, int, str], float] = {}
        self.hits = 0


def forecast_prices(history: pd.Series, isp_starts: Sequence[datetime], *, weeks: int = 4,
                    tz: str = "Europe/Amsterdam", memo: ForecastMemo | None = None) -> FloatArray:
    """Forecast price (EUR/MWh) per ISP start from ``history`` (regular steps, UTC index, EUR/MWh); ``memo``, kept
    by the caller over this same ``history``, saves the ISPs forecast before."""
    if memo is not None and memo.history is not history:
        raise InvalidInput("the forecast memo belongs to another price history")
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
    keys = [(start, shift, weeks, tz) for start in isp_starts]
    found = [None] * len(keys) if memo is None else [memo.values.get(key) for key in keys]
    todo = [i for i, value in enumerate(found) if value is None]
    forecast: FloatArray = np.array([np.nan if value is None else value for value in found], dtype=np.float64)
    if todo:
        forecast[todo] = _same_times_before(clean, [local[i] for i in todo], shift, weeks, zone)
    if memo is not None:
        memo.hits += len(keys) - len(todo)
        if len(memo.values) + len(todo) > memo.max_entries:
            memo.values.clear()
        memo.values.update((keys[i], float(forecast[i])) for i in todo)
    missing = np.isnan(forecast)
    if missing.all():
        raise InvalidInput("the price history has no values for the forecast period")
    if missing.any():
        forecast = np.array(pd.Series(forecast).interpolate(limit_direction="both"), dtype=np.float64)
    return np.asarray(forecast, dtype=np.float64)


def _same_times_before(clean: pd.Series, local: list[datetime], shift: timedelta, weeks: int,
                       zone: ZoneInfo) -> FloatArray:
    """Per ISP (local time), the mean price at the same local time of the ``weeks`` weeks before, ``shift`` back
    (NaN where none is known). Each ISP's value depends on it alone."""
    samples = np.full((weeks, len(local)), np.nan)
    for k in range(1, weeks + 1):
        # Same wall-clock time k weeks earlier, re-localised so that DST days map by local time of day.
        moments = [
            (moment.replace(tzinfo=None) - shift - timedelta(weeks=k)).replace(tzinfo=zone) for moment in local
        ]
        samples[k - 1] = _lookup(clean, pd.DatetimeIndex([m.astimezone(zone) for m in moments]).tz_convert("UTC"))
    counts = (~np.isnan(samples)).sum(axis=0)
    return np.where(counts > 0, np.nansum(samples, axis=0) / np.maximum(counts, 1), np.nan)
