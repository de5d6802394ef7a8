"""Benchmark of the settlement math: one simulated day of a pool at 15-minute and 4-second resolution."""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

from vpp.algorithms.baselines import uncontrolled_baseline
from vpp.algorithms.settlement import (
    attribute_to_sessions,
    day_ahead_imbalance,
    reconcile_cdrs,
    session_contributions_kwh,
    settle_afrr,
    settle_flex_order,
)

_ISPS = 96
_STEPS_PER_ISP = 225  # 900 s / 4 s


def run_settle_bench(sessions: int = 10000, seed: int = 1) -> dict[str, Any]:
    """Run a day of ``sessions`` through baselines, aFRR, FlexOrder, imbalance, attribution, reconciliation."""
    rng = np.random.default_rng(seed)
    n = sessions
    arrival_h = rng.uniform(0.0, 20.0, n)
    departure_h = np.minimum(arrival_h + rng.uniform(1.0, 12.0, n), 24.0)
    max_kw = rng.choice(np.array([3.7, 7.4, 11.0, 22.0]), n)
    energy_kwh = rng.uniform(2.0, 40.0, n)
    curtail = rng.uniform(0.6, 1.0, (n, _ISPS))
    missing = rng.random((n, _ISPS)) < 0.001

    started = time.perf_counter()
    counterfactual = uncontrolled_baseline(arrival_h, departure_h, energy_kwh, max_kw, intervals=_ISPS).values_kw
    measured_kw = np.where(missing, np.nan, counterfactual * curtail)
    pool_baseline_mw = counterfactual.sum(axis=0) / 1000.0
    pool_measured_mw = np.nansum(measured_kw, axis=0) / 1000.0

    steps = _ISPS * _STEPS_PER_ISP
    setpoint_mw = np.repeat(rng.uniform(0.0, 1.0, steps // 75) * pool_baseline_mw.max() * 0.3, 75)
    baseline_steps_mw = np.repeat(pool_baseline_mw, _STEPS_PER_ISP)
    measured_steps_mw = baseline_steps_mw - setpoint_mw * rng.uniform(0.9, 1.05, steps)
    afrr = settle_afrr(setpoint_mw, measured_steps_mw, baseline_steps_mw, rng.uniform(50, 150, _ISPS), 200.0)
    order = settle_flex_order(pool_baseline_mw, 0.1 * pool_baseline_mw, pool_measured_mw, 7.0, 11.0)
    imbalance = day_ahead_imbalance(pool_measured_mw / 4, pool_baseline_mw / 4, rng.uniform(0, 200, _ISPS))

    reading_times = np.sort(arrival_h[:, None] + (departure_h - arrival_h)[:, None] * rng.random((n, 40)), axis=1)
    delivered_kwh = np.minimum(energy_kwh, max_kw * (departure_h - arrival_h))
    reading_energy = delivered_kwh[:, None] * (reading_times - arrival_h[:, None]) / (departure_h - arrival_h)[:, None]
    reading_energy[rng.random((n, 40)) < 0.01] = np.nan
    reconciliation = reconcile_cdrs(
        delivered_kwh,
        np.repeat(np.arange(n), 40),
        reading_times.ravel(),
        reading_energy.ravel(),
        session_start_h=arrival_h,
        session_end_h=departure_h,
    )
    contribution = session_contributions_kwh(counterfactual, measured_kw)
    attribute_to_sessions(
        contribution,
        float(afrr.payment_eur.sum() + order.total_net_eur),
        float(afrr.penalty_eur.sum() - imbalance.total_cost_eur),
        excluded=reconciliation.flagged,
    )
    seconds = time.perf_counter() - started
    return {"name": "settle", "sessions": n, "seconds": seconds}


def add_args(p: argparse.ArgumentParser) -> None:
    """Options of ``vpp bench settle``."""
    p.add_argument("--sessions", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=1)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """``vpp bench settle``: one simulated day through the settlement math."""
    return run_settle_bench(args.sessions, seed=args.seed)


if __name__ == "__main__":
    print(run_settle_bench(10000))
