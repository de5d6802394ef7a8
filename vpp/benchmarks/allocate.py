"""Benchmark of the allocation as the real-time dispatcher runs it: sites nested in congestion points.

The dispatcher prepares a pool once (``prepare``) and then, every 4 seconds, allocates a slowly moving target
from the measured powers (``allocate_prepared``): cars draw a little below their limits, energy needs and hours
to departure run down, a few connectors get a new car. The first cycle starts from a plan that breaks the caps
(a DSO limit just arrived) and is reported apart as ``cold_ms``; ``plain_ms`` is one ``allocate(problem)`` call
(prepare included) on that same cold problem.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from typing import Any

import numpy as np

from vpp.algorithms.allocation import AllocationProblem, allocate, allocate_prepared, prepare

_CHARGER_KW = np.array([3.7, 7.4, 11.0, 22.0])
_CYCLE_S = 4.0


def random_problem(
    sessions: int, *, groups: int | None = None, seed: int = 1, v2g_share: float = 0.1
) -> AllocationProblem:
    """Build a pool: every session on one site, sites nested in congestion points (about 20 sites per point)."""
    rng = np.random.default_rng(seed)
    n = sessions
    total_groups = max(2, n // 20 + n // 400) if groups is None else max(2, groups)
    congestion_points = max(1, total_groups // 21)
    sites = max(1, total_groups - congestion_points)
    max_kw = rng.choice(_CHARGER_KW, size=n)
    v2g = rng.random(n) < v2g_share
    min_kw = np.where(v2g, -max_kw, 0.0)
    hours = rng.uniform(0.25, 14.0, n)
    energy_kwh = np.minimum(rng.uniform(0.0, 45.0, n), max_kw * hours * rng.uniform(0.3, 1.05, n))
    current_kw = np.clip(rng.uniform(-0.2, 1.0, n) * max_kw, min_kw, max_kw)

    site_of = np.sort(rng.integers(0, sites, n))
    cp_of_site = np.sort(rng.integers(0, congestion_points, sites))
    site_max = np.bincount(site_of, weights=max_kw, minlength=sites)
    site_cap = np.maximum(site_max * rng.uniform(0.5, 0.9, sites), 1.0)
    cp_cap = np.bincount(cp_of_site, weights=site_cap, minlength=congestion_points) * rng.uniform(
        0.5, 0.8, congestion_points
    )
    member_session = np.repeat(np.arange(n, dtype=np.int64), 2)
    member_group = np.empty(2 * n, dtype=np.int64)
    member_group[0::2] = site_of
    member_group[1::2] = sites + cp_of_site[site_of]
    return AllocationProblem(
        min_kw=min_kw,
        max_kw=max_kw,
        energy_needed_kwh=energy_kwh,
        hours_to_departure=hours,
        current_kw=current_kw,
        target_kw=float(current_kw.sum()),
        member_session=member_session,
        member_group=member_group,
        group_max_kw=np.r_[site_cap, cp_cap],
        group_level=np.r_[np.zeros(sites, dtype=np.int64), np.ones(congestion_points, dtype=np.int64)],
    )


def next_cycle(
    problem: AllocationProblem, setpoints_kw: np.ndarray, target_kw: float, rng: np.random.Generator
) -> AllocationProblem:
    """The next dispatch cycle: measured powers a little below the limits, needs run down, a few new cars."""
    n = setpoints_kw.shape[0]
    hours_step = _CYCLE_S / 3600.0
    measured_kw = setpoints_kw * rng.uniform(0.93, 1.0, n)
    energy_kwh = np.maximum(problem.energy_needed_kwh - np.maximum(measured_kw, 0.0) * hours_step, 0.0)
    hours = np.maximum(problem.hours_to_departure - hours_step, 0.0)
    # About one car in 7,000 leaves or arrives per cycle (8 h stays); the connector's limits stay.
    arrived = np.flatnonzero((rng.random(n) < 1.5e-4) | (hours <= 0.0))
    hours[arrived] = rng.uniform(0.25, 14.0, arrived.size)
    energy_kwh[arrived] = np.minimum(rng.uniform(0.0, 45.0, arrived.size), problem.max_kw[arrived] * hours[arrived])
    measured_kw[arrived] = 0.0
    return replace(
        problem,
        current_kw=measured_kw,
        energy_needed_kwh=energy_kwh,
        hours_to_departure=hours,
        target_kw=target_kw,
    )


def run_allocate_bench(sessions: int, *, groups: int | None = None, repeats: int = 50, seed: int = 1) -> dict[str, Any]:
    """Time ``repeats`` steady dispatch cycles (p50/p99) after a cold first cycle (``cold_ms``).

    The target walks by about 1 % of the pool's maximum per cycle between 5 % and 110 % of it, like an aFRR
    setpoint plus a day-ahead schedule; the first target is drawn in that range.
    """
    problem = random_problem(sessions, groups=groups, seed=seed)
    rng = np.random.default_rng(seed + 1)
    pool_max_kw = float(problem.max_kw.sum())
    share = float(rng.uniform(0.2, 0.9))
    problem = replace(problem, target_kw=share * pool_max_kw)

    started = time.perf_counter()
    pool = prepare(problem)
    prepare_ms = (time.perf_counter() - started) * 1e3
    started = time.perf_counter()
    result = allocate_prepared(pool, problem)
    cold_ms = (time.perf_counter() - started) * 1e3
    started = time.perf_counter()
    allocate(problem)
    plain_ms = (time.perf_counter() - started) * 1e3

    timings_ms: list[float] = []
    for _ in range(repeats):
        share = float(np.clip(share + rng.normal(0.0, 0.01), 0.05, 1.1))
        problem = next_cycle(problem, result.setpoints_kw, share * pool_max_kw, rng)
        started = time.perf_counter()
        result = allocate_prepared(pool, problem)
        timings_ms.append((time.perf_counter() - started) * 1e3)
    return {
        "name": "allocate",
        "sessions": sessions,
        "groups": int(problem.group_max_kw.shape[0]),
        "p50_ms": float(np.percentile(timings_ms, 50)),
        "p99_ms": float(np.percentile(timings_ms, 99)),
        "cold_ms": cold_ms,
        "prepare_ms": prepare_ms,
        "plain_ms": plain_ms,
    }


def add_args(p: argparse.ArgumentParser) -> None:
    """Options of ``vpp bench allocate``."""
    p.add_argument("--sessions", type=int, default=100_000)
    p.add_argument("--groups", type=int, default=None)
    p.add_argument("--repeats", type=int, default=50)
    p.add_argument("--seed", type=int, default=1)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """``vpp bench allocate``: the steady cycles of a generated pool."""
    return run_allocate_bench(args.sessions, groups=args.groups, repeats=args.repeats, seed=args.seed)


if __name__ == "__main__":
    for size in (100_000, 1_000_000):
        print(run_allocate_bench(size, repeats=20))
