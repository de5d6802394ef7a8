"""Small loaders and samplers for the vendored ElaadNL / ev2gym statistics (vpp/data/ev2gym)."""

from __future__ import annotations

import bisect
import csv
import json
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from importlib.resources import files
from pathlib import Path
from zoneinfo import ZoneInfo

CATEGORIES = ("private", "public", "workplace")
QUARTER_HOURS_PER_DAY = 96
# ElaadNL arrival times are Dutch local clock times.
LOCAL_ZONE = ZoneInfo("Europe/Amsterdam")


def default_data_dir() -> Path:
    """Folder of the vendored ev2gym data files."""
    return Path(str(files("vpp.data").joinpath("ev2gym")))


@dataclass(frozen=True)
class EvModel:
    """One EV model: battery, charge and discharge limits in kW, and its registration count (weight)."""

    name: str
    battery_kwh: float
    max_ac_kw: float
    max_dc_kw: float
    max_ac_discharge_kw: float
    max_dc_discharge_kw: float
    registrations: int


def _read_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    # The CSVs start with a UTF-8 byte-order mark.
    with path.open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.reader(handle))
    return rows[0], rows[1:]


def _columns(header: list[str], rows: list[list[str]]) -> dict[str, list[float]]:
    table: dict[str, list[float]] = {}
    for index, name in enumerate(header[1:], start=1):
        table[name.strip().lower()] = [float(row[index]) if row[index].strip() else 0.0 for row in rows]
    return table


@cache
def load_arrival_weights(data_dir: Path, weekend: bool) -> dict[str, list[float]]:
    """Share of arrivals per quarter-hour (96 values) by category; weekend has no workplace column."""
    name = "distribution-of-arrival-weekend.csv" if weekend else "distribution-of-arrival.csv"
    header, rows = _read_rows(data_dir / name)
    table = _columns(header, rows[:QUARTER_HOURS_PER_DAY])
    table.setdefault("workplace", table["public"])
    return table


@cache
def load_percentiles(data_dir: Path, name: str) -> dict[str, list[float]]:
    """A percentile table (rows 0..100) by category, e.g. connection time (h) or energy demand (kWh)."""
    header, rows = _read_rows(data_dir / name)
    return _columns(header, rows)


@cache
def load_ev_models(data_dir: Path, v2g: bool) -> tuple[EvModel, ...]:
    """EV models from ev_specs.json, or the V2G-capable list when ``v2g``."""
    name = "ev_specs_v2g_enabled2024.json" if v2g else "ev_specs.json"
    raw = json.loads((data_dir / name).read_text(encoding="utf-8"))
    return tuple(
        EvModel(
            name=model,
            battery_kwh=float(spec["battery_capacity"]),
            max_ac_kw=float(spec["max_ac_charge_power"]),
            max_dc_kw=float(spec["max_dc_charge_power"]),
            max_ac_discharge_kw=float(spec.get("max_ac_discharge_power", 0.0)),
            max_dc_discharge_kw=float(spec.get("max_dc_discharge_power", 0.0)),
            registrations=int(spec.get("number_of_registrations", 1)),
        )
        for model, spec in raw.items()
    )


class ElaadSampler:
    """Draws arrivals, connection times, energy demands and car models from the ElaadNL statistics."""

    def __init__(
        self, rng: random.Random, category: str = "public", *, v2g: bool = False, data_dir: Path | None = None
    ) -> None:
        if category not in CATEGORIES:
            raise ValueError(f"category must be one of {CATEGORIES}")
        self._rng = rng
        self._category = category
        self._dir = data_dir or default_data_dir()
        self._models = load_ev_models(self._dir, v2g)

    def _percentile(self, name: str) -> float:
        values = load_percentiles(self._dir, name)[self._category]
        position = self._rng.uniform(0, len(values) - 1)
        low = int(position)
        high = min(low + 1, len(values) - 1)
        return values[low] + (values[high] - values[low]) * (position - low)

    def next_arrival(self, after: datetime) -> datetime:
        """Next arrival at or after ``after``: a quarter-hour drawn from that day's arrival distribution."""
        day = after.astimezone(LOCAL_ZONE).replace(hour=0, minute=0, second=0, microsecond=0)
        for _ in range(14):
            weights = load_arrival_weights(self._dir, day.weekday() >= 5)[self._category]
            cumulative = list(_accumulate(weights))
            draw = self._rng.uniform(0, cumulative[-1])
            slot = min(bisect.bisect_left(cumulative, draw), QUARTER_HOURS_PER_DAY - 1)
            candidate = day + timedelta(minutes=15 * slot, seconds=self._rng.uniform(0, 900))
            if candidate >= after:
                return candidate.astimezone(after.tzinfo)
            day += timedelta(days=1)
        return after

    def connection_hours(self) -> float:
        """Plug-in duration in hours (at least a quarter of an hour)."""
        return max(0.25, self._percentile("distribution-of-connection-time.csv"))

    def energy_demand_kwh(self) -> float:
        """Energy the driver wants in this session, kWh (at least 1)."""
        return max(1.0, self._percentile("distribution-of-energy-demand.csv"))

    def car(self) -> EvModel:
        """A car model drawn by registration count."""
        return self._rng.choices(self._models, weights=[m.registrations for m in self._models])[0]


def _accumulate(values: list[float]) -> list[float]:
    total = 0.0
    out = []
    for value in values:
        total += value
        out.append(total)
    return out
