"""The soak's load: a TSO posting an aFRR setpoint per pool every 4 s, and CPO session traffic at a fleet's rate.

Both record what the service acknowledged, so that the report can look for each acknowledged item in the
database afterwards. A request that fails (a 5xx, a refused connection while PostgreSQL restarts) is not
acknowledged; the CPO side sends the same charging period again on the session's next turn, as a CPO would.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from adapters.ocpi.v2_2_1.transport import encode_token, format_datetime

OCPI_PERIOD_S = 900.0  # a car reports at least once per 15-minute charging period
STEP_S = 4.0


@dataclass
class SetpointSent:
    """One setpoint the TSO posted."""

    pool: str
    seq: int
    sent_at: float  # time.time()
    latency_ms: float | None  # None: not acknowledged
    error: str | None = None


@dataclass
class Tso:
    """Posts one setpoint per pool and 4-s step, with seq growing by one per step."""

    client: httpx.AsyncClient
    pools: Sequence[str]
    capacity_mw: float
    step_s: float = STEP_S
    sent: list[SetpointSent] = field(default_factory=list)
    acked: asyncio.Event = field(default_factory=asyncio.Event)
    on_sent: Callable[[SetpointSent], None] | None = None  # told of each post as soon as it is answered

    def setpoint_mw(self, k: int) -> float:
        """A slow sine between -capacity and +capacity, so limits change every step."""
        return round(self.capacity_mw * math.sin(2 * math.pi * k / 30), 4)

    async def post(self, pool: str, seq: int, k: int) -> None:
        body = {"pool": pool, "seq": seq, "timestamp": datetime.now(UTC).isoformat(),
                "setpoint_mw": self.setpoint_mw(k)}
        sent_at = time.time()
        started = time.perf_counter()
        try:
            # The request id names the setpoint, so the service's access line and its setpoint line can be joined
            # with what the TSO measured (``--keep-logs``).
            answer = await self.client.post("/api/v1/market/afrr/setpoints", json=body,
                                            headers={"X-Request-Id": f"tso-{pool}-{seq}"})
            ok = answer.status_code in (200, 201)
            error = None if ok else f"HTTP {answer.status_code}"
        except httpx.HTTPError as exc:
            ok, error = False, type(exc).__name__
        latency = (time.perf_counter() - started) * 1000
        self.sent.append(SetpointSent(pool, seq, sent_at, latency if ok else None, error))
        if self.on_sent is not None:
            self.on_sent(self.sent[-1])
        if ok:
            self.acked.set()

    async def run(self, stop: asyncio.Event, first_seq: int) -> None:
        """Post until ``stop``, on a fixed 4-s grid (a late answer does not shift the next step)."""
        started = time.monotonic()
        k = 0
        while not stop.is_set():
            await asyncio.gather(*(self.post(pool, first_seq + k, k) for pool in self.pools))
            k += 1
            delay = started + k * self.step_s - time.monotonic()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=delay)


@dataclass
class LoopLag:
    """How late the soak's own event loop wakes a sleeper: the TSO's answers and the CPO's share this loop, so an
    acknowledgement the TSO measured late may have waited here rather than in the service."""

    tick_s: float = 0.02
    lags_ms: list[float] = field(default_factory=list)
    late: list[tuple[float, float]] = field(default_factory=list)  # (time.time(), ms) of wake-ups over 20 ms late

    async def run(self, stop: asyncio.Event) -> None:
        """Sleep ``tick_s`` at a time until ``stop``, recording how much later than asked each wake-up came."""
        while not stop.is_set():
            before = time.perf_counter()
            await asyncio.sleep(self.tick_s)
            lag_ms = (time.perf_counter() - before - self.tick_s) * 1000
            self.lags_ms.append(lag_ms)
            if lag_ms > 20:
                self.late.append((time.time(), round(lag_ms, 1)))


@dataclass
class IngestStats:
    """What the CPO side sent and what the service acknowledged."""

    sessions_put: int = 0
    patches_sent: int = 0
    patches_failed: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    acknowledged: dict[str, list[datetime]] = field(default_factory=dict)  # session id -> period starts
    started: float = 0.0
    finished: float = 0.0

    @property
    def readings_acknowledged(self) -> int:
        """Charging periods the service acknowledged."""
        return sum(len(v) for v in self.acknowledged.values())


@dataclass
class Ingest:
    """A CPO pushing its sessions' charging periods over OCPI at ``rate`` PATCH/s (open loop).

    ``rate`` = cars / 900 s: every car of the fleet reports once per 15-minute period. The sessions cycle, so a
    session reports every ``sessions / rate`` seconds with one new charging period of that length.
    """

    client: httpx.AsyncClient
    token: str
    party: tuple[str, str]
    sessions: int
    rate: float
    concurrency: int = 16
    stats: IngestStats = field(default_factory=IngestStats)
    prefix: str = "SOAK"

    @property
    def path(self) -> str:
        """The OCPI Sessions receiver path of our party."""
        return f"/ocpi/2.2.1/sessions/{self.party[0]}/{self.party[1]}/"

    @property
    def headers(self) -> dict[str, str]:
        """Authorization with our token (Base64, OCPI 2.2.1)."""
        return {"Authorization": f"Token {encode_token(self.token)}"}

    def session_id(self, n: int) -> str:
        """The external id of session ``n``."""
        return f"{self.prefix}-{n:06d}"

    def session_body(self, n: int, start: datetime) -> dict[str, Any]:
        """An active AC session that plugged in at ``start``."""
        return {
            "country_code": self.party[0], "party_id": self.party[1], "id": self.session_id(n),
            "start_date_time": format_datetime(start), "kwh": 0.0, "auth_method": "WHITELIST",
            "location_id": f"SOAKLOC{n % 50:03d}", "evse_uid": f"SOAKEVSE{n:06d}", "connector_id": "1",
            "cdr_token": {"country_code": self.party[0], "party_id": "EMS", "uid": f"U{n}", "type": "RFID",
                          "contract_id": f"C{n}"},
            "currency": "EUR", "status": "ACTIVE", "last_updated": format_datetime(start),
            "charging_periods": [],
        }

    async def put_sessions(self, start: datetime) -> None:
        """PUT every session once (retrying each until it is acknowledged)."""
        queue = list(range(self.sessions))

        async def put(n: int) -> None:
            for _attempt in range(20):
                try:
                    answer = await self.client.put(self.path + self.session_id(n), headers=self.headers,
                                                   json=self.session_body(n, start))
                    if answer.status_code in (200, 201) and _ocpi_ok(answer):
                        self.stats.sessions_put += 1
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.5)
            raise RuntimeError(f"session {self.session_id(n)} was never accepted")

        while queue:
            batch, queue = queue[: self.concurrency], queue[self.concurrency:]
            await asyncio.gather(*(put(n) for n in batch))

    async def run(self, stop: asyncio.Event, start: datetime) -> None:
        """PATCH one new charging period per turn until ``stop``; a failed period is sent again next turn."""
        period = timedelta(seconds=max(round(self.sessions / self.rate), 1))
        next_period = {n: start for n in range(self.sessions)}
        delivered_kwh = dict.fromkeys(range(self.sessions), 0.0)
        self.stats.started = time.time()
        semaphore = asyncio.Semaphore(self.concurrency)
        pending: set[asyncio.Task[None]] = set()
        in_flight: set[int] = set()

        async def patch(n: int) -> None:
            in_flight.add(n)
            try:
                await send(n)
            finally:
                in_flight.discard(n)

        async def send(n: int) -> None:
            async with semaphore:
                if stop.is_set():
                    return  # queued behind slow answers when the run ended: never sent
                begin = next_period[n]
                energy = round(11.0 * period.total_seconds() / 3600, 4)
                body = {
                    "kwh": round(delivered_kwh[n] + energy, 4),
                    "charging_periods": [{"start_date_time": format_datetime(begin), "dimensions": [
                        {"type": "POWER", "volume": 11.0}, {"type": "ENERGY", "volume": energy}]}],
                    "last_updated": format_datetime(begin + period),
                }
                self.stats.patches_sent += 1
                t0 = time.perf_counter()
                try:
                    answer = await self.client.patch(self.path + self.session_id(n), headers=self.headers, json=body)
                    ok = answer.status_code == 200 and _ocpi_ok(answer)
                except httpx.HTTPError:
                    ok = False
                if ok:
                    self.stats.latencies_ms.append((time.perf_counter() - t0) * 1000)
                    self.stats.acknowledged.setdefault(self.session_id(n), []).append(begin)
                    next_period[n] = begin + period
                    delivered_kwh[n] += energy
                else:
                    self.stats.patches_failed += 1

        loop_start = time.monotonic()
        i = 0
        while not stop.is_set():
            due = loop_start + i / self.rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            n = i % self.sessions
            # One request per session at a time, and never a period that starts ahead of the wall clock.
            if n not in in_flight and next_period[n] <= datetime.now(UTC):
                task = asyncio.create_task(patch(n))
                pending.add(task)
                task.add_done_callback(pending.discard)
            i += 1
        if pending:
            await asyncio.wait(pending, timeout=30)
        for task in list(pending):
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        self.stats.finished = time.time()


def _ocpi_ok(answer: httpx.Response) -> bool:
    try:
        return int(answer.json().get("status_code", 0)) == 1000
    except (ValueError, AttributeError):
        return False


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile (nearest rank) of ``values``, rounded to 0.1; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))], 1)

