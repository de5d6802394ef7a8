"""``vpp bench dispatch``: a dispatcher cycle sending limits to simulated CPOs, over real HTTP (the default) or
against the in-process fake network (``--network fake``, ``run_dispatch_bench``).

Over real HTTP: the service, simulated OCPI CPOs on localhost, and the dispatcher.

Three kinds of process share the machine: this one (the dispatcher with its OCPI network, the measured path), one
serving the service's API (create_app under uvicorn: registration, the setpoint POST, asynchronous results) and
one serving every simulated CPO (sim/cpo apps under uvicorn, one event loop, the sim's fast profile path on).

Setup goes through the real interfaces except where that would only cost time: the CPOs register over OCPI,
their locations and sessions are pulled over OCPI (cars are plugged in before registration, so nothing is pushed),
the aFRR capacity is recorded directly. Measured: a first cycle (every session gets its limit) and a setpoint
step, each until the last ChargingProfile PUT is answered and its answer recorded and, separately, until the
last asynchronous result is recorded.

With VPP_REDIS_URL set (production mode), the step runs end to end: the dispatcher's own loop owns the pool through
a Redis lease, the API rings the pool's doorbell on a Redis stream when it has stored the setpoint, and the loop
runs the cycle. Without Redis (embedded mode, where the API in another process cannot reach an in-process bus),
the step runs the cycle the doorbell would run right after the setpoint's acknowledgement, one second after the
fleet was read between cycles as the dispatcher's loop does.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import math
import multiprocessing
import os
import secrets
import socket
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from vpp import aio

HOST = "127.0.0.1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {HOST}:{port}")


@contextlib.contextmanager
def _database(tmp: Path) -> Iterator[str]:
    """A fresh database: SQLite under ``tmp``, or a temporary PostgreSQL database on VPP_DATABASE_URL's server."""
    url = os.environ.get("VPP_DATABASE_URL")
    if not url or url.startswith("sqlite"):
        yield f"sqlite:///{(tmp / 'vpp.sqlite3').resolve()}"
        return
    from sqlalchemy import create_engine, make_url, text

    base = make_url(url)
    name = f"vpp_bench_{secrets.token_hex(4)}"
    # Created from the server's maintenance database: the configured one need not exist yet.
    admin = create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _serve_api(env: dict[str, str], port: int) -> None:
    """Child process: the service's API (no embedded worker or dispatcher) under uvicorn."""
    os.environ.update(env)
    import uvicorn

    from vpp.api.app import create_app
    from vpp.config import Settings

    app = create_app(Settings(), background=False)
    uvicorn.run(app, host=HOST, port=port, log_level="warning", access_log=False)


def _serve_cpos(ports: list[int], evses: int, cars: int, versions_url: str, tokens: list[str],
                ready: Any, stop: Any) -> None:
    """Child process: every simulated CPO in one event loop; cars plug in, then each CPO registers with us."""
    import logging

    import uvicorn

    from sim.cpo.app import create_cpo_app, fast_app
    from sim.cpo.clock import SystemClock
    from sim.cpo.config import CpoConfig

    logging.getLogger("sim").setLevel(logging.WARNING)

    async def main() -> None:
        apps = [create_cpo_app(CpoConfig(
            party=f"NL/C{i:02d}", base_url=f"http://{HOST}:{port}", evses=evses, auto_arrivals=False,
            page_limit=1000, callback_delay_s=2.0, seed=i, fast_profiles=True, result_tick_s=0.05,
            # One process sends every CPO's results, one after another: 10,000 take over a minute here, so the
            # CPOs announce that (a result later than the announced timeout counts as lost and is sent again).
            profile_timeout_s=180,
        ), clock=SystemClock()) for i, port in enumerate(ports)]
        sims = [app.state.simulator for app in apps]
        for sim in sims:
            for _ in range(cars):
                sim.plug_in(connection_hours=8.0)
        servers = [uvicorn.Server(uvicorn.Config(fast_app(app), host=HOST, port=port, log_level="warning",
                                                 access_log=False, lifespan="on", proxy_headers=False))
                   for app, port in zip(apps, ports, strict=True)]
        tasks = [asyncio.create_task(server.serve()) for server in servers]
        while not all(server.started for server in servers):  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        for sim, token in zip(sims, tokens, strict=True):
            await sim.register_with(versions_url, token)
        ready.put("ready")
        while not stop.is_set():  # noqa: ASYNC110  (a process-shared event)
            await asyncio.sleep(0.1)
        for server in servers:
            server.should_exit = True
        await asyncio.gather(*tasks)

    aio.run(main())


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc; NaN elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _Spans:
    """Where time goes: per wrapped call, the summed duration, the count and the first start/last end."""

    def __init__(self) -> None:
        self.origin = time.perf_counter()
        self.spans: dict[str, list[float]] = {}

    def reset(self) -> None:
        self.origin = time.perf_counter()
        self.spans = {}

    def _add(self, name: str, start: float, end: float) -> None:
        span = self.spans.setdefault(name, [0.0, 0, math.inf, -math.inf])
        span[0] += end - start
        span[1] += 1
        span[2] = min(span[2], start - self.origin)
        span[3] = max(span[3], end - self.origin)

    def wrap(self, obj: Any, attr: str, name: str) -> None:
        original = getattr(obj, attr)
        if asyncio.iscoroutinefunction(original):
            async def timed_async(*args: Any, **kwargs: Any) -> Any:
                start = time.perf_counter()
                try:
                    return await original(*args, **kwargs)
                finally:
                    self._add(name, start, time.perf_counter())
            setattr(obj, attr, timed_async)
        else:
            def timed(*args: Any, **kwargs: Any) -> Any:
                start = time.perf_counter()
                try:
                    return original(*args, **kwargs)
                finally:
                    self._add(name, start, time.perf_counter())
            setattr(obj, attr, timed)

    def report(self) -> dict[str, dict[str, float]]:
        return {name: {"sum_s": round(total, 3), "calls": int(calls), "from_s": round(first, 3),
                       "to_s": round(last, 3)} for name, (total, calls, first, last) in self.spans.items()}


