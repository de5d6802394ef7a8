"""ElaadNL charging statistics (vendored from ev2gym): arrival, connection-time and energy distributions.

The percentile tables list, for p = 0..100, the value exceeded by p % of charging events, so the
q-quantile sits at row 100 * (1 - q). The weekend arrival table has no workplace column; workplace
weekend arrivals reuse the weekday shape. ``simulate_history`` draws a synthetic session history from them
(for backtests and tests; the forecast algorithm itself takes its history as an argument).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from vpp.domain.errors import InvalidInput
from vpp.domain.isp import DEFAULT_MARKET_TZ, ISP_HOURS, market_zone
from vpp.domain.needs import EstimateLevel, LocationCategory, NeedEstimate

DATA_DIR = Path(__file__).resolve().parent / "ev2gym"
QUARTER_HOURS_PER_DAY = 96


@dataclass(frozen=True)
class ElaadDistributions:
    """The ElaadNL tables as arrays, per location category."""

    arrival_weekday: dict[LocationCategory, np.ndarray]
    arrival_weekend: dict[LocationCategory, np.ndarray]
    exceedance_pct: np.ndarray
    connection_hours: dict[LocationCategory, np.ndarray]
    energy_kwh: dict[LocationCategory, np.ndarray]


def _read(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise InvalidInput(f"data_dir: missing ElaadNL file {path.name}")
    return pd.read_csv(path, encoding="utf-8-sig")


def _shares(frame: pd.DataFrame, column: str, name: str) -> np.ndarray:
    values = frame[column].to_numpy(dtype=np.float64)
    if values.shape != (QUARTER_HOURS_PER_DAY,) or np.any(values < 0) or values.sum() <= 0:
        raise InvalidInput(f"{name}: column {column!r} must hold 96 non-negative quarter-hour shares")
    return np.asarray(values / values.sum(), dtype=np.float64)


@lru_cache(maxsize=4)
def load_elaad(data_dir: Path = DATA_DIR) -> ElaadDistributions:
    """Load and validate the vendored ElaadNL tables (cached)."""
    weekday = _read(data_dir / "distribution-of-arrival.csv")
    weekend = _read(data_dir / "distribution-of-arrival-weekend.csv")
    connection = _read(data_dir / "distribution-of-connection-time.csv")
    energy = _read(data_dir / "distribution-of-energy-demand.csv")
    pct = connection.iloc[:, 0].to_numpy(dtype=np.float64)
    if not np.array_equal(pct, np.arange(101.0)) or not np.array_equal(energy.iloc[:, 0].to_numpy(), pct):
        raise InvalidInput("data_dir: percentile tables must have rows 0..100")
    arrival_weekday, arrival_weekend, hours, kwh = {}, {}, {}, {}
    for category in LocationCategory:
        arrival_weekday[category] = _shares(weekday, category.value, "distribution-of-arrival")
        weekend_column = category.value if category.value in weekend.columns else None
        arrival_weekend[category] = (
            _shares(weekend, weekend_column, "distribution-of-arrival-weekend")
            if weekend_column
            else arrival_weekday[category]
        )
        hours[category] = connection[category.value].to_numpy(dtype=np.float64)
        kwh[category] = energy[category.value].to_numpy(dtype=np.float64)
    return ElaadDistributions(arrival_weekday, arrival_weekend, pct, hours, kwh)


def arrival_shares(category: LocationCategory | str, *, weekend: bool = False) -> np.ndarray:
    """Share of arrivals per local quarter-hour of the day (96 values summing to 1)."""
    tables = load_elaad()
    cat = LocationCategory.parse(category)
    return (tables.arrival_weekend if weekend else tables.arrival_weekday)[cat].copy()


def _quantile(table: np.ndarray, q: np.ndarray | float, pct: np.ndarray) -> np.ndarray:
    quantiles = np.asarray(q, dtype=np.float64)
    if np.any((quantiles < 0) | (quantiles > 1)) or not np.all(np.isfinite(quantiles)):
        raise InvalidInput("q: quantiles must be within 0..1")
    return np.asarray(np.interp(100.0 * (1.0 - quantiles), pct, table), dtype=np.float64)


def dwell_quantile_hours(q: np.ndarray | float, category: LocationCategory | str) -> np.ndarray:
    """Connection-time quantile(s) in hours for a location category."""
    tables = load_elaad()
    return _quantile(tables.connection_hours[LocationCategory.parse(category)], q, tables.exceedance_pct)


def energy_quantile_kwh(q: np.ndarray | float, category: LocationCategory | str) -> np.ndarray:
    """Energy-demand quantile(s) in kWh for a location category."""
    tables = load_elaad()
    return _quantile(tables.energy_kwh[LocationCategory.parse(category)], q, tables.exceedance_pct)


def _count(n: int) -> int:
    if n < 0:
        raise InvalidInput(f"n: must be >= 0, got {n}")
    return int(n)


def sample_dwell_hours(n: int, category: LocationCategory | str, rng: np.random.Generator) -> np.ndarray:
    """Draw ``n`` connection times (hours) by inverse-CDF sampling of the ElaadNL table."""
    return dwell_quantile_hours(rng.random(_count(n)), category)


def sample_energy_kwh(n: int, category: LocationCategory | str, rng: np.random.Generator) -> np.ndarray:
    """Draw ``n`` session energies (kWh) by inverse-CDF sampling of the ElaadNL table."""
    return energy_quantile_kwh(rng.random(_count(n)), category)


def sample_arrival_minutes(
    n: int, category: LocationCategory | str, rng: np.random.Generator, *, weekend: bool = False
) -> np.ndarray:
    """Draw ``n`` arrival times as minutes after local midnight (uniform within the drawn quarter-hour)."""
    shares = arrival_shares(category, weekend=weekend)
    slots = rng.choice(QUARTER_HOURS_PER_DAY, size=_count(n), p=shares)
    return (slots + rng.random(slots.size)) * 15.0


def sample_arrivals(
    day: date,
    n: int,
    category: LocationCategory | str,
    rng: np.random.Generator,
    tz: str = DEFAULT_MARKET_TZ,
) -> pd.DatetimeIndex:
    """Draw ``n`` UTC arrival times on local day ``day`` (weekend shape on Saturday/Sunday), sorted."""
    zone = market_zone(tz)
    minutes = np.sort(sample_arrival_minutes(n, category, rng, weekend=day.weekday() >= 5))
    midnight = pd.Timestamp(datetime.combine(day, time()))
    wall = pd.DatetimeIndex(midnight + pd.to_timedelta(minutes, unit="min"))
    # Wall-clock arrivals: times in the spring-forward gap move forward, repeated autumn times take summer time.
    local = wall.tz_localize(zone, ambiguous=np.ones(len(wall), dtype=bool), nonexistent="shift_forward")
    return local.tz_convert("UTC")


def elaad_need_estimates(
    dwell_quantile: float = 0.25, energy_quantile: float = 0.75, confidence_scale: float = 0.5
) -> dict[LocationCategory, NeedEstimate]:
    """ElaadNL dwell/energy quantiles per category as fallback need estimates (low confidence)."""
    return {
        category: NeedEstimate(
            level=EstimateLevel.ELAAD,
            key=category.value,
            samples=0,
            dwell_hours=float(dwell_quantile_hours(dwell_quantile, category)),
            energy_kwh=float(energy_quantile_kwh(energy_quantile, category)),
            confidence=confidence_scale * (1.0 - dwell_quantile),
        )
        for category in LocationCategory
    }


def simulate_history(
    days: int,
    sessions_per_day: float,
    category: LocationCategory | str,
    seed: int,
    *,
    start: date = date(2024, 1, 1),
    pool: str = "sim",
    max_kw: float = 11.0,
    tz: str = DEFAULT_MARKET_TZ,
) -> pd.DataFrame:
    """Sessions drawn from the ElaadNL samplers: Poisson count per day, arrival, dwell and energy."""
    if days < 1 or sessions_per_day < 0:
        raise InvalidInput("days must be >= 1 and sessions_per_day >= 0")
    rng = np.random.default_rng(seed)
    arrivals: list[pd.DatetimeIndex] = []
    for offset in range(days):
        count = int(rng.poisson(sessions_per_day))
        arrivals.append(sample_arrivals(start + timedelta(days=offset), count, category, rng, tz))
    arrival = arrivals[0].append(arrivals[1:]) if len(arrivals) > 1 else arrivals[0]
    n = len(arrival)
    # a session shorter than one ISP carries no flexibility and is rare in practice
    dwell_h = np.maximum(sample_dwell_hours(n, category, rng), ISP_HOURS)
    energy = np.minimum(sample_energy_kwh(n, category, rng), max_kw * dwell_h)
    return pd.DataFrame(
        {
            "arrival": arrival,
            "departure": arrival + pd.to_timedelta(dwell_h, unit="h"),
            "energy_kwh": energy,
            "pool": pool,
            "category": LocationCategory.parse(category).value,
        }
    )
