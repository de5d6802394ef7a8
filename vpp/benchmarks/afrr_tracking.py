"""``vpp bench afrr-tracking``: a simulated pool follows an aFRR test profile in simulated time (4-s steps)."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from vpp.algorithms.dispatch import PoolLimits
from vpp.dispatch.cycle import DispatchParams, PoolDispatch, Setpoint
from vpp.dispatch.sim import TelemetryFleet
from vpp.ports import LimitOutcome, LimitStatus
from vpp.simulation.runner import setpoint_share

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


def demo_setpoint_share(seconds: float) -> float:
    """The demo's ``setpoint_shape: varying``, as the scenario's TSO asks for it (vpp.simulation.runner)."""
    return setpoint_share("varying", seconds)


def scored_steps(setpoint_mw: np.ndarray, step_s: float = STEP_S) -> np.ndarray:
    """Steps a full activation time or more after the setpoint became non-zero in its direction (as the demo's
    KPI, vpp.simulation.kpis)."""
    scored = np.zeros(setpoint_mw.size, dtype=bool)
    since: int | None = None
    for k, value in enumerate(setpoint_mw):
        if value == 0.0 or (k and np.sign(value) != np.sign(setpoint_mw[k - 1])):
            since = None if value == 0.0 else k
            continue
        since = k if since is None else since
        scored[k] = (k - since) * step_s >= FAT_S
    return scored


def run_tracking_bench(sessions: int = 2000, *, non_followers: float = 0.05, seed: int = 1,
                       telemetry_s: float = 10.0, window_s: float = 900.0, tail_s: float = 60.0,
                       direction: str = "down", share: float = 0.8) -> dict[str, Any]:
    """A pool as the demo sees it follows an activation shaped as the demo's, at 4-s steps in simulated time.

    The dispatcher gets what production gets: the chargers' maxima (not the cars' onboard chargers), stated
    needs, and each session's power as charging-period averages every ``telemetry_s``; cars taper above 80 %
    SoC, stop at their target, arrive and leave, and ``non_followers`` of them ignore limits. The pool's
    schedule is half of what its cars can draw; the award (``capacity_mw``) is 75 % of the schedule and the TSO
    asks ``share`` of it (the demo: 0.8 MW asked on a schedule of ~1.1 MW). Scored as the demo
    (``afrr_steps_within_tolerance_pct``): the steps at least the full activation time after the setpoint became
    non-zero whose response over the step is within 5 % of the request.
    """
    start = datetime(2025, 6, 2, 15, 30, tzinfo=UTC)
    # One charger in seven is a 22-kW public one, as in the demo's sessions.
    fleet = TelemetryFleet.build(sessions, telemetry_s=telemetry_s, step_s=STEP_S, non_followers=non_followers,
                                 seed=seed, start_s=start.timestamp(), charger_choices=(11.0,) * 6 + (22.0,))
    fleet.schedule_kw = 0.5 * float(fleet.drawable_kw().sum())
    onboard_below = float(np.mean(fleet.arrays["onboard_kw"] < fleet.arrays["charger_kw"]))
    state = PoolDispatch(pool=fleet.pool, params=DispatchParams(settle_s=900.0))
    capacity_mw = 0.75 * fleet.schedule_kw / 1000.0
    sign = -1.0 if direction == "down" else 1.0
    rest_s = 60.0
    steps = int((rest_s + window_s + tail_s) / STEP_S)
    requested: list[float] = []
    supplied: list[float] = []
    corrections: list[float] = []
    for k in range(steps):
        t = k * STEP_S
        at = start + timedelta(seconds=t)
        inside = rest_s <= t < rest_s + window_s
        setpoint_mw = round(sign * share * capacity_mw * demo_setpoint_share(t - rest_s), 3) if inside else 0.0
        requested.append(setpoint_mw)
        plan = state.plan(fleet.snapshot(at), Setpoint(seq=k, setpoint_mw=setpoint_mw, timestamp=at), PoolLimits())
        for sid, kw in zip(plan.send_ids, plan.send_kw, strict=True):
            fleet.set_limit(sid, kw)
        state.outcomes_arrived(at.timestamp(), [LimitOutcome(s, LimitStatus.ACCEPTED) for s in plan.send_ids],
                               plan.send_kw)
        corrections.append(state.loop.correction_kw)
        supplied.append((fleet.schedule_kw - fleet.step()) / 1000.0)
    req_all = np.array(requested)
    sup_all = np.array(supplied)
    scored = scored_steps(req_all)
    demo_within = np.abs(sup_all[scored] - req_all[scored]) <= 0.05 * np.abs(req_all[scored])
    # The earlier scoring, kept for comparison: the setpoint of ts reached at ts + 2, after the first full
    # activation time, within 5 % of max(|request|, 10 % of capacity).
    first = int((rest_s + FAT_S) / STEP_S)
    last = int((rest_s + window_s) / STEP_S)
    req = req_all[first - 2: last - 2]
    sup = sup_all[first:last]
    error = np.abs(sup - req)
    strict = error <= 0.05 * np.abs(req)
    floor = error <= 0.05 * np.maximum(np.abs(req), 0.1 * capacity_mw)
    response = sup_all[scored] / np.where(req_all[scored] != 0, req_all[scored], np.nan)
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
        "afrr_steps_scored": int(scored.sum()),
        "afrr_steps_within_tolerance_pct": round(100.0 * float(demo_within.mean()), 1) if scored.any() else None,
        "afrr_tolerance": "as the demo: steps >= 300 s after the setpoint became non-zero, "
                          "|supplied over the step - requested| <= 5% of |requested|",
        "response_pct_of_request": [round(100.0 * float(np.nanmin(response)), 1),
                                    round(100.0 * float(np.nanmax(response)), 1)] if scored.any() else None,
        "telemetry_seconds": telemetry_s,
        "setpoint": f"{direction}, the demo's varying shape, {share:.0%} of the award for {window_s:.0f} s",
        "cars_with_onboard_below_charger_pct": round(100.0 * onboard_below, 1),
        "sessions_at_end": int(np.sum(fleet.arrays["active"] > 0)),
        "sessions_seen": len(fleet.ids),
        "loop_correction_kw": [round(min(corrections), 1), round(max(corrections), 1)],
        "car_limited_sessions": len(state.car_limits.observed_kw),
    }


def add_args(p: argparse.ArgumentParser) -> None:
    """Options of ``vpp bench afrr-tracking``."""
    p.add_argument("--sessions", type=int, default=2000)
    p.add_argument("--non-followers", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--telemetry-seconds", type=float, default=10.0,
                   help="charging period of the session telemetry (900: the 15-minute periods outside activations)")


def run(args: argparse.Namespace) -> dict[str, Any]:
    """``vpp bench afrr-tracking``: the demo's activation followed by a generated pool, scored as the demo is."""
    return run_tracking_bench(args.sessions, non_followers=args.non_followers, seed=args.seed,
                              telemetry_s=args.telemetry_seconds)
