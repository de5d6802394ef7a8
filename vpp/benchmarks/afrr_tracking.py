"""``vpp bench afrr-tracking``: a simulated pool follows an aFRR test profile in simulated time (4-s steps)."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from vpp.algorithms.dispatch import PoolLimits
from vpp.dispatch.cycle import DispatchParams, PoolDispatch, Setpoint
from vpp.dispatch.sim import SimulatedFleet
from vpp.ports import LimitOutcome, LimitStatus

STEP_S = 4.0
FAT_S = 300.0


def setpoint_profile(capacity_mw: float, seconds: float) -> float:
    """A test profile (MW, + = up): rest, ramp up in 5 min, hold, ramp through zero to down, hold, ramp back."""
    phases = [(60, 0.0, 0.0), (300, 0.0, 1.0), (300, 1.0, 1.0), (300, 1.0, -1.0), (300, -1.0, -1.0),
              (300, -1.0, 0.5), (300, 0.5, 0.5)]
    t = seconds
    for length, start, end in phases:
        if t < length:
            return capacity_mw * (start + (end - start) * t / length)
        t -= length
    return capacity_mw * phases[-1][2]


def run_tracking_bench(sessions: int = 2000, *, non_followers: float = 0.05, seed: int = 1) -> dict[str, Any]:
    """Simulate a pool following the profile at 4-s steps (no sleeping) and score it against the setpoint."""
    fleet = SimulatedFleet.build(sessions, non_followers=non_followers, seed=seed)
    state = PoolDispatch(pool=fleet.pool, params=DispatchParams())
    capacity_mw = 0.3 * fleet.schedule_kw / 1000.0
    start = datetime(2025, 6, 2, 10, 0, tzinfo=UTC)
    total_s = 1860.0
    steps = int(total_s / STEP_S)
    requested: list[float] = []
    supplied: list[float] = []
    for k in range(steps):
        at = start + timedelta(seconds=k * STEP_S)
        setpoint_mw = setpoint_profile(capacity_mw, k * STEP_S)
        requested.append(setpoint_mw)
        supplied.append((fleet.schedule_kw - float(fleet.power_kw.sum())) / 1000.0)
        plan = state.plan(fleet.snapshot(at), Setpoint(seq=k, setpoint_mw=setpoint_mw, timestamp=at), PoolLimits())
        for sid, kw in zip(plan.send_ids, plan.send_kw, strict=True):
            fleet.set_limit(sid, kw)
        state.outcomes_arrived(at.timestamp(), [LimitOutcome(s, LimitStatus.ACCEPTED) for s in plan.send_ids],
                               plan.send_kw)
        fleet.step()
    # Elia: the setpoint sent for step ts must be reached at ts + 2; scored after the first full activation time.
    first = int((60 + FAT_S) / STEP_S)
    req = np.array(requested[first - 2: steps - 2])
    sup = np.array(supplied[first:])
    error = np.abs(sup - req)
    strict = error <= 0.05 * np.abs(req)
    floor = error <= 0.05 * np.maximum(np.abs(req), 0.1 * capacity_mw)
    return {
        "name": "afrr-tracking",
        "sessions": sessions,
        "non_followers_pct": round(100 * non_followers, 1),
        "capacity_mw": round(capacity_mw, 3),
        "steps_scored": int(req.size),
        "within_tolerance_pct": round(100.0 * float(floor.mean()), 2),
        "within_strict_tolerance_pct": round(100.0 * float(strict.mean()), 2),
        "tolerance": "|supplied(ts+2) - requested(ts)| <= 5% of max(|requested|, 10% of capacity)",
        "mean_abs_error_pct_of_capacity": round(100.0 * float(error.mean()) / capacity_mw, 3),
        "discounted_sessions": int(sum(1 for v in state.discounted_until.values() if v > 0)),
    }


def add_args(p: argparse.ArgumentParser) -> None:
    """Options of ``vpp bench afrr-tracking``."""
    p.add_argument("--sessions", type=int, default=2000)
    p.add_argument("--non-followers", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=1)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """``vpp bench afrr-tracking``: the profile followed by a generated pool, scored against the setpoint."""
    return run_tracking_bench(args.sessions, non_followers=args.non_followers, seed=args.seed)
