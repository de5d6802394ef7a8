"""``vpp bench dayahead-curve``: one delivery day's curves (all MTUs, all levels) for a generated pool."""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

from vpp.algorithms.bidding import build_demand_curves, price_ladder
from vpp.algorithms.scheduling import problem_from_instance, solve_schedule
from vpp.benchmarks.dayahead import generate_instance


def _errors(errors: list[float], peak: float) -> dict[str, float]:
    worst = max(errors, default=0.0)
    mean = float(np.mean(errors)) if errors else 0.0
    return {"max_abs_error_kw": round(worst, 3), "mean_abs_error_kw": round(mean, 3),
            "max_error_pct_of_peak": round(100.0 * worst / peak, 4) if peak > 0 else 0.0,
            "mean_error_pct_of_peak": round(100.0 * mean / peak, 4) if peak > 0 else 0.0}


def run_dayahead_curve_bench(sessions: int, *, capped: bool = True, seed: int = 1, check_points: int = 12
                             ) -> dict[str, object]:
    """Time the default curves of a day (and the parametric pass beside them); re-solve ``check_points``
    sampled (MTU, level) points to measure the error of both."""
    problem = problem_from_instance(generate_instance(sessions, v2g=False, seed=seed, with_pool_limit=capped))
    levels = price_ladder(problem.prices_eur_per_mwh, min_price=-500.0, max_price=4000.0)
    started = time.perf_counter()
    curves = build_demand_curves(problem, levels)
    seconds = time.perf_counter() - started
    started = time.perf_counter()
    parametric = build_demand_curves(problem, levels, method="parametric")
    parametric_seconds = time.perf_counter() - started
    solve_started = time.perf_counter()
    solve_schedule(problem)
    one_solve = time.perf_counter() - solve_started
    rng = np.random.default_rng(seed)
    errors, parametric_errors = [], []
    check_started = time.perf_counter()
    for _ in range(check_points):
        t, col = int(rng.integers(problem.n_isps)), int(rng.integers(levels.size))
        exact = float(build_demand_curves(problem, levels[col:col + 1], method="resolve",
                                          mtus=np.array([t])).demand_kw[0, 0])
        errors.append(abs(exact - float(curves.demand_kw[t, col])))
        parametric_errors.append(abs(exact - float(parametric.demand_kw[t, col])))
    peak = float(curves.demand_kw.max(initial=0.0))
    return {
        "name": "dayahead-curve",
        "sessions": sessions,
        "capped": capped,
        "mtus": int(problem.n_isps),
        "levels": int(levels.size),
        "method": curves.method,
        "curve_seconds": round(seconds, 3),
        "one_solve_seconds": round(one_solve, 3),
        "resolve_estimate_seconds": round(one_solve * problem.n_isps * levels.size, 1),
        "check_points": check_points,
        "check_seconds": round(time.perf_counter() - check_started, 2),
        **_errors(errors, peak),
        "peak_demand_kw": round(peak, 1),
        "parametric": {"curve_seconds": round(parametric_seconds, 3), **_errors(parametric_errors, peak)},
        "forecast_energy_mwh": round(float(curves.forecast_pool_kw.sum()) * problem.isp_hours / 1000.0, 3),
    }


def add_args(p: argparse.ArgumentParser) -> None:
    """Options of ``vpp bench dayahead-curve``."""
    p.add_argument("--sessions", type=int, default=10_000)
    p.add_argument("--uncapped", action="store_true", help="no pool cap (the parametric curve is then exact)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--check-points", type=int, default=12, help="(MTU, level) points re-solved for the error")


def run(args: argparse.Namespace) -> dict[str, Any]:
    """``vpp bench dayahead-curve``: a delivery day's demand curves of a generated pool."""
    return run_dayahead_curve_bench(args.sessions, capped=not args.uncapped, seed=args.seed,
                                    check_points=args.check_points)
