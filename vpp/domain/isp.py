"""The imbalance settlement period (ISP) grid: UTC quarter-hours, and delivery days in a market's local time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd

from vpp.domain.errors import InvalidInput

ISP_MINUTES = 15
ISP = timedelta(minutes=ISP_MINUTES)
ISP_HOURS = ISP_MINUTES / 60
ISPS_PER_HOUR = 60 // ISP_MINUTES
DEFAULT_MARKET_TZ = "Europe/Amsterdam"
_ISP_NS = ISP_MINUTES * 60 * 1_000_000_000


def require_utc(moment: datetime, field: str = "moment") -> datetime:
    """Return ``moment`` converted to UTC; reject naive datetimes."""
    if not isinstance(moment, datetime):
        raise InvalidInput(f"{field}: expected a datetime, got {type(moment).__name__}")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InvalidInput(f"{field}: naive datetime {moment.isoformat()} has no time zone; use UTC")
    return moment.astimezone(UTC)


def require_utc_index(times: pd.DatetimeIndex | pd.Series | np.ndarray, field: str) -> pd.DatetimeIndex:
    """Return ``times`` as a UTC DatetimeIndex; reject naive values."""
    index = pd.DatetimeIndex(times)
    if index.tz is None:
        raise InvalidInput(f"{field}: naive timestamps have no time zone; use UTC")
    return index.tz_convert("UTC").as_unit("ns")


def floor_to_isp(moment: datetime) -> datetime:
    """Start of the ISP that contains ``moment`` (UTC)."""
    utc = require_utc(moment)
    return utc - timedelta(minutes=utc.minute % ISP_MINUTES, seconds=utc.second, microseconds=utc.microsecond)


def ceil_to_isp(moment: datetime) -> datetime:
    """First ISP boundary at or after ``moment`` (UTC)."""
    floored = floor_to_isp(moment)
    return floored if floored == require_utc(moment) else floored + ISP


def is_isp_aligned(moment: datetime) -> bool:
    """True when ``moment`` lies on a UTC quarter-hour boundary."""
    return floor_to_isp(moment) == require_utc(moment)


def isp_range(start: datetime, end: datetime) -> pd.DatetimeIndex:
    """UTC start times of the ISPs that overlap ``[start, end)``."""
    first = floor_to_isp(require_utc(start, "start"))
    stop = ceil_to_isp(require_utc(end, "end"))
    if stop < first:
        raise InvalidInput(f"end: {end.isoformat()} is before start {start.isoformat()}")
    return pd.date_range(first, stop, freq=f"{ISP_MINUTES}min", inclusive="left", tz="UTC", name="isp_start")


def market_zone(tz: str) -> ZoneInfo:
    """The ZoneInfo for a market time zone name, or InvalidInput."""
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidInput(f"tz: unknown time zone {tz!r}") from exc


def delivery_day_bounds(day: date, tz: str = DEFAULT_MARKET_TZ) -> tuple[datetime, datetime]:
    """UTC start and end of the local delivery day ``day`` in market zone ``tz``."""
    zone = market_zone(tz)
    local_start = datetime(day.year, day.month, day.day, tzinfo=zone)
    nxt = day + timedelta(days=1)
    local_end = datetime(nxt.year, nxt.month, nxt.day, tzinfo=zone)
    return local_start.astimezone(UTC), local_end.astimezone(UTC)


def delivery_day_isps(day: date, tz: str = DEFAULT_MARKET_TZ) -> pd.DatetimeIndex:
    """UTC start times of the ISPs of local day ``day`` (92, 96 or 100 of them)."""
    start, end = delivery_day_bounds(day, tz)
    return isp_range(start, end)


def delivery_day_of(moment: datetime, tz: str = DEFAULT_MARKET_TZ) -> date:
    """The local delivery day that contains ``moment``."""
    return require_utc(moment).astimezone(market_zone(tz)).date()


def isp_position_in_day(moment: datetime, tz: str = DEFAULT_MARKET_TZ) -> int:
    """0-based position of the ISP containing ``moment`` within its local delivery day."""
    start, _ = delivery_day_bounds(delivery_day_of(moment, tz), tz)
    return isp_index(moment, start)


def isp_index(moment: datetime, origin: datetime) -> int:
    """Number of whole ISPs from ``origin`` (aligned) to the ISP containing ``moment``."""
    origin_utc = require_utc(origin, "origin")
    if not is_isp_aligned(origin_utc):
        raise InvalidInput(f"origin: {origin_utc.isoformat()} is not on the 15-minute ISP grid")
    return (floor_to_isp(moment) - origin_utc) // ISP


def isp_start(index: int, origin: datetime) -> datetime:
    """UTC start of ISP number ``index`` counted from the aligned ``origin``."""
    origin_utc = require_utc(origin, "origin")
    if not is_isp_aligned(origin_utc):
        raise InvalidInput(f"origin: {origin_utc.isoformat()} is not on the 15-minute ISP grid")
    return origin_utc + index * ISP


@dataclass(frozen=True, slots=True)
class IspHorizon:
    """A run of ``count`` consecutive ISPs starting at the aligned UTC ``start``."""

    start: datetime
    count: int

    def __post_init__(self) -> None:
        start = require_utc(self.start, "horizon.start")
        if not is_isp_aligned(start):
            raise InvalidInput(f"horizon.start: {start.isoformat()} is not on the 15-minute ISP grid")
        if self.count <= 0:
            raise InvalidInput(f"horizon.count: must be positive, got {self.count}")
        object.__setattr__(self, "start", start)

    @classmethod
    def of_hours(cls, start: datetime, hours: float) -> IspHorizon:
        """A horizon of ``hours`` hours (rounded up to whole ISPs) from ``start``."""
        return cls(start, int(np.ceil(hours * ISPS_PER_HOUR - 1e-9)))

    @property
    def end(self) -> datetime:
        """UTC end (exclusive) of the last ISP."""
        return self.start + self.count * ISP

    @property
    def hours(self) -> float:
        """Length in hours."""
        return self.count * ISP_HOURS

    @property
    def index(self) -> pd.DatetimeIndex:
        """UTC start times of the ISPs."""
        return pd.date_range(self.start, periods=self.count, freq=f"{ISP_MINUTES}min", tz="UTC", name="isp_start")

    def hours_since_start(self, times: pd.DatetimeIndex) -> np.ndarray:
        """Float hours from the horizon start to each (tz-aware) time."""
        utc = require_utc_index(times, "times")
        start_ns = pd.Timestamp(self.start).value
        return (utc.asi8 - start_ns).astype(np.float64) / 3.6e12

    def positions(self, times: pd.DatetimeIndex) -> np.ndarray:
        """ISP positions (may fall outside 0..count-1) of the ISPs containing each time."""
        utc = require_utc_index(times, "times")
        return np.floor_divide(utc.asi8 - pd.Timestamp(self.start).value, _ISP_NS)