def run_http_dispatch_bench(sessions: int = 10_000, *, cpos: int = 5, concurrency: int | None = None
                            ) -> dict[str, Any]:
    """Measure a first cycle and a setpoint step against simulated CPOs over HTTP (see the module docstring)."""
    import httpx
    from sqlalchemy import func, select

    from adapters.ocpi.v2_2_1 import sync
    from adapters.ocpi.v2_2_1.network import OcpiChargePointNetwork
    from vpp import migrate
    from vpp.apikeys import service as apikeys
    from vpp.commitments import service as commitments
    from vpp.config import Settings
    from vpp.db import create_db_engine, create_session_factory, unit_of_work
    from vpp.dispatch import service as dispatch_service
    from vpp.dispatch.cycle import CyclePlan, PoolDispatch
    from vpp.domain.commitments import CommitmentKind, CommitmentValue
    from vpp.domain.isp import floor_to_isp
    from vpp.ocpi import service as connections
    from vpp.ocpi.tables import OcpiConnection
    from vpp.sessions import limits
    from vpp.sessions.tables import ChargingSession, LimitRequest
    from workers.bus import InProcessActivationBus, InProcessLease
    from workers.dispatcher import Dispatcher, build_dispatcher, default_components

    per_cpo = -(-sessions // cpos)
    spawn = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp, _database(Path(tmp)) as database_url:
        api_port = _free_port()
        secret = secrets.token_urlsafe(32)
        redis_url = os.environ.get("VPP_REDIS_URL") or None
        env = {"VPP_DATA_DIR": tmp, "VPP_DATABASE_URL": database_url, "VPP_SECRET_KEY": secret,
               "VPP_PUBLIC_URL": f"http://{HOST}:{api_port}", "VPP_LOG_LEVEL": "WARNING",
               **({"VPP_REDIS_URL": redis_url} if redis_url else {})}
        settings = Settings(data_dir=Path(tmp), database_url=database_url, secret_key=secret,
                            public_url=env["VPP_PUBLIC_URL"], dispatch_send_timeout_seconds=120.0,
                            redis_url=redis_url)
        engine = create_db_engine(database_url)
        migrate.upgrade(engine)
        factory = create_session_factory(engine)
        with unit_of_work(factory) as session:
            _row, key = apikeys.create(session, name="tso", role="market", pepper=settings.secret)
            tokens = [connections.invite(session, name=f"cpo{i}", pepper=settings.secret)[1] for i in range(cpos)]
        api = spawn.Process(target=_serve_api, args=(env, api_port), daemon=True)
        api.start()
        ready, stop = spawn.Queue(), spawn.Event()
        cpo_ports = [_free_port() for _ in range(cpos)]
        sims = spawn.Process(target=_serve_cpos, daemon=True, args=(
            cpo_ports, per_cpo, per_cpo, f"{env['VPP_PUBLIC_URL']}/ocpi/versions", tokens, ready, stop))
        try:
            _wait_port(api_port)
            sims.start()
            ready.get(timeout=120)
            setup_started = time.perf_counter()
            source, network = default_components(settings, factory)
            # The bench times the setpoint path alone: no re-plan of the pool on a thread beside it.
            source.planner = None  # type: ignore[attr-defined]
            # The bench times the setpoint path alone: no re-plan of the pool on a thread beside it.
            source.planner = None  # type: ignore[attr-defined]
            assert isinstance(network, OcpiChargePointNetwork)
            context = network._context  # the bench pulls through the network's own context
            if concurrency:
                context.settings = context.settings.model_copy(update={"profile_concurrency_per_cpo": concurrency})
            with unit_of_work(factory) as session:
                connection_ids = list(session.scalars(select(OcpiConnection.id).where(
                    OcpiConnection.status == "connected")))

            async def pull() -> None:
                for cid in connection_ids:
                    await sync.pull_locations(context, cid)
                    await sync.pull_sessions(context, cid, date_from=datetime.now(UTC) - timedelta(days=1))

            aio.run(pull())
            with unit_of_work(factory) as session:
                active = session.scalar(select(func.count()).select_from(ChargingSession)
                                        .where(ChargingSession.status == "active")) or 0
            setup_s = time.perf_counter() - setup_started
            [pool] = source.pools()
            if redis_url:
                dispatcher = build_dispatcher(settings, factory, source=source, network=network)
            else:
                dispatcher = Dispatcher(settings=settings, session_factory=factory, source=source, network=network,
                                        receiver=InProcessActivationBus(), lease=InProcessLease(60.0))
            cycles: list[tuple[float, float, CyclePlan | None]] = []
            cycle_ran = asyncio.Event()
            run_cycle = dispatcher.run_cycle

            async def observed_cycle(pool: str) -> CyclePlan | None:
                started_at = time.perf_counter()
                plan_ = await run_cycle(pool)
                cycles.append((started_at, time.perf_counter(), plan_))
                cycle_ran.set()
                return plan_

            dispatcher.run_cycle = observed_cycle  # type: ignore[method-assign]
            spans = _Spans()
            spans.wrap(source, "snapshot", "snapshot (portfolio read)")
            spans.wrap(dispatch_service, "latest_setpoint", "setpoint read")
            spans.wrap(dispatch_service, "record_cycle", "allocation write")
            spans.wrap(dispatch_service, "record_send", "send outcome write")
            spans.wrap(PoolDispatch, "plan", "plan (allocation)")
            spans.wrap(network, "_plan", "profile requests write (before sending)")
            spans.wrap(network, "_send", "ChargingProfiles PUT (each, wall)")
            spans.wrap(network, "_record", "profile answers write")
            for name in ("expire_lost", "targets", "statuses", "backing_off", "open_requests", "record_answers"):
                spans.wrap(limits, name, f"  of which limits.{name}")

            statuses: dict[str, int] = {}

            def results_since(at: datetime, until: datetime) -> tuple[int, int]:
                """Requests made from ``at`` to ``until`` (this step's, not the loop's later cycles'), and how many
                have their result."""
                with unit_of_work(factory) as session:
                    rows = session.execute(select(LimitRequest.status, func.count()).where(
                        LimitRequest.created_at >= at, LimitRequest.created_at <= until)
                        .group_by(LimitRequest.status)).all()
                statuses.clear()
                statuses.update({str(k): int(v) for k, v in rows})
                return sum(statuses.values()), sum(v for k, v in statuses.items() if k not in ("sending", "accepted"))

            gc_time = [0.0, 0.0]

            def gc_clock(phase: str, _info: dict[str, Any]) -> None:
                if phase == "start":
                    gc_time[1] = time.perf_counter()
                else:
                    gc_time[0] += time.perf_counter() - gc_time[1]

            gc.callbacks.append(gc_clock)

            async def doorbell_cycle(seq: int) -> tuple[float, CyclePlan]:
                """The first cycle the dispatcher's loop ran with setpoint ``seq`` (on its doorbell), and when."""
                while True:
                    for started_at, _ended, plan_ in cycles:
                        if plan_ is not None and plan_.setpoint.seq == seq:
                            return started_at, plan_
                    cycle_ran.clear()
                    await asyncio.wait_for(cycle_ran.wait(), timeout=30)

            async def measured(post_setpoint: float | None, *, via_loop: bool = False) -> dict[str, Any]:
                marks: dict[str, Any] = {}
                gc_time[0] = 0.0
                before = datetime.now(UTC) - timedelta(milliseconds=1)
                pids = {"dispatcher (this process)": os.getpid(), "api": api.pid or 0, "cpos": sims.pid or 0}
                cpu = {name: _cpu_s(pid) for name, pid in pids.items()}
                spans.reset()
                started = spans.origin
                if post_setpoint is not None:
                    async with httpx.AsyncClient(base_url=env["VPP_PUBLIC_URL"],
                                                 headers={"Authorization": f"Bearer {key}"}) as client:
                        body = {"pool": pool, "seq": 1, "timestamp": datetime.now(UTC).isoformat(),
                                "setpoint_mw": post_setpoint}
                        (await client.post("/api/v1/market/afrr/setpoints", json=body)).raise_for_status()
                    marks["setpoint_ack_s"] = time.perf_counter() - started
                plan: CyclePlan | None
                if via_loop:
                    cycle_started, plan = await doorbell_cycle(1)
                    marks["doorbell_s"] = cycle_started - started
                else:
                    plan = await dispatcher.run_cycle(pool)
                assert plan is not None
                marks["cycle_s"] = time.perf_counter() - started
                await dispatcher.drain()
                marks["last_ack_s"] = time.perf_counter() - started
                marks["gc_s"] = gc_time[0]
                marks["cpu_s_to_last_ack"] = {name: round(_cpu_s(pid) - cpu[name], 2) for name, pid in pids.items()}
                marks["where"] = spans.report()
                acked = datetime.now(UTC)
                total, done = results_since(before, acked)
                renewed = time.monotonic()
                while done < total and time.perf_counter() - started < 120:
                    await asyncio.sleep(0.05)
                    total, done = results_since(before, acked)
                    if not via_loop and time.monotonic() - renewed > settings.dispatch_lease_ttl_seconds / 3:
                        # Nothing else renews the lease while the first cycle's results come in.
                        await dispatcher.manage_leases()
                        renewed = time.monotonic()
                marks["last_result_s"] = time.perf_counter() - started
                marks.update(changed=len(plan.send_ids), requests=total, results=done, plan=plan,
                             statuses=dict(statuses))
                return marks

            # A committed schedule near the pool's maximum, so the first cycle sends every session a high limit;
            # then an upward setpoint that takes the pool down to its departure needs changes nearly all of them.
            snapshot = source.snapshot(pool, datetime.now(UTC))
            assert snapshot is not None
            max_kw = float(snapshot.max_kw.sum())
            need_kw = float(np.minimum(snapshot.energy_needed_kwh / np.maximum(snapshot.hours_to_departure, 1e-3),
                                       snapshot.max_kw).sum())
            schedule_kw = 0.98 * max_kw
            with unit_of_work(factory) as session:
                now = datetime.now(UTC)
                commitments.record(session, [CommitmentValue(
                    pool=pool, isp_start=floor_to_isp(now) + timedelta(minutes=15 * k), kind=kind,
                    power_kw=schedule_kw, source="bench", reference="bench") for k in range(2)
                    for kind in (CommitmentKind.AFRR_CAPACITY_UP, CommitmentKind.AFRR_CAPACITY_DOWN,
                                 CommitmentKind.DAY_AHEAD_SCHEDULE)])

            async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
                deadline = time.monotonic() + settings.dispatch_lease_ttl_seconds + 5.0
                await dispatcher.manage_leases()
                while pool not in dispatcher.owned:  # a lease left by an earlier run expires
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"could not take the lease of pool {pool}")
                    await asyncio.sleep(0.5)
                    await dispatcher.manage_leases()
                first = await measured(None)
                setpoint_mw = round((schedule_kw - need_kw) / 1000.0, 3)
                if not redis_url:
                    # Between cycles the dispatcher's loop reads the fleet again (every 4 s); a setpoint then
                    # plans with that read instead of waiting for one.
                    await dispatcher.warm()
                    await asyncio.sleep(1.0)
                    step = await measured(setpoint_mw)
                    await dispatcher.shutdown()
                    return first, step
                # The dispatcher's own loop: periodic cycles (nothing moved: nothing sent), reads of the fleet
                # between them, and the doorbell; the setpoint arrives a second after a periodic cycle.
                stop = asyncio.Event()
                loop = asyncio.create_task(dispatcher.run(stop))
                try:
                    for _ in range(2):
                        cycle_ran.clear()
                        await asyncio.wait_for(cycle_ran.wait(), timeout=3 * settings.dispatch_interval_seconds)
                    await asyncio.sleep(1.0)
                    step = await measured(setpoint_mw, via_loop=True)
                finally:
                    stop.set()
                    await loop
                return first, step

            first, step = aio.run(scenario())
        finally:
            stop.set()
            if sims.pid is not None:
                sims.join(timeout=10)
            for process in (sims, api):
                if process.pid is not None and process.is_alive():
                    process.terminate()
                    process.join(timeout=5)
            engine.dispose()

    def figures(marks: dict[str, Any]) -> dict[str, Any]:
        out = {"seconds_to_last_ack": round(marks["last_ack_s"], 3),
               "seconds_to_last_result": round(marks["last_result_s"], 3),
               "changed": marks["changed"], "cycle_seconds": round(marks["cycle_s"], 3),
               "requests": marks["requests"], "results": marks["results"], "statuses": marks["statuses"],
               "setpoint_mw": marks["plan"].setpoint.setpoint_mw, "target_kw": round(marks["plan"].target_kw, 1),
               "total_kw": round(marks["plan"].total_kw, 1), "flags": marks["plan"].flags,
               "where_time_goes": marks["where"], "cpu_seconds_to_last_ack": marks["cpu_s_to_last_ack"],
               "dispatcher_gc_seconds_to_last_ack": round(marks["gc_s"], 3)}
        if "setpoint_ack_s" in marks:
            out["setpoint_ack_seconds"] = round(marks["setpoint_ack_s"], 3)
        if "doorbell_s" in marks:
            out["cycle_started_seconds"] = round(marks["doorbell_s"], 3)
        return out

    return {"name": "dispatch", "sessions": int(active), **figures(step), "first_cycle": figures(first),
              "setup_seconds": round(setup_s, 1),
              "network": f"OCPI over HTTP: {cpos} simulated CPOs x {per_cpo} EVSEs (sim/cpo, fast profile path) "
                         "served by uvicorn in one child process; the API in another",
              "database": "PostgreSQL (temporary database)" if not database_url.startswith("sqlite")
              else "SQLite (temporary file)",
              "activation_bus": "Redis stream doorbell, the dispatcher's own loop, Redis lease" if redis_url
              else "none: the cycle runs when the setpoint is acknowledged (embedded mode)"}


