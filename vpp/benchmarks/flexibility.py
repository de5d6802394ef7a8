"""Benchmark: envelopes and pool aggregates for many plugged-in sessions."""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from vpp.algorithms.flexibility import aggregate_pools, build_envelopes, envelope_arrays, plan_lag_model
from vpp.domain.flexibility import SessionFlexInput
from vpp.domain.isp import ISPS_PER_HOUR, IspHorizon

POOL_KINDS = {"zone": 4, "congestion_point": 40, "cpo": 8, "site": 2000}


def synthetic_sessions(
    sessions: int, start: datetime, rng: np.random.Generator
) -> tuple[SessionFlexInput, dict[str, np.ndarray]]:
    """Plugged-in sessions with mixed power, needs, dwell times and V2G, plus pool codes per kind."""
    t0 = pd.Timestamp(start)
    # a mix of home (long), workplace and public (short) sessions, plugged in during the last hours
    plugged = t0 - pd.to_timedelta(rng.uniform(0, 6, sessions), unit="h")
    dwell_h = rng.choice([13.0, 8.0, 3.0], sessions, p=[0.5, 0.3, 0.2]) * rng.uniform(0.6, 1.4, sessions)
    departure = plugged + pd.to_timedelta(dwell_h, unit="h")
    max_kw = rng.choice([3.7, 7.4, 11.0, 22.0], sessions, p=[0.1, 0.2, 0.6, 0.1])
    remaining_h = np.maximum(dwell_h - (t0 - plugged) / pd.Timedelta(hours=1), 0.0)
    # most needs fit the remaining window, about 3 % do not
    energy = np.minimum(rng.gamma(2.0, 7.0, sessions), 80.0)
    energy = np.where(rng.random(sessions) < 0.97, np.minimum(energy, 0.8 * max_kw * remaining_h), energy)
    battery = rng.choice([40.0, 60.0, 77.0, 100.0], sessions)
    soc = np.minimum(rng.uniform(0.05, 0.6, sessions) * battery, battery - energy.clip(0, battery))
    v2g = rng.random(sessions) < 0.1
    inputs = SessionFlexInput(
        plugged_in=pd.DatetimeIndex(plugged),
        departure=pd.DatetimeIndex(departure),
        energy_kwh=np.minimum(energy, battery),
        max_kw=max_kw,
        min_kw=np.where(v2g, -max_kw, 0.0),
        battery_kwh=battery,
        soc_kwh=soc,
        min_soc_kwh=np.minimum(0.2 * battery, soc),
    )
    codes = {kind: rng.integers(0, count, sessions) for kind, count in POOL_KINDS.items()}
    return inputs, codes


def run_flexibility_bench(sessions: int = 100000, hours: int = 48, seed: int = 1) -> dict[str, object]:
    """Time building envelopes and pool aggregates (zone, congestion point, CPO, site) for ``sessions``."""
    rng = np.random.default_rng(seed)
    horizon = IspHorizon(datetime(2025, 6, 2, 22, tzinfo=UTC), hours * ISPS_PER_HOUR)
    inputs, codes = synthetic_sessions(sessions, horizon.start, rng)
    site_cap_kw = rng.uniform(300.0, 900.0, POOL_KINDS["site"])
    started = time.perf_counter()
    envelopes = build_envelopes(inputs, horizon)
    model = plan_lag_model(envelopes, site_codes=codes["site"], site_cap_kw=site_cap_kw)
    pools = {
        kind: aggregate_pools(model, code, POOL_KINDS[kind], pool_cap_kw=site_cap_kw if kind == "site" else None)
        for kind, code in codes.items()
    }
    aggregated = time.perf_counter()
    dense = envelope_arrays(envelopes)
    seconds = time.perf_counter() - started
    return {
        "name": "flexibility",
        "sessions": sessions,
        "isps": horizon.count,
        "seconds": round(seconds, 4),
        "seconds_compact_and_pools": round(aggregated - started, 4),
        "seconds_dense_envelopes": round(seconds - (aggregated - started), 4),
        "dense_mb": round(
            sum(a.nbytes for a in (dense.p_min_kw, dense.p_max_kw, dense.e_min_kwh, dense.e_max_kwh, dense.baseline_kw))
            / 1e6
        ),
        "pools": sum(p.n_pools for p in pools.values()),
        "flexible_sessions": int(model.flexible.sum()),
        "unmet_sessions": int(envelopes.unmet.sum()),
    }


def add_args(p: argparse.ArgumentParser) -> None:
    """Options of ``vpp bench flexibility``."""
    p.add_argument("--sessions", type=int, default=100_000)
    p.add_argument("--hours", type=int, default=48)
    p.add_argument("--seed", type=int, default=1)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """``vpp bench flexibility``: envelopes and pool aggregates of generated sessions."""
    return run_flexibility_bench(args.sessions, hours=args.hours, seed=args.seed)


if __name__ == "__main__":
    print(run_flexibility_bench())
