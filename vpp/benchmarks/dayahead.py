"""Day-ahead scheduling benchmark: realistic random pools, fast solver against the exact LP."""

from __future__ import annotations

import argparse
import csv
import functools
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

import numpy as np

from vpp.algorithms.scheduling.exact import solve_exact_lp
from vpp.algorithms.scheduling.fast import solve_schedule
from vpp.algorithms.scheduling.problem import problem_from_instance

_PRICE_FILE = "Netherlands_day-ahead-2015-2024.csv"


@functools.lru_cache(maxsize=1)
def _hourly_prices_utc() -> dict[datetime, float]:
    """Dutch hourly day-ahead prices by UTC hour, coping with the file's two date formats and overlap."""
    prices: dict[datetime, float] = {}
    text = resources.files("vpp.data.ev2gym").joinpath(_PRICE_FILE).read_text(encoding="utf-8")
    for row in csv.DictReader(text.splitlines()):
        stamp = (row.get("Datetime (UTC)") or "").strip()
        if not stamp:
            continue  # the blank separator row between the two formats
        fmt = "%Y-%m-%d %H:%M:%S" if "-" in stamp else "%d/%m/%Y %H:%M"
        hour = datetime.strptime(stamp, fmt).replace(tzinfo=UTC)
        prices.setdefault(hour, float(row["Price (EUR/MWhe)"]))
    return prices


def _day_prices(rng: np.random.Generator, isps: int, isp_minutes: int) -> tuple[datetime, list[float]]:
    hourly = _hourly_prices_utc()
    day0 = datetime(2024, 1, 1, tzinfo=UTC) + timedelta(days=int(rng.integers(0, 360)))
    per_hour = 60 // isp_minutes
    prices: list[float] = []
    for t in range(isps):
        hour = day0 + timedelta(hours=t // per_hour)
        prices.append(hourly.get(hour, prices[-1] if prices else 80.0))
    return day0, prices


def generate_instance(
    sessions: int, *, v2g: bool, seed: int, isps: int = 96, with_pool_limit: bool = True
) -> dict[str, object]:
    """A realistic random pool: overnight home, evening home and daytime public/work sessions."""
    rng = np.random.default_rng(seed)
    isp_minutes = 15
    per_hour = 60 // isp_minutes
    start, prices = _day_prices(rng, isps, isp_minutes)
    kind = rng.choice(3, size=sessions, p=[0.35, 0.25, 0.40])
    arrival = np.zeros(sessions, dtype=np.int64)
    departure = np.zeros(sessions, dtype=np.int64)
    overnight = kind == 0
    departure[overnight] = np.rint(rng.normal(7.5, 1.0, overnight.sum()) * per_hour)
    evening = kind == 1
    arrival[evening] = np.rint(rng.normal(18.5, 1.5, evening.sum()) * per_hour)
    departure[evening] = isps
    day = kind == 2
    arrival[day] = np.rint(rng.uniform(7.0, 17.0, day.sum()) * per_hour)
    dwell = np.rint(rng.lognormal(np.log(3.0), 0.6, day.sum()) * per_hour)
    departure[day] = arrival[day] + np.maximum(dwell, 2)
    arrival = np.clip(arrival, 0, isps - 2)
    departure = np.clip(departure, arrival + 2, isps)
    max_kw = np.where(
        day, rng.choice([11.0, 22.0, 7.4], size=sessions), rng.choice([3.7, 7.4, 11.0], size=sessions)
    )
    window_h = (departure - arrival) * isp_minutes / 60.0
    energy = np.minimum(rng.uniform(5.0, 40.0, sessions), 0.9 * max_kw * window_h)
    battery = rng.choice([40.0, 58.0, 77.0, 100.0], size=sessions)
    soc = battery * rng.uniform(0.2, 0.6, sessions)
    min_soc = 0.2 * battery
    energy = np.where(v2g, np.minimum(energy, 0.9 * battery - soc), energy)
    records: list[dict[str, object]] = []
    for k in range(sessions):
        record: dict[str, object] = {
            "id": f"s{k}",
            "arrival": int(arrival[k]),
            "departure": int(departure[k]),
            "energy_kwh": round(float(energy[k]), 3),
            "max_kw": float(max_kw[k]),
            "min_kw": -float(max_kw[k]) if v2g else 0.0,
        }
        if v2g:
            record["battery_kwh"] = float(battery[k])
            record["soc_kwh"] = round(float(soc[k]), 3)
            record["min_soc_kwh"] = round(float(min_soc[k]), 3)
        records.append(record)
    pool_max: float | None = None
    if with_pool_limit and sessions:
        # Binding yet feasible: well below the pool's plugged power, well above its average need.
        average_need_kw = float(energy.sum()) / (isps * isp_minutes / 60.0)
        pool_max = round(max(1.6 * average_need_kw, 10.0), 1)
    return {
        "start": start.isoformat().replace("+00:00", "Z"),
        "isp_minutes": isp_minutes,
        "prices_eur_per_mwh": prices,
        "pool_max_kw": pool_max,
        "pool_min_kw": -pool_max if (v2g and pool_max is not None) else None,
        "sessions": records,
    }


def run_dayahead_bench(
    sessions: int, *, v2g: bool, seed: int = 1, exact_max_sessions: int = 20000
) -> dict[str, object]:
    """Time the fast solver on a generated pool and, when small enough, compare with the exact LP."""
    problem = problem_from_instance(generate_instance(sessions, v2g=v2g, seed=seed))
    fast = solve_schedule(problem)
    result: dict[str, object] = {
        "name": "dayahead",
        "sessions": sessions,
        "v2g": v2g,
        "method": fast.method,
        "solve_seconds": round(fast.solve_seconds, 4),
        "cost_eur": round(fast.cost_eur, 4),
        "exact_seconds": None,
        "exact_cost_eur": None,
        "gap_pct": None,
        "max_unmet_kwh": float(fast.unmet_kwh.max(initial=0.0)),
        "status": fast.status,
    }
    if sessions <= exact_max_sessions:
        exact = solve_exact_lp(problem)
        result["exact_seconds"] = round(exact.solve_seconds, 3)
        result["exact_cost_eur"] = round(exact.cost_eur, 4)
        result["exact_max_unmet_kwh"] = float(exact.unmet_kwh.max(initial=0.0))
        result["gap_pct"] = round(100.0 * (fast.cost_eur - exact.cost_eur) / max(abs(exact.cost_eur), 1e-9), 4)
    return result


def add_args(p: argparse.ArgumentParser) -> None:
    """Options of ``vpp bench dayahead``."""
    p.add_argument("--sessions", type=int, default=10_000)
    p.add_argument("--v2g", action="store_true")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--exact-max-sessions", type=int, default=20_000,
                   help="solve the exact LP for the gap up to this many sessions")


def run(args: argparse.Namespace) -> dict[str, Any]:
    """``vpp bench dayahead``: the fast scheduler on a generated pool, against the exact LP."""
    return run_dayahead_bench(args.sessions, v2g=args.v2g, seed=args.seed,
                              exact_max_sessions=args.exact_max_sessions)