def run_dispatch_bench(sessions: int = 10_000, *, latency_s: float = 0.05, cpos: int = 10,
                       per_cpo_concurrency: int = 32, seed: int = 1) -> dict[str, Any]:
    """A first cycle (every limit sent) and a setpoint step, against the in-process fake network."""
    from sqlalchemy.orm import Session, sessionmaker

    from vpp.activations.tables import AfrrSetpoint
    from vpp.commitments.tables import Commitment  # noqa: F401  (metadata)
    from vpp.config import Settings
    from vpp.db import create_db_engine, create_session_factory, unit_of_work
    from vpp.dispatch.sim import FakeNetwork, FleetSource, SimulatedFleet
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


def add_args(p: argparse.ArgumentParser) -> None:
    """Options of ``vpp bench dispatch``."""
    p.add_argument("--sessions", type=int, default=10_000)
    p.add_argument("--network", choices=("http", "fake"), default="http",
                   help="http: simulated OCPI CPOs on localhost over real HTTP; fake: the in-process fake network")
    p.add_argument("--cpos", type=int, default=None, help="CPOs (default: 5 over HTTP, 10 fake)")
    p.add_argument("--concurrency", type=int, default=None,
                   help="http: ChargingProfiles requests in flight per CPO (default: the OCPI setting)")
    p.add_argument("--latency-ms", type=float, default=50.0, help="fake: latency per request")


def run(args: argparse.Namespace) -> dict[str, Any]:
    """``vpp bench dispatch``: over HTTP, or on the fake network."""
    if args.network == "fake":
        return run_dispatch_bench(args.sessions, latency_s=args.latency_ms / 1000.0, cpos=args.cpos or 10)
    return run_http_dispatch_bench(args.sessions, cpos=args.cpos or 5, concurrency=args.concurrency)
