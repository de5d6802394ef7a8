"""The simulated world around one service: the service on a free port in a process of its own, and CPOs
speaking OCPI to it.

The CPOs run on one asyncio loop in this process, served by uvicorn on localhost; the service and its
dispatcher run in a second process (sim.service_process), so both cores work. The parties share one simulated
time that only the caller moves: the CPOs' clock here, the service's through its control interface. The
parties talk to the service only over its real interfaces: OCPI (registration, session pushes, charging
profiles) and the HTTP API with role keys.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import secrets
import socket
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import Engine

from sim.cpo.app import create_cpo_app
from sim.cpo.clock import ManualClock
from sim.cpo.config import CpoConfig
from sim.cpo.simulator import CpoSimulator
from sim.service_process import CONTROL_HEADER, ServiceHandle, start_service_process, stop_service_process
from vpp import migrate
from vpp.api.app import create_app
from vpp.apikeys import service as apikeys
from vpp.config import Settings
from vpp.db import create_db_engine, create_session_factory, unit_of_work
from workers.runtime import InProcessTaskQueue, Runtime

log = logging.getLogger(__name__)

ROLES = ("admin", "trader", "market", "dso", "partner")
# Simulated time runs many times faster than the wall clock, so real-time rate limits would throttle it.
UNTHROTTLED_PER_S = 1_000_000.0


def shared_listener(port: int) -> socket.socket:
    """A socket listening on ``port`` of localhost that other processes may listen on too (SO_REUSEPORT): the
    kernel spreads the connections made to the port over them."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(2048)
    return sock


def free_port() -> int:
    """A TCP port free on localhost now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Served:
    """An ASGI app served by uvicorn on a task of the running loop."""

    def __init__(self, app: FastAPI, port: int, sockets: list[socket.socket] | None = None) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        # Listening sockets made by the caller (e.g. one shared by several processes), instead of ``port``'s.
        self.sockets = sockets
        # Idle keep-alive connections stay open for the run: uvicorn's 5-s default closed connections the other
        # process was about to reuse (a wall-clock pause of a step is often longer), and the request then failed
        # with a ReadError (`make demo` from a fresh clone stopped at a charging-need PUT).
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on",
                                access_log=False, log_config=None, timeout_keep_alive=3600)
        self.server = uvicorn.Server(config)
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start serving and wait until the socket listens."""
        self.task = asyncio.create_task(self.server.serve(sockets=self.sockets))
        for _ in range(500):
            if self.server.started:
                return
            if self.task.done():
                self.task.result()
            await asyncio.sleep(0.01)
        raise RuntimeError(f"server on port {self.port} did not start")

    async def stop(self) -> None:
        """Stop serving."""
        self.server.should_exit = True
        if self.task is not None:
            await self.task


@dataclass
class SimulatedCpo:
    """A CPO simulator and where it is served."""

    party: str
    simulator: CpoSimulator
    served: Served
    connection_id: str = ""


@dataclass
class World:
    """The service (in its own process), its keys, the CPOs and the clock they share."""

    clock: ManualClock
    service_url: str
    keys: dict[str, str]
    handle: ServiceHandle
    cpos: dict[str, SimulatedCpo] = field(default_factory=dict)
    clients: dict[str, httpx.AsyncClient] = field(default_factory=dict)

    def client(self, role: str) -> httpx.AsyncClient:
        """An HTTP client of the service with the key of ``role`` (10 minutes per request: on a loaded machine a
        day-ahead build took over a minute, and the simulated parties wait for the service as the clock does)."""
        if role not in self.clients:
            self.clients[role] = httpx.AsyncClient(
                base_url=self.service_url, headers={"Authorization": f"Bearer {self.keys[role]}"}, timeout=600.0)
        return self.clients[role]

    def control(self) -> httpx.AsyncClient:
        """The simulation's control client of the service's process (clock, dispatch steps)."""
        if "_control" not in self.clients:
            self.clients["_control"] = httpx.AsyncClient(
                base_url=self.service_url, headers={CONTROL_HEADER: self.handle.control_token}, timeout=600.0)
        return self.clients["_control"]

    async def set_clock(self, now: datetime) -> None:
        """Move the service's clock to ``now``."""
        (await self.control().post("/_sim/clock", json={"now": now.isoformat()})).raise_for_status()

    async def dispatch(self, now: datetime) -> None:
        """One dispatcher step of the service at ``now``: its cycles for every pool it owns, answers awaited."""
        (await self.control().post("/_sim/dispatch", json={"now": now.isoformat()})).raise_for_status()

    async def evse_count(self) -> int:
        """How many EVSEs the service knows (pulled from the CPOs' Locations)."""
        response = await self.control().get("/_sim/evses")
        response.raise_for_status()
        return int(response.json()["count"])

    async def add_cpo(self, config: CpoConfig, *, discharge_profiles: bool) -> SimulatedCpo:
        """Serve a simulated CPO and let it register with the service (invite over the API, then OCPI)."""
        port = free_port()
        config = config.model_copy(update={"base_url": f"http://127.0.0.1:{port}", "auto_arrivals": False,
                                           "realtime": False})
        app = create_cpo_app(config, clock=self.clock)
        served = Served(app, port)
        await served.start()
        simulator: CpoSimulator = app.state.simulator
        invite = await self.client("admin").post("/api/v1/ocpi/connections", json={
            "name": f"{config.name} {config.party}",
            "flags": {"discharge_profiles": discharge_profiles, "rate_limit_per_s": UNTHROTTLED_PER_S,
                      "rate_limit_burst": UNTHROTTLED_PER_S}})
        invite.raise_for_status()
        body = invite.json()
        await simulator.register_with(body["versions_url"], body["token_a"])
        cpo = SimulatedCpo(party=config.party, simulator=simulator, served=served, connection_id=body["connection_id"])
        self.cpos[config.party] = cpo
        return cpo

    async def close(self) -> None:
        """Stop the service's process and every CPO server, and close the clients."""
        await stop_service_process(self.handle, self.control())
        for client in self.clients.values():
            await client.aclose()
        for cpo in self.cpos.values():
            await cpo.served.stop()


