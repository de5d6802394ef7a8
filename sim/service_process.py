"""The service of a simulation in a process of its own, beside the simulated parties.

The CPOs, the TSO, the DSO and the exchange are other parties: they run in the simulating process and reach the
service only over its real interfaces (HTTP API, OCPI), so the service and its dispatcher get the machine's
other core. Only *when* things happen is still decided by the simulation: a small control interface under
``/_sim`` (guarded by a one-off token, never part of the product's app) sets the service's clock and runs the
production dispatcher's cycles on it, exactly as the one-process run called them.

With ``VPP_SIM_INTAKE_PROCESSES=N`` (N > 0) the OCPI intake (what the CPOs push, and their answers to our
ChargingProfiles) is served by N processes of its own, the service's app again on the same database, all listening
on one port: the service's process was the bottleneck of a run, one interpreter on one core, and most of its work
was intake. The peers are given the intake's URL as the service's public URL; the simulation's API calls and the
control interface stay with the dispatcher's process. The default is 0 (the intake in the service's process): on a
loaded machine two more interpreters cost more CPU than they saved; on a quiet one two intake processes took the
demo from 653 to 545 s with the same figures (docs/scenarios.md, "Speed"), so ``make demo`` runs with 2.
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

from sim.prelaunch import SERVICE_ROLE
from sim.prelaunch import take as take_prelaunched

log = logging.getLogger(__name__)
CONTROL_HEADER = "X-Sim-Control"
# How many processes serve the OCPI intake (``VPP_SIM_INTAKE_PROCESSES``; 0: the service's own process).
INTAKE_PROCESSES_ENV = "VPP_SIM_INTAKE_PROCESSES"
INTAKE_PROCESSES = 0
# The argument that launches an intake's process ahead of its configuration (it imports while it waits).
INTAKE_ROLE = "intake"
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

    async def move_clock(now: datetime) -> None:
        clock = state["clock"]
        delta = (now - clock.now()).total_seconds()
        if delta > 0:
            clock.advance(delta)
            # The intake's processes keep the same time (their OCPI answers read no clock today; whatever does
            # later sees the simulated time, not the start): told side by side, every step.
            answers = await asyncio.gather(*(intake.control.post("/_sim/clock", json={"now": now.isoformat()})
                                             for intake in state.get("intakes", ())))
            for answer in answers:
                answer.raise_for_status()

    @router.post("/clock")
    async def set_clock(body: ClockSet, x_sim_control: str | None = Header(None)) -> dict[str, str]:
        guard(x_sim_control)
        await move_clock(body.now)
        return {"now": state["clock"].now().isoformat()}

    @router.post("/dispatch")
    async def dispatch(body: ClockSet, x_sim_control: str | None = Header(None)) -> dict[str, int]:
        guard(x_sim_control)
        await move_clock(body.now)
        dispatcher = state["dispatcher"]
        now = state["clock"].now()
        # Leases and pools on the simulated clock: the pools are taken at the first step and looked for again
        # every LEASE_CHECK_S of simulated time (the lease TTL itself is relaxed to outlast the run: there is
        # no second dispatcher), so which pools are dispatched does not depend on the machine's speed.
        if not dispatcher.owned or now >= state["next_lease_check"]:
            state["next_lease_check"] = now + timedelta(seconds=LEASE_CHECK_S)
            await dispatcher.manage_leases()
        source = state["source"]
        planner = getattr(source, "planner", None)
        # A stale plan (a new ISP, an arrival, a changed need) is re-made before the cycle: production's cycles
        # come every 4 s and send a re-plan's first ISP within seconds; a step's one cycle would send it an ISP late.
        replan = getattr(source, "replan_stale", None)
        if planner is not None and replan is not None:
            asked = [await asyncio.to_thread(replan, pool, now) for pool in sorted(dispatcher.owned)]
            if any(asked):
                await asyncio.to_thread(planner.wait, REPLAN_WAIT_S)
        for pool in sorted(dispatcher.owned):
            await dispatcher.run_cycle(pool)
        # Every limit answered and every re-plan this step asked for stored before the parties move on: in
        # simulated time they take no time, so what the next step sees does not depend on the wall clock.
        await dispatcher.drain()
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
        if "dispatcher" in state:
            await state["dispatcher"].shutdown()
        state["stop"].set()
        return {"stopping": True}

    return router


@dataclass
class _Intake:
    """The OCPI intake's process as the service's process sees it."""

    url: str
    process: Any
    control: Any


def intake_processes() -> int:
    """How many processes serve the OCPI intake (``VPP_SIM_INTAKE_PROCESSES``, default ``INTAKE_PROCESSES``)."""
    return max(0, int(os.environ.get(INTAKE_PROCESSES_ENV, "").strip() or INTAKE_PROCESSES))


def _shared_secrets(settings: Any) -> dict[str, str]:
    """The secrets the intake's process must share with the service's (peppered token hashes, sealed tokens):
    set explicitly outside embedded mode (embedded, both read the same files under the data directory)."""
    out: dict[str, str] = {}
    for name in ("secret_key", "uftp_signing_key", "token_key", "token_keys_previous"):
        value = getattr(settings, name, None)
        if value is not None and hasattr(value, "get_secret_value"):
            out[name] = value.get_secret_value()
    return out


async def _start_intake(process: Any, data_dir: Path, start: datetime, port: int, overrides: dict[str, Any],
                        token: str) -> _Intake:
    """Configure an OCPI intake's process launched ahead (``_launch(INTAKE_ROLE)``) to serve on ``port`` (the
    database is migrated and the keys minted already) and wait until it serves."""
    import httpx

    message = await _configure(process, {"role": "intake", "data_dir": str(data_dir), "start": start.isoformat(),
                                         "port": port, "overrides": overrides, "token": token})
    control = httpx.AsyncClient(base_url=message["url"], headers={CONTROL_HEADER: token}, timeout=600.0)
    return _Intake(url=message["url"], process=process, control=control)


async def _abandon(process: Any) -> None:
    """End a launched process that was never configured (the service failed to start before); one that served
    and was stopped (``_stop_intake``) has ended already."""
    if process.returncode is None:
        process.kill()
    await process.wait()


async def _stop_intake(intake: _Intake) -> None:
    try:
        await intake.control.post("/_sim/stop")
    except Exception:  # gone already; ended below either way
        log.warning("the intake's process did not take the stop request", exc_info=True)
    await intake.control.aclose()
    try:
        await asyncio.wait_for(intake.process.wait(), 30.0)
    except TimeoutError:
        intake.process.kill()
        await intake.process.wait()


async def _serve_intake(data_dir: Path, start: datetime, port: int, overrides: dict[str, Any], token: str) -> None:
    """The OCPI intake of a simulation's service in a process of its own: the same app on the same database.

    The CPOs reach the service at its public URL, ``port``, on which every intake process listens (SO_REUSEPORT:
    the kernel spreads the CPOs' keep-alive connections over them): registration, Locations, Session PUT/PATCH,
    CDRs, profile results and active profiles are written here, on both cores, while the service's process
    dispatches and re-plans; everything between them goes through the database, as between the API workers and
    the dispatcher of a deployment. The control interface (clock, stop) listens on a port of this process alone.
    """
    from sim.cpo.clock import ManualClock
    from sim.world import Served, free_port, service_app, shared_listener

    clock = ManualClock(start)
    _settings, engine, app, tasks, _keys = service_app(data_dir, port, clock, overrides, fresh=False)
    state: dict[str, Any] = {"clock": clock, "engine": engine, "stop": asyncio.Event()}
    app.include_router(_control_router(state, token))
    own = free_port()
    served = Served(app, own, sockets=[shared_listener(port), shared_listener(own)])
    await served.start()
    _report({"url": served.url})
    try:
        await state["stop"].wait()
    finally:
        await served.stop()
        await asyncio.to_thread(tasks.shutdown)
        engine.dispose()


async def _serve(data_dir: Path, start: datetime, overrides: dict[str, Any], token: str) -> None:
    # The intake's processes are launched first: they import the service's modules (seconds of CPU each) while
    # this process imports its own and migrates the database, instead of after, and wait for their configuration.
    launched = [await _launch(INTAKE_ROLE) for _ in range(intake_processes())]
    try:
        await _serve_with(data_dir, start, overrides, token, launched)
    finally:
        for process in launched:
            await _abandon(process)


async def _serve_with(data_dir: Path, start: datetime, overrides: dict[str, Any], token: str,
                      launched: list[Any]) -> None:
    from adapters.ocpi.v2_2_1.network import OcpiChargePointNetwork
    from sim.cpo.clock import ManualClock
    from sim.world import Served, free_port, service_app
    from workers.dispatcher import build_dispatcher, default_components

    clock = ManualClock(start)
    port = free_port()
    intake_port = free_port() if launched else None
    if intake_port is not None:
        # Peers are told the intake's URL (versions, endpoints, the profiles' response URLs).
        overrides = {**overrides, "public_url": f"http://127.0.0.1:{intake_port}"}
    settings, engine, app, tasks, keys = service_app(data_dir, port, clock, overrides)
    state: dict[str, Any] = {"clock": clock, "engine": engine, "next_lease_check": start, "stop": asyncio.Event()}
    if intake_port is not None:
        shared = {**overrides, **_shared_secrets(settings)}
        state["intakes"] = list(await asyncio.gather(*(
            _start_intake(process, data_dir, start, intake_port, shared, token) for process in launched)))
    app.include_router(_control_router(state, token))
    served = Served(app, port)
    await served.start()
    app_state: Any = app.state
    # The production network as it is: its lean keep-alive pools per CPO live for the run (an injected httpx
    # client, as here before, turns them off and costs the dispatcher's loop httpx's request models per limit).
    source, network = default_components(settings, app_state.session_factory, clock)
    assert isinstance(network, OcpiChargePointNetwork)
    state["source"] = source
    state["dispatcher"] = build_dispatcher(settings, app_state.session_factory, bus=app_state.activation_bus,
                                           source=source, network=network, clock=clock)
    _report({"url": served.url, "keys": keys})
    try:
        await state["stop"].wait()
    finally:
        await network.aclose()
        await asyncio.gather(*(_stop_intake(intake) for intake in state.get("intakes", ())))
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
    from vpp.observability import silence_solver_banner

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    silence_solver_banner()
    # The simulation names itself (it may die before this process gets here, which would then watch init).
    exit_with_parent(int(sys.argv[1]) if len(sys.argv) > 1 else os.getppid())
    if sys.argv[2:3] in ([INTAKE_ROLE], [SERVICE_ROLE]):
        # Launched ahead of its configuration (``_serve``, ``sim.prelaunch``): the modules it serves with are
        # imported meanwhile.
        import sim.world  # noqa: F401
        if sys.argv[2:3] == [SERVICE_ROLE]:
            import adapters.ocpi.v2_2_1.network  # noqa: F401
            import workers.dispatcher  # noqa: F401
    line = sys.stdin.readline()
    if not line.strip():
        # Launched ahead by a simulation that ended before it started its service: nothing to serve.
        return
    config = json.loads(line)
    data_dir, start = Path(config["data_dir"]), datetime.fromisoformat(config["start"])
    try:
        if config.get("role") == "intake":
            aio.run(_serve_intake(data_dir, start, int(config["port"]), config["overrides"], config["token"]))
        else:
            aio.run(_serve(data_dir, start, config["overrides"], config["token"]))
    except BaseException:
        _report({"error": traceback.format_exc()})
        raise


async def _spawn(config: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """Start ``python -m sim.service_process`` with ``config`` on its stdin; the process and the line it reports
    once it serves (or an error saying why it could not)."""
    process = await _launch()
    return process, await _configure(process, config)


async def _launch(*args: str) -> Any:
    """Start ``python -m sim.service_process`` (``args`` after its parent's pid); it waits for its configuration."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sim.service_process", str(os.getpid()), *args,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)


async def _configure(process: Any, config: dict[str, Any]) -> dict[str, Any]:
    """Give a launched process ``config`` on its stdin; the line it reports once it serves."""
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(json.dumps(config).encode() + b"\n")
    await process.stdin.drain()
    process.stdin.close()
    return await _first_message(process)


async def _first_message(process: Any) -> dict[str, Any]:
    """The line a started process reports once it serves (or why it could not)."""
    try:
        line = await asyncio.wait_for(process.stdout.readline(), START_TIMEOUT_S)
    except TimeoutError:
        process.kill()
        raise RuntimeError(f"the simulated service did not start within {START_TIMEOUT_S:.0f} s") from None
    message: dict[str, Any] = json.loads(line) if line.strip() else {"error": "it exited without a word"}
    if "error" in message:
        await process.wait()
        raise RuntimeError(f"the simulated service failed to start:\n{message['error']}")
    return message


async def start_service_process(data_dir: Path, start: datetime, overrides: dict[str, Any]) -> ServiceHandle:
    """Start the service of a simulation in a new process and wait until it serves."""
    token = secrets.token_urlsafe(24)
    config = {"data_dir": str(data_dir), "start": start.isoformat(), "overrides": overrides, "token": token}
    # The process ``vpp simulate`` / ``vpp pilots`` launched ahead (it imported while this one did), else a new one.
    prelaunched = take_prelaunched()
    if prelaunched is not None:
        process, message = prelaunched, await _configure(prelaunched, config)
    else:
        process, message = await _spawn(config)
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
