"""Benchmarks of the dispatcher: a cycle at scale, setpoint intake over HTTP, aFRR tracking in simulated time."""

from __future__ import annotations

import asyncio
import math
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from vpp.algorithms.dispatch import PoolLimits
from vpp.dispatch.cycle import DispatchParams, PoolDispatch, Setpoint
from vpp.dispatch.sim import FakeNetwork, FleetSource, SimulatedFleet, TelemetryFleet
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


def demo_setpoint_share(seconds: float) -> float:
    """The demo's ``setpoint_shape: varying`` (vpp.simulation.runner): a ramp over the full activation time,
    three minutes at the request, a 60-s ramp to half of it, three minutes there, and back."""
    if seconds < FAT_S:
        return seconds / FAT_S
    t = (seconds - FAT_S) % 480.0
    if t < 180.0:
        return 1.0
    if t < 240.0:
        return 1.0 - 0.5 * (t - 180.0) / 60.0
    if t < 420.0:
        return 0.5
    return 0.5 + 0.5 * (t - 420.0) / 60.0


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


def run_dispatch_bench(sessions: int = 10_000, *, latency_s: float = 0.05, cpos: int = 10,
                       per_cpo_concurrency: int = 32, seed: int = 1) -> dict[str, Any]:
    """A first cycle (every limit sent) and a setpoint step, against the in-process fake network."""
    from sqlalchemy.orm import Session, sessionmaker

    from vpp.activations.tables import AfrrSetpoint
    from vpp.commitments.tables import Commitment  # noqa: F401  (metadata)
    from vpp.config import Settings
    from vpp.db import create_db_engine, create_session_factory, unit_of_work
    from vpp.tables import metadata
    from workers.bus import InProcessActivationBus, InProcessLease
    from workers.dispatcher import Dispatcher

    fleet = SimulatedFleet.build(sessions, cpos=cpos, seed=seed)
    network = FakeNetwork(fleet, latency_s=latency_s, per_cpo_concurrency=per_cpo_concurrency)
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), dispatch_send_timeout_seconds=60.0)
        engine = create_db_engine(settings.resolved_database_url)
        metadata.create_all(engine)
        factory: sessionmaker[Session] = create_session_factory(engine)
        dispatcher = Dispatcher(settings=settings, session_factory=factory, source=FleetSource({fleet.pool: fleet}),
                                network=network, receiver=InProcessActivationBus(), lease=InProcessLease(10.0))

        async def cycle() -> tuple[float, float, int]:
            started = time.perf_counter()
            plan = await dispatcher.run_cycle(fleet.pool)
            planned = time.perf_counter() - started
            await dispatcher.drain()
            assert plan is not None
            return planned, time.perf_counter() - started, len(plan.send_ids)

        async def scenario() -> dict[str, Any]:
            await dispatcher.manage_leases()
            first_plan_s, first_s, first_changed = await cycle()
            fleet.step()
            fleet.step()
            with unit_of_work(factory) as session:
                now = datetime.now(UTC)
                mw = 0.2 * fleet.schedule_kw / 1000.0
                session.add(AfrrSetpoint(pool=fleet.pool, seq=1, timestamp=now, requested_mw=mw, setpoint_mw=mw,
                                         clipped=False, capacity_up_mw=mw, capacity_down_mw=mw, stale=False))
            step_plan_s, step_s, step_changed = await cycle()
            await dispatcher.shutdown()
            return {"first_cycle": (first_plan_s, first_s, first_changed),
                    "setpoint_step": (step_plan_s, step_s, step_changed)}

        results = asyncio.run(scenario())
        engine.dispose()
    plan_s, seconds, changed = results["setpoint_step"]
    first_plan_s, first_s, first_changed = results["first_cycle"]
    return {
        "name": "dispatch",
        "sessions": sessions,
        "seconds_to_last_ack": round(seconds, 3),
        "changed": changed,
        "cycle_seconds": round(plan_s, 3),
        "first_cycle": {"seconds_to_last_ack": round(first_s, 3), "changed": first_changed,
                        "cycle_seconds": round(first_plan_s, 3)},
        "network": f"in-process fake (vpp.dispatch.sim.FakeNetwork): {cpos} CPOs, {latency_s * 1000:.0f} ms "
                   f"per request, {per_cpo_concurrency} concurrent per CPO",
        "database": "SQLite (temporary file)",
    }


def run_intake_bench(requests: int = 1000, *, pools: int = 4) -> dict[str, Any]:
    """Setpoint acknowledgement latency over HTTP against uvicorn on a free port (embedded SQLite)."""
    import socket
    import threading

    import httpx
    import uvicorn

    from vpp.api.app import create_app
    from vpp.apikeys import service as apikeys
    from vpp.commitments import service as commitments
    from vpp.config import Settings
    from vpp.db import unit_of_work
    from vpp.domain.commitments import CommitmentKind, CommitmentValue
    from vpp.domain.isp import floor_to_isp
    from vpp.tables import metadata

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp))
        app = create_app(settings, background=False)
        metadata.create_all(app.state.engine)
        now = datetime.now(UTC)
        isps = [floor_to_isp(now) + timedelta(minutes=15 * i) for i in range(-1, 4)]
        pool_ids = [f"zone:B{i}" for i in range(pools)]
        with unit_of_work(app.state.session_factory) as session:
            _row, key = apikeys.create(session, name="tso", role="market", pepper=settings.secret)
            commitments.record(session, [
                CommitmentValue(pool=p, isp_start=isp, kind=kind, power_kw=5000.0, source="bench", reference="b")
                for p in pool_ids for isp in isps
                for kind in (CommitmentKind.AFRR_CAPACITY_UP, CommitmentKind.AFRR_CAPACITY_DOWN)
            ])
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        latencies: list[float] = []
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}",
                              headers={"Authorization": f"Bearer {key}"}) as client:
                for i in range(requests):
                    body = {"pool": pool_ids[i % pools], "seq": i, "timestamp": datetime.now(UTC).isoformat(),
                            "setpoint_mw": round(3.0 * math.sin(i / 20), 3)}
                    t0 = time.perf_counter()
                    client.post("/api/v1/market/afrr/setpoints", json=body).raise_for_status()
                    latencies.append((time.perf_counter() - t0) * 1000)
        finally:
            server.should_exit = True
            thread.join(timeout=10)
            app.state.engine.dispose()
    latencies.sort()
    return {
        "name": "afrr-intake",
        "requests": requests,
        "p50_ms": round(statistics.median(latencies), 3),
        "p99_ms": round(latencies[int(0.99 * (len(latencies) - 1))], 3),
        "max_ms": round(latencies[-1], 3),
        "server": "uvicorn, embedded SQLite, in-process bus, one client in sequence",
    }
