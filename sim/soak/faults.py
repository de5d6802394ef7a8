"""The soak's fault schedule: one fault at a time, spread over the run after a warm-up.

1. SIGKILL the dispatcher that owns the TSO's pools, right after a setpoint was acknowledged (its doorbell has
   just started a cycle: the kill lands mid-cycle); it is restarted a little later, as a supervisor would.
2. Restart Redis: every lease, stream and Celery queue is gone.
3. Restart PostgreSQL as a crash would (``pg_ctl -m immediate``: recovery from the WAL).
4. SIGKILL one uvicorn worker of the API (its supervisor starts a new one).
5. A simulated CPO answers 5xx, then answers too late (beyond the dispatcher's send time box), then vanishes
   (SIGKILL); meanwhile every CPO delays its asynchronous profile results.

Each fault leaves a window (start to recovery plus a grace of ``GRACE_S``) inside which acknowledgement latency is
counted as "in faults".
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from sim.soak.load import Tso
from sim.soak.report import FaultWindow
from sim.soak.services import LocalPostgres, LocalRedis
from sim.soak.stack import Stack
from sim.soak.tso_process import TsoProcess
from vpp.activations.tables import DispatchFence
from vpp.db import unit_of_work

if TYPE_CHECKING:
    from sim.soak.run import SimCpo

GRACE_S = 5.0
CALLBACK_DELAY_S = 10.0
TOO_LATE_MS = 6000  # the dispatcher's send time box is 3 s
DISPATCHERS = ("dispatcher-a", "dispatcher-b")
MAX_SPACING_S = 60.0


class FaultSchedule:
    """Runs the faults at their offsets; records their windows and the dispatcher kills."""

    def __init__(self, stack: Stack, postgres: LocalPostgres, redis: LocalRedis, cpos: Sequence[SimCpo],
                 factory: sessionmaker[Session], pools: Sequence[str], tso: Tso | TsoProcess, seconds: float) -> None:
        self.stack = stack
        self.postgres = postgres
        self.redis = redis
        self.cpos = list(cpos)
        self.factory = factory
        self.pools = list(pools)
        self.tso = tso
        self.seconds = seconds
        self.windows: list[FaultWindow] = []
        self.kills: list[tuple[float, str]] = []
        self._restarts: set[asyncio.Task[None]] = set()
        self._api_kills = 0

    def offsets(self) -> tuple[float, float]:
        """(warm-up, spacing) of the faults: one every ``spacing`` seconds (at most a minute), ending a tail
        before the run does; a long run goes through the five faults again and again."""
        warmup = min(30.0, max(8.0, 0.1 * self.seconds))
        tail = min(30.0, max(10.0, 0.1 * self.seconds))
        return warmup, min(max((self.seconds - warmup - tail) / 5, 4.0), MAX_SPACING_S)

    async def run(self) -> None:
        """Every fault at its time, round after round, then wait for the end of the run."""
        warmup, gap = self.offsets()
        t0 = time.monotonic()
        plan = [self.kill_dispatcher, self.restart_redis, self.restart_postgres, self.kill_api_worker,
                self.misbehave_cpo]
        k = 0
        tail = min(30.0, max(10.0, 0.1 * self.seconds))
        while warmup + (k + 1) * gap <= self.seconds - tail + 1e-6 or k < len(plan):
            fault = plan[k % len(plan)]
            await _sleep_until(t0 + warmup + k * gap)
            try:
                await fault(gap)
            except Exception as exc:  # a fault that cannot be injected is reported, the run goes on
                self.windows.append(FaultWindow(fault.__name__, time.time(), time.time(), {"error": repr(exc)}))
            k += 1
        await _sleep_until(t0 + self.seconds)
        if self._restarts:
            await asyncio.wait(self._restarts, timeout=60)

    def _window(self, name: str, start: float, end: float, **detail: Any) -> None:
        self.windows.append(FaultWindow(name, start, end + GRACE_S, detail))

    # ------------------------------------------------------------------------------------------------ faults

    async def kill_dispatcher(self, gap: float) -> None:
        """SIGKILL the owner of the TSO's pools mid-cycle; restart it after ``gap`` / 2 (at most 15 s)."""
        owner = await asyncio.to_thread(self._owner_of_pools)
        victim = self._process_of(owner)
        self.tso.acked.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.tso.acked.wait(), timeout=8)
        await asyncio.sleep(0.02)  # the doorbell woke it: its cycle runs now
        start = time.time()
        pid = self.stack.kill(victim)
        self.kills.append((start, owner))
        self._window("dispatcher_sigkill", start, time.time(), process=victim, pid=pid)

        async def restart() -> None:
            await asyncio.sleep(min(gap / 2, 15.0))
            await asyncio.to_thread(self.stack.start_dispatcher, victim)

        task = asyncio.create_task(restart())
        self._restarts.add(task)
        task.add_done_callback(self._restarts.discard)

    async def restart_redis(self, _gap: float) -> None:
        """Stop Redis (nothing on disk), start it empty."""
        start = time.time()
        await asyncio.to_thread(self.redis.restart, 1.0)
        self._window("redis_restart", start, time.time())

    async def restart_postgres(self, _gap: float) -> None:
        """Crash-stop PostgreSQL and start it again."""
        start = time.time()
        await asyncio.to_thread(self.postgres.restart, 1.0)
        self._window("postgres_restart", start, time.time())

    async def kill_api_worker(self, _gap: float) -> None:
        """SIGKILL one uvicorn worker; the supervisor replaces it (the window lasts until the new one serves).

        With a market process of several workers, every second kill hits one of its workers instead of the
        API's: the TSO's path is killed too (a market process of one worker has no supervisor to replace it)."""
        self._api_kills += 1
        name = "market" if self.stack.market_workers > 1 and self._api_kills % 2 == 0 else "api"
        workers = self.stack.api_worker_pids(name)
        start = time.time()
        if workers:
            os.kill(workers[0], signal.SIGKILL)
        replaced = None
        while time.time() - start < 60:
            await asyncio.sleep(0.5)
            now = self.stack.api_worker_pids(name)
            if len(now) >= len(workers) and workers[0] not in now and self.stack.api_serving(name):
                replaced = round(time.time() - start, 1)
                break
        self._window("api_worker_sigkill", start, time.time(), process=name, workers=len(workers),
                     replaced_after_s=replaced)

    async def misbehave_cpo(self, gap: float) -> None:
        """CPO 0: 5xx, then too late, then gone; every CPO delays its callbacks meanwhile."""
        alive = [cpo for cpo in self.cpos if cpo.process.poll() is None]
        if len(alive) < 2:
            return  # every CPO but one has vanished already: the last one keeps the pools steered
        start = time.time()
        async with httpx.AsyncClient(timeout=5) as http:
            for cpo in alive:
                await _faults(http, cpo.url, {"callback_delay_s": CALLBACK_DELAY_S})
            victim = alive[0]
            await _faults(http, victim.url, {"error_rate": 1.0, "callback_delay_s": CALLBACK_DELAY_S})
            await asyncio.sleep(gap / 3)
            await _faults(http, victim.url, {"latency_ms": TOO_LATE_MS, "callback_delay_s": CALLBACK_DELAY_S})
            await asyncio.sleep(gap / 3)
            victim.process.send_signal(signal.SIGKILL)
            await asyncio.to_thread(victim.process.wait, 10)
            await asyncio.sleep(gap / 3)
            for cpo in alive[1:]:
                await _faults(http, cpo.url, {})
        self._window("cpo_5xx_timeout_vanish", start, time.time(), cpo=victim.party,
                     callback_delay_s=CALLBACK_DELAY_S)

    # ------------------------------------------------------------------------------------------------ helpers

    def _owner_of_pools(self) -> str:
        with unit_of_work(self.factory) as session:
            owners = session.scalars(select(DispatchFence.owner).where(DispatchFence.pool.in_(self.pools))).all()
        if not owners:
            raise RuntimeError("no dispatcher has written for the TSO's pools yet")
        return max(set(owners), key=owners.count)

    def _process_of(self, owner: str) -> str:
        """Which dispatcher process holds the lease token ``owner`` (it logs the token when it takes a pool)."""
        for name in DISPATCHERS:
            path = self.stack.logs / f"{name}.log"
            if path.exists() and owner in path.read_text(errors="replace"):
                return name
        raise RuntimeError(f"no dispatcher log names the owner {owner}")


async def _faults(http: httpx.AsyncClient, url: str, config: dict[str, Any]) -> None:
    with contextlib.suppress(httpx.HTTPError):
        await http.put(f"{url}/admin/faults", json=config)


async def _sleep_until(deadline: float) -> None:
    delay = deadline - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)
