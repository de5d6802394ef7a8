"""``vpp bench replan``: one re-plan of a large pool (present sessions and forecast arrivals), timed.

The pool is planned at 14:00 up to the end of the next day (the horizon a re-plan has after the day-ahead
auction), with real Dutch prices, a committed position for the rest of today, an aFRR award in the evening
product, a congestion point under a cap in the evening and §14a devices curtailed at 4.2 kW. ``seconds`` is
the median wall time of ``plan_pool`` over ``--repeat`` runs; building the problem is not part of it (the
service reads the fleet it builds from anyway). ``greedy_reference_seconds`` times the plain price-order greedy
on the same sessions in the same run, a yardstick for how loaded the machine was.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace
from typing import Any

import numpy as np

from vpp.algorithms.planning import Plan, PlanProblem, plan_pool
from vpp.algorithms.scheduling import SchedulingProblem, solve_schedule
from vpp.benchmarks.dayahead import _hourly_prices_utc

ISPS_PER_HOUR = 4
START_HOUR = 14


def _prices(rng: np.random.Generator, isps: int) -> np.ndarray:
    hourly = sorted(_hourly_prices_utc().items())
    first = int(rng.integers(0, len(hourly) - isps // ISPS_PER_HOUR - 48))
    # Align the horizon's first hour to the local afternoon the pool is planned at.
    while hourly[first][0].hour != START_HOUR - 2:
        first += 1
    return np.repeat([p for _, p in hourly[first:first + isps // ISPS_PER_HOUR + 1]], ISPS_PER_HOUR)[:isps]


def replan_problem(sessions: int, *, seed: int = 1, forecast_share: float = 0.3) -> PlanProblem:
    """A pool of ``sessions`` plugged in at 14:00 plus ``forecast_share`` as many forecast arrivals."""
    rng = np.random.default_rng(seed)
    isps = (24 - START_HOUR + 24) * ISPS_PER_HOUR
    arrivals = round(sessions * forecast_share)
    n = sessions + arrivals
    arrival = np.zeros(n, dtype=np.int64)
    # Forecast cars arrive in the evening of today and during tomorrow.
    later = np.clip(rng.normal(4.5, 2.0, arrivals) * ISPS_PER_HOUR, 1, isps - 8).astype(np.int64)
    tomorrow = rng.random(arrivals) < 0.4
    later[tomorrow] = np.clip(rng.normal(18.0, 3.0, tomorrow.sum()) * ISPS_PER_HOUR, 1, isps - 8)
    arrival[sessions:] = later
    stay = np.clip(rng.normal(9.0, 4.0, n) * ISPS_PER_HOUR, 2, None).astype(np.int64)
    departure = np.minimum(arrival + stay, isps)
    max_kw = rng.choice([3.7, 7.4, 11.0, 22.0], size=n, p=[0.1, 0.2, 0.6, 0.1])
    window_h = (departure - arrival) / ISPS_PER_HOUR
    energy = np.minimum(rng.uniform(5.0, 45.0, n), 0.9 * max_kw * window_h)
    prices = _prices(rng, isps)
    today = (24 - START_HOUR) * ISPS_PER_HOUR
    # The committed position: the pool's uncontrolled profile, smoothed, for the rest of today.
    uncontrolled = np.zeros(isps)
    for a, d, k, e in zip(arrival, departure, max_kw, energy, strict=True):
        full = min(int(np.ceil(e / (k / ISPS_PER_HOUR))), d - a)
        uncontrolled[a:a + full] += k
    position = np.full(isps, np.nan)
    position[:today] = np.convolve(uncontrolled, np.ones(8) / 8, mode="same")[:today]
    session_max = np.full((n, isps), np.inf)
    curtailed = rng.choice(sessions, size=max(1, sessions // 50), replace=False)
    session_max[np.ix_(curtailed, np.arange(3 * ISPS_PER_HOUR, 7 * ISPS_PER_HOUR))] = 4.2
    nan = np.full(n, np.nan)
    schedule = SchedulingProblem(
        start=None, isp_hours=1.0 / ISPS_PER_HOUR, prices_eur_per_mwh=prices.astype(np.float64),
        pool_max_kw=np.full(isps, np.inf), pool_min_kw=np.full(isps, -np.inf),
        session_ids=tuple(f"s{i}" if i < sessions else f"forecast-{i}" for i in range(n)),
        arrival=arrival, departure=departure, energy_kwh=energy, max_kw=max_kw, min_kw=np.zeros(n),
        battery_kwh=nan, soc_kwh=nan, min_soc_kwh=nan, position_kw=position, imbalance_eur_per_mwh=50.0,
        session_max_kw=session_max)
    up = np.zeros(isps)
    down = np.zeros(isps)
    down[2 * ISPS_PER_HOUR:6 * ISPS_PER_HOUR] = 1000.0 * max(1, sessions // 2000)
    # One congestion point with a twentieth of the pool, capped at half its cars' power 17:00-20:00.
    group = np.full(n, -1, dtype=np.int64)
    members = rng.choice(sessions, size=max(1, sessions // 20), replace=False)
    group[members] = 0
    cap = np.full((1, isps), np.inf)
    cap[0, 3 * ISPS_PER_HOUR:6 * ISPS_PER_HOUR] = 0.5 * max_kw[members].sum() * 0.5
    return PlanProblem(sessions=schedule, present=np.arange(n) < sessions, up_headroom_kw=up,
                       down_headroom_kw=down, session_group=group, group_max_kw=cap)


def run_replan_bench(sessions: int, *, seed: int = 1, repeat: int = 3) -> dict[str, Any]:
    """Time ``plan_pool`` on the generated pool; the median of ``repeat`` runs."""
    problem = replan_problem(sessions, seed=seed)
    times: list[float] = []
    plan: Plan | None = None
    for _ in range(max(1, repeat)):
        started = time.perf_counter()
        plan = plan_pool(problem)
        times.append(time.perf_counter() - started)
    assert plan is not None
    s = problem.sessions
    # Reference in the same run: the plain price-order greedy on the same sessions (no position, caps or headroom).
    plain = replace(s, position_kw=None, session_max_kw=None)
    reference: list[float] = []
    for _ in range(max(1, repeat)):
        started = time.perf_counter()
        solve_schedule(plain)
        reference.append(time.perf_counter() - started)
    return {
        "name": "replan",
        "sessions": sessions,
        "forecast_arrivals": int((~problem.present).sum()),
        "isps": s.n_isps,
        "seconds": round(statistics.median(times), 4),
        "runs_seconds": [round(t, 4) for t in times],
        "greedy_reference_seconds": round(statistics.median(reference), 4),
        "method": plan.method,
        "status": plan.status,
        "unmet_kwh": round(float(plan.unmet_kwh.sum()), 3),
        "imbalance_kwh": round(plan.imbalance_kwh, 1),
        "energy_cost_eur": round(plan.energy_cost_eur, 2),
    }


def add_args(p: argparse.ArgumentParser) -> None:
    """``vpp bench replan`` options."""
    p.add_argument("--sessions", type=int, default=10_000, help="sessions plugged in (forecast arrivals come on top)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--repeat", type=int, default=3, help="runs; seconds is their median")


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Re-plan a generated pool ``--repeat`` times."""
    return run_replan_bench(args.sessions, seed=args.seed, repeat=args.repeat)
