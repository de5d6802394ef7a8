"""The service of a simulation in a process of its own, beside the simulated parties.

The CPOs, the TSO, the DSO and the exchange are other parties: they run in the simulating process and reach the
service only over its real interfaces (HTTP API, OCPI), so the service and its dispatcher get the machine's
other core. Only *when* things happen is still decided by the simulation: a small control interface under
``/_sim`` (guarded by a one-off token, never part of the product's app) sets the service's clock and runs the
production dispatcher's cycles on it, exactly as the one-process run called them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Header, HTTPException
from pydantic import BaseModel

log = logging.getLogger(__name__)
CONTROL_HEADER = "X-Sim-Control"
START_TIMEOUT_S = 300.0
# How often (simulated seconds) the dispatch step looks for new pools to take.
LEASE_CHECK_S = 900.0
# Longest wall-clock wait for a step's re-plans (a re-plan takes well under a second on the demo).
REPLAN_WAIT_S = 600.0
# How often the service's process looks whether the simulation that started it is still there.
PARENT_CHECK_S = 2.0


class ClockSet(BaseModel):
    """Move the service's clock to ``now`` (never backwards)."""

    now: datetime


@dataclass(frozen=True)
class ServiceHandle:
    """Where the service of a simulation listens and the keys it minted, as the simulating process sees them."""

    url: str
    keys: dict[str, str]
    control_token: str
    process: Any


def _control_router(state: dict[str, Any], token: str) -> APIRouter:
    """The simulation's control endpoints: set the clock, run a dispatch step, count pulled EVSEs, stop."""
    router = APIRouter(prefix="/_sim", include_in_schema=False)

    def guard(value: str | None) -> None:
        if value is None or not secrets.compare_digest(value, token):
            raise HTTPException(status_code=403, detail="simulation control token required")

    def move_clock(now: datetime) -> None:
        clock = state["clock"]
        delta = (now - clock.now()).total_seconds()
        if delta > 0:
            clock.advance(delta)

    @router.post("/clock")
    async def set_clock(body: ClockSet, x_sim_control: str | None = Header(None)) -> dict[str, str]:
        guard(x_sim_control)
        move_clock(body.now)
        return {"now": state["clock"].now().isoformat()}

    @router.post("/dispatch")
    async def dispatch(body: ClockSet, x_sim_control: str | None = Header(None)) -> dict[str, int]:
        guard(x_sim_control)
        move_clock(body.now)
        dispatcher = state["dispatcher"]
        now = state["clock"].now()
        # Leases and pools on the simulated clock: the pools are taken at the first step and looked for again
        # every LEASE_CHECK_S of simulated time (the lease TTL itself is relaxed to outlast the run: there is
        # no second dispatcher), so which pools are dispatched does not depend on the machine's speed.
        if not dispatcher.owned or now >= state["next_lease_check"]:
            state["next_lease_check"] = now + timedelta(seconds=LEASE_CHECK_S)
            await dispatcher.manage_leases()
        for pool in sorted(dispatcher.owned):
            await dispatcher.run_cycle(pool)
        # Every limit answered and every re-plan this step asked for stored before the parties move on: in
        # simulated time they take no time, so what the next step sees does not depend on the wall clock.
        await dispatcher.drain()
        planner = getattr(state["source"], "planner", None)
        if planner is not None:
            await asyncio.to_thread(planner.wait, REPLAN_WAIT_S)
        return {"pools": len(dispatcher.owned)}

    @router.get("/evses")
    async def evses(x_sim_control: str | None = Header(None)) -> dict[str, int]:
        guard(x_sim_control)
        from sqlalchemy import func, select

        from vpp.locations.tables import ChargingEvse

        with state["engine"].connect() as conn:
            return {"count": int(conn.execute(select(func.count()).select_from(ChargingEvse)).scalar_one())}

    @router.post("/stop")
    async def stop(x_sim_control: str | None = Header(None)) -> dict[str, bool]:
        guard(x_sim_control)
        await state["dispatcher"].shutdown()
        state["stop"].set()
        return {"stopping": True}

    return router


