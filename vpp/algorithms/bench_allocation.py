"""Benchmark of ``allocate`` on random, realistic pools: sites nested in congestion points, varying targets."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import numpy as np

from vpp.algorithms.allocation import AllocationProblem, allocate

_CHARGER_KW = np.array([3.7, 7.4, 11.0, 22.0])


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


def run_allocate_bench(sessions: int, *, groups: int | None = None, repeats: int = 50, seed: int = 1) -> dict[str, Any]:
    """Time ``allocate`` over ``repeats`` targets between 5 % and 110 % of the pool's maximum.

    Like the dispatcher, each call starts from the previous call's setpoints; the first call starts from a
    random plan that breaks the caps (a DSO limit just arrived) and is timed too.
    """
    problem = random_problem(sessions, groups=groups, seed=seed)
    rng = np.random.default_rng(seed + 1)
    pool_max_kw = float(problem.max_kw.sum())
    timings_ms: list[float] = []
    current_kw = problem.current_kw
    for _ in range(repeats):
        instance = replace(
            problem,
            current_kw=current_kw,
            target_kw=float(rng.uniform(0.05, 1.1) * pool_max_kw),
            needs_outrank_target=bool(rng.random() < 0.8),
        )
        started = time.perf_counter()
        result = allocate(instance)
        timings_ms.append((time.perf_counter() - started) * 1e3)
        current_kw = result.setpoints_kw
    return {
        "name": "allocate",
        "sessions": sessions,
        "groups": int(problem.group_max_kw.shape[0]),
        "p50_ms": float(np.percentile(timings_ms, 50)),
        "p99_ms": float(np.percentile(timings_ms, 99)),
    }


if __name__ == "__main__":
    for size in (100_000, 1_000_000):
        print(run_allocate_bench(size, repeats=20))