def simulation_settings(data_dir: Path, port: int, **overrides: Any) -> Settings:
    """Embedded defaults in ``data_dir`` (PostgreSQL/Redis when VPP_DATABASE_URL/VPP_REDIS_URL are set)."""
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "public_url": f"http://127.0.0.1:{port}",
        "log_format": "text",
        "log_level": os.environ.get("VPP_LOG_LEVEL", "WARNING"),
        "api_rate_limit_per_minute": 10**9,
        # Wall-clock time box of a batch of limits: one process serves every party here, so allow more.
        "dispatch_send_timeout_seconds": 60.0,
        # The simulation's one dispatcher takes its pools on the simulated clock (sim.service_process); a lease
        # expiring in wall-clock time while a slow step runs would only make it lose and take them back.
        "dispatch_lease_ttl_seconds": 30 * 86400.0,
        **overrides,
    }
    embedded = not (os.environ.get("VPP_REDIS_URL") or values.get("redis_url")) and not str(
        values.get("database_url") or os.environ.get("VPP_DATABASE_URL") or "sqlite").startswith("postgres")
    if not embedded:
        if not os.environ.get("VPP_SECRET_KEY") and "secret_key" not in values:
            values["secret_key"] = SecretStr(secrets.token_urlsafe(32))
        if not os.environ.get("VPP_UFTP_SIGNING_KEY") and "uftp_signing_key" not in values:
            from nacl.bindings import crypto_sign_keypair

            values["uftp_signing_key"] = SecretStr(base64.b64encode(crypto_sign_keypair()[1]).decode("ascii"))
    return Settings(**values)


def service_app(data_dir: Path, port: int, clock: ManualClock, overrides: dict[str, Any], *, fresh: bool = True
                ) -> tuple[Settings, Engine, FastAPI, InProcessTaskQueue, dict[str, str]]:
    """Migrate a fresh database, mint one key per role, and build the service's app on ``clock``; with ``fresh``
    False (an OCPI intake process beside the service's) only the app, on the database as it is, and no keys.

    The embedded dispatcher is not started: the simulation runs the production dispatcher's cycles on the
    simulated clock (sim.service_process).
    """
    settings = simulation_settings(data_dir, port, **overrides)
    engine = create_db_engine(settings.resolved_database_url, pool_size=settings.db_pool_size)
    factory = create_session_factory(engine)
    keys: dict[str, str] = {}
    if fresh:
        migrate.upgrade(engine)
        with unit_of_work(factory) as session:
            for role in ROLES:
                _row, keys[role] = apikeys.create(session, name=f"simulation {role}", role=role,
                                                  pepper=settings.secret)
    # Background work (OCPI pulls after registration, on request) runs on a thread pool of the service's process in
    # every mode: with Redis configured, Celery workers would run it on the wall clock, and none is started here.
    tasks = InProcessTaskQueue(Runtime(settings=settings, session_factory=factory, tasks_in_process=True))
    app = create_app(settings, engine=engine, session_factory=factory, background=False, clock=clock,
                     task_queue=tasks)
    return settings, engine, app, tasks, keys


async def start_world(data_dir: Path, clock: ManualClock, **settings_overrides: Any) -> World:
    """Start the service in its own process on a copy of ``clock``'s time; the CPOs join with ``add_cpo``."""
    handle = await start_service_process(data_dir, clock.now(), settings_overrides)
    return World(clock=clock, service_url=handle.url, keys=handle.keys, handle=handle)