async def _serve(data_dir: Path, start: datetime, overrides: dict[str, Any], token: str) -> None:
    import httpx

    from adapters.ocpi.v2_2_1.network import OcpiChargePointNetwork
    from sim.cpo.clock import ManualClock
    from sim.world import Served, free_port, service_app
    from workers.dispatcher import build_dispatcher, default_components

    clock = ManualClock(start)
    port = free_port()
    settings, engine, app, tasks, keys = service_app(data_dir, port, clock, overrides)
    state: dict[str, Any] = {"clock": clock, "engine": engine, "next_lease_check": start, "stop": asyncio.Event()}
    app.include_router(_control_router(state, token))
    served = Served(app, port)
    await served.start()
    app_state: Any = app.state
    source, network = default_components(settings, app_state.session_factory, clock)
    assert isinstance(network, OcpiChargePointNetwork)
    # The production network, but with one outbound client for the run instead of one per batch of limits.
    http = httpx.AsyncClient(timeout=network._context.settings.http_timeout_seconds)
    network = OcpiChargePointNetwork(network._context, http=http, clock=clock)
    state["source"] = source
    state["dispatcher"] = build_dispatcher(settings, app_state.session_factory, bus=app_state.activation_bus,
                                           source=source, network=network, clock=clock)
    _report({"url": served.url, "keys": keys})
    try:
        await state["stop"].wait()
    finally:
        await http.aclose()
        await served.stop()
        await asyncio.to_thread(tasks.shutdown)
        engine.dispose()


def _report(message: dict[str, Any]) -> None:
    """The one line the simulating process reads on our stdout; whatever is printed later goes to stderr."""
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())


def exit_with_parent(parent_pid: int, period_s: float = PARENT_CHECK_S) -> threading.Thread:
    """End this process when the process that started it is gone (killed, or ended without stopping us): a
    simulation interrupted by SIGKILL or a crash must not leave its service serving and re-planning."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(period_s)
        log.warning("the simulation that started this service is gone; exiting")
        os._exit(3)

    thread = threading.Thread(target=watch, name="exit-with-parent", daemon=True)
    thread.start()
    return thread


def main() -> None:
    """``python -m sim.service_process [PARENT_PID]``: the configuration as one JSON object on stdin."""
    from vpp import aio

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # The simulation names itself (it may die before this process gets here, which would then watch init).
    exit_with_parent(int(sys.argv[1]) if len(sys.argv) > 1 else os.getppid())
    config = json.loads(sys.stdin.readline())
    try:
        aio.run(_serve(Path(config["data_dir"]), datetime.fromisoformat(config["start"]), config["overrides"],
                       config["token"]))
    except BaseException:
        _report({"error": traceback.format_exc()})
        raise


async def start_service_process(data_dir: Path, start: datetime, overrides: dict[str, Any]) -> ServiceHandle:
    """Start the service of a simulation in a new process and wait until it serves."""
    token = secrets.token_urlsafe(24)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sim.service_process", str(os.getpid()),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(json.dumps({"data_dir": str(data_dir), "start": start.isoformat(), "overrides": overrides,
                                    "token": token}).encode() + b"\n")
    await process.stdin.drain()
    process.stdin.close()
    try:
        line = await asyncio.wait_for(process.stdout.readline(), START_TIMEOUT_S)
    except TimeoutError:
        process.kill()
        raise RuntimeError(f"the simulated service did not start within {START_TIMEOUT_S:.0f} s") from None
    message: dict[str, Any] = json.loads(line) if line.strip() else {"error": "it exited without a word"}
    if "error" in message:
        await process.wait()
        raise RuntimeError(f"the simulated service failed to start:\n{message['error']}")
    return ServiceHandle(url=message["url"], keys=message["keys"], control_token=token, process=process)


async def stop_service_process(handle: ServiceHandle, control: Any) -> None:
    """Stop the dispatcher and the server of the service's process, then the process."""
    try:
        await control.post("/_sim/stop")
    except Exception:  # the process may be gone already; it is ended below either way
        log.warning("the simulated service did not take the stop request", exc_info=True)
    try:
        await asyncio.wait_for(handle.process.wait(), 30.0)
    except TimeoutError:
        handle.process.kill()
        await handle.process.wait()


if __name__ == "__main__":
    main()


__all__ = ["CONTROL_HEADER", "ServiceHandle", "start_service_process", "stop_service_process"]
