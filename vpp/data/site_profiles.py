"""PV and household load profiles for sites behind the meter (vendored from ev2gym, MIT; see ev2gym/README.md).

``pv_kw_per_kwp``: Renewables.ninja's hourly output of 1 kWp in the Netherlands over 2019 (UTC), each hour's
value held for its four quarter-hours. ``household_load_kw``: Pecan Street's 15-minute loads of six homes over one
year (``residential_loads_6_homes.csv``: columns 1, 2, 3, 5, 6 and 7 of ev2gym's ``residential_loads.csv``, the
homes without negative values, unchanged). A moment of another year takes the same day of the year and time
(UTC for PV, the given local zone for the homes); 29 February takes the 28th.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
import pandas as pd

from vpp.domain.errors import InvalidInput

DATA_DIR = Path(__file__).resolve().parent / "ev2gym"
PV_FILE = DATA_DIR / "pv_netherlands.csv"
HOMES_FILE = DATA_DIR / "residential_loads_6_homes.csv"
FloatArray = npt.NDArray[np.float64]


@lru_cache(maxsize=1)
def _pv_table() -> FloatArray:
    """365 x 24 kW per kWp (UTC day of the year, hour)."""
    frame = pd.read_csv(PV_FILE)
    values = frame["electricity"].to_numpy(dtype=np.float64)[: 365 * 24]
    table: FloatArray = np.clip(values, 0.0, None).reshape(365, 24)
    return table


@lru_cache(maxsize=1)
def _homes_table() -> FloatArray:
    """365 x 96 x homes kW (local day of the year, quarter-hour, home)."""
    values = pd.read_csv(HOMES_FILE, header=None).to_numpy(dtype=np.float64)
    table: FloatArray = np.clip(values[: 365 * 96], 0.0, None).reshape(365, 96, values.shape[1])
    return table


def _day_of_year(moment: datetime) -> int:
    day = moment.timetuple().tm_yday - 1
    leap = moment.year % 4 == 0 and (moment.year % 100 != 0 or moment.year % 400 == 0)
    if leap and day >= 59:
        day -= 1
    return min(day, 364)


def pv_kw_per_kwp(isp_starts: list[datetime]) -> FloatArray:
    """Average kW per installed kWp in each ISP."""
    table = _pv_table()
    out = np.empty(len(isp_starts))
    for k, at in enumerate(isp_starts):
        utc = at.astimezone(ZoneInfo("UTC"))
        out[k] = table[_day_of_year(utc), utc.hour]
    return out


def homes() -> int:
    """How many household profiles there are."""
    return int(_homes_table().shape[2])


def household_load_kw(isp_starts: list[datetime], home: int, zone: str) -> FloatArray:
    """Average kW of household ``home`` (0-based) in each ISP, by local day of the year and time."""
    table = _homes_table()
    if not 0 <= home < table.shape[2]:
        raise InvalidInput(f"household profile {home} does not exist; 0 to {table.shape[2] - 1}")
    tz = ZoneInfo(zone)
    out = np.empty(len(isp_starts))
    for k, at in enumerate(isp_starts):
        local = at.astimezone(tz)
        out[k] = table[_day_of_year(local), (local.hour * 60 + local.minute) // 15, home]
    return out
