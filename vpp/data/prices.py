"""Dutch day-ahead prices (ENTSO-E via ev2gym) as a UTC hourly series, and per-ISP prices.

Quirks of the vendored file the loader copes with: two timestamp formats (``YYYY-MM-DD HH:MM:SS`` up to
2023-09-30, ``DD/MM/YYYY HH:MM`` after), a blank separator row, January-September 2023 listed twice with
identical prices, and two single missing hours (2023-12-30 23:00 and 2024-12-30 23:00 UTC) which are
interpolated from their neighbours. Longer gaps stay missing and are refused by ``prices_for_isps``.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from vpp.domain.errors import InvalidInput
from vpp.domain.isp import ISP_MINUTES, require_utc_index

PRICE_FILE = Path(__file__).resolve().parent / "ev2gym" / "Netherlands_day-ahead-2015-2024.csv"
UTC_COLUMN = "Datetime (UTC)"
PRICE_COLUMN = "Price (EUR/MWhe)"
SERIES_NAME = "price_eur_per_mwh"


def _parse_times(text: pd.Series) -> pd.Series:
    iso = text.str.match(r"^\d{4}-\d{2}-\d{2} ")
    parsed = pd.Series(pd.NaT, index=text.index, dtype="datetime64[ns, UTC]")
    parsed[iso] = pd.to_datetime(text[iso], format="%Y-%m-%d %H:%M:%S", utc=True)
    parsed[~iso] = pd.to_datetime(text[~iso], format="%d/%m/%Y %H:%M", utc=True)
    return parsed


@lru_cache(maxsize=4)
def load_day_ahead_prices(path: Path = PRICE_FILE, max_gap_hours: int = 1) -> pd.Series:
    """Hourly day-ahead prices (EUR/MWh) indexed by UTC hour start; cached, treat as read-only."""
    if not path.exists():
        raise InvalidInput(f"path: price file {path} does not exist")
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = {UTC_COLUMN, PRICE_COLUMN} - set(raw.columns)
    if missing:
        raise InvalidInput(f"path: price file lacks columns {sorted(missing)}")
    text = raw[UTC_COLUMN].str.strip()
    rows = raw[text != ""]
    times = _parse_times(text[text != ""])
    prices = pd.to_numeric(rows[PRICE_COLUMN], errors="coerce")
    if prices.isna().any():
        bad = rows.loc[prices.isna(), UTC_COLUMN].iloc[0]
        raise InvalidInput(f"path: non-numeric price at {bad}")
    series = pd.Series(prices.to_numpy(dtype=np.float64), index=pd.DatetimeIndex(times), name=SERIES_NAME)
    duplicated = series.index.duplicated(keep="first")
    if duplicated.any():
        first = series[~duplicated]
        clash = (series[duplicated] - first.reindex(series.index[duplicated])).abs() > 1e-9
        if clash.any():
            raise InvalidInput(f"path: conflicting duplicate prices, first at {clash.index[clash][0]}")
        series = first
    series = series.sort_index()
    full = pd.date_range(series.index[0], series.index[-1], freq="h", tz="UTC", name="hour_start")
    series = series.reindex(full)
    if max_gap_hours > 0:
        missing_hour = series.isna()
        run = (missing_hour != missing_hour.shift()).cumsum()
        run_length = missing_hour.groupby(run).transform("sum")
        short_gap = missing_hour & (run_length <= max_gap_hours)
        filled = series.interpolate(method="linear", limit_area="inside")
        series = series.where(~short_gap, filled)
    series.name = SERIES_NAME
    return series


def price_coverage(path: Path = PRICE_FILE) -> tuple[datetime, datetime]:
    """First hour start and end (exclusive) of the price series, UTC."""
    series = load_day_ahead_prices(path)
    return series.index[0].to_pydatetime(), (series.index[-1] + pd.Timedelta(hours=1)).to_pydatetime()


def prices_for_isps(index: pd.DatetimeIndex, path: Path = PRICE_FILE) -> pd.Series:
    """Price (EUR/MWh) per ISP start in ``index``: each hourly price repeated for its four quarter-hours."""
    isps = require_utc_index(index, "index")
    if len(isps) == 0:
        return pd.Series([], index=isps, name=SERIES_NAME, dtype=np.float64)
    ns = isps.asi8
    if np.any(ns % (ISP_MINUTES * 60 * 1_000_000_000) != 0):
        raise InvalidInput("index: timestamps must be ISP starts on the UTC quarter-hour grid")
    series = load_day_ahead_prices(path)
    first, end = series.index[0], series.index[-1] + pd.Timedelta(hours=1)
    if isps.min() < first or isps.max() >= end:
        raise InvalidInput(
            f"index: prices cover {first.isoformat()} to {end.isoformat()} (UTC); "
            f"requested {isps.min().isoformat()} to {isps.max().isoformat()}"
        )
    values = series.reindex(isps.floor("h")).to_numpy()
    if np.isnan(values).any():
        gap = isps[np.isnan(values)][0]
        raise InvalidInput(f"index: no day-ahead price for the hour starting {gap.floor('h').isoformat()}")
    return pd.Series(values, index=isps, name=SERIES_NAME)
