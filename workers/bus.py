"""The activation bus (Redis Streams, or an in-process queue when embedded) and the pool lease.

The database is the source of truth for setpoints: a stream entry is only a doorbell that makes the owning
dispatcher run a cycle at once. A dispatcher that was down reads the latest setpoint from the database when it
takes a pool over, and every owned pool also runs a cycle every few seconds, so a lost doorbell costs at most
one period and no activation is lost; consumer groups and acks would add state without adding safety.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import redis
import redis.asyncio as aredis

from vpp.ports import ActivationBus, ActivationEvent

log = logging.getLogger(__name__)

STREAM_PREFIX = "vpp:afrr:setpoints:"
LIMITS_STREAM = "vpp:dso:limits"
LEASE_PREFIX = "vpp:dispatch:lease:"
FENCE_PREFIX = "vpp:dispatch:fence:"
STREAM_MAXLEN = 1000


class BusReceiver(Protocol):
    """The dispatcher's side of the bus."""

    async def receive(self, pools: Sequence[str], timeout_s: float) -> list[ActivationEvent]:
        """Events for ``pools`` (and limit changes) within ``timeout_s``; empty on timeout."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


class InProcessActivationBus:
    """Embedded mode: a thread-safe queue from the API threads to the dispatcher's event loop."""

    def __init__(self, maxlen: int = 10_000) -> None:
        self._events: deque[ActivationEvent] = deque(maxlen=maxlen)
        self._lock = threading.Lock()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    def publish(self, event: ActivationEvent) -> None:
        """Queue ``event`` and wake the receiver."""
        with self._lock:
            self._events.append(event)
            waiters = list(self._waiters)
        for loop, ready in waiters:
            try:
                loop.call_soon_threadsafe(ready.set)
            except RuntimeError:  # the receiver's loop has closed
                with self._lock:
                    self._waiters = [w for w in self._waiters if w[0] is not loop]

    def _ready_event(self) -> asyncio.Event:
        loop = asyncio.get_running_loop()
        with self._lock:
            for waiter_loop, ready in self._waiters:
                if waiter_loop is loop:
                    return ready
            ready = asyncio.Event()
            self._waiters.append((loop, ready))
            return ready

    async def receive(self, pools: Sequence[str], timeout_s: float) -> list[ActivationEvent]:
        """Every queued event for ``pools`` or limit changes, waiting up to ``timeout_s`` for one."""
        ready = self._ready_event()
        with self._lock:
            empty = not self._events
        if empty:
            try:
                await asyncio.wait_for(ready.wait(), timeout=max(timeout_s, 0.0))
            except TimeoutError:
                return []
        ready.clear()
        with self._lock:
            drained = list(self._events)
            self._events.clear()
        wanted = set(pools)
        return [e for e in drained if e.pool is None or e.pool in wanted]

    async def close(self) -> None:
        """Nothing to release."""


class RedisActivationBus:
    """Production: one Redis stream per pool (capped), one for limit changes; XADD after commit, XREAD to wait."""

    def __init__(self, url: str, client: redis.Redis | None = None) -> None:
        self._url = url
        self._client = client
        self._async: aredis.Redis | None = None
        self._last_ids: dict[str, str] = {}

    def _sync(self) -> redis.Redis:
        if self._client is None:
            self._client = redis.Redis.from_url(self._url, socket_timeout=2, socket_connect_timeout=2)
        return self._client

    def publish(self, event: ActivationEvent) -> None:
        """Append ``event`` to its stream; a broken Redis is logged, not raised (the dispatcher polls too)."""
        key = LIMITS_STREAM if event.pool is None else STREAM_PREFIX + event.pool
        fields: dict[Any, Any] = {"kind": event.kind, "pool": event.pool or "", "seq": str(event.seq or "")}
        try:
            self._sync().xadd(key, fields, maxlen=STREAM_MAXLEN, approximate=True)
        except redis.RedisError:
            log.warning("activation bus publish failed", extra={"stream": key}, exc_info=True)

    async def receive(self, pools: Sequence[str], timeout_s: float) -> list[ActivationEvent]:
        """Block on the owned pools' streams and the limits stream; only entries newer than we have seen."""
        if self._async is None:
            self._async = aredis.Redis.from_url(self._url, socket_connect_timeout=2, socket_timeout=None)
        keys = [LIMITS_STREAM, *(STREAM_PREFIX + p for p in pools)]
        start = f"{int(time.time() * 1000)}-0"
        streams: dict[Any, Any] = {k: self._last_ids.setdefault(k, start) for k in keys}
        for stale in [k for k in self._last_ids if k not in streams]:
            del self._last_ids[stale]
        block_ms = max(int(timeout_s * 1000), 1)
        try:
            answer: Any = await self._async.xread(streams, block=block_ms, count=1000)
        except (redis.RedisError, OSError):
            log.warning("activation bus read failed", exc_info=True)
            await asyncio.sleep(min(timeout_s, 1.0))
            return []
        events: list[ActivationEvent] = []
        for raw_key, entries in answer or []:
            key = raw_key.decode() if isinstance(raw_key, bytes) else str(raw_key)
            for entry_id, fields in entries:
                self._last_ids[key] = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
                decoded = {k.decode(): v.decode() for k, v in fields.items()}
                events.append(ActivationEvent(kind=decoded.get("kind", ""), pool=decoded.get("pool") or None,
                                              seq=int(decoded["seq"]) if decoded.get("seq") else None))
        return events

    async def close(self) -> None:
        """Close the blocking connection."""
        if self._async is not None:
            await self._async.aclose()
            self._async = None


def build_activation_bus(redis_url: str | None, client: redis.Redis | None = None) -> ActivationBus:
    """Redis streams when Redis is configured, else the in-process queue."""
    return RedisActivationBus(redis_url, client) if redis_url else InProcessActivationBus()


class PoolLease(Protocol):
    """Exclusive ownership of a pool by one dispatcher, with a fencing token that grows on every takeover."""

    owner: str

    async def acquire(self, pool: str) -> int | None:
        """Take the pool if nobody holds it; the new fence, else None."""
        ...

    async def renew(self, pool: str) -> bool:
        """Extend our lease; False when it was lost."""
        ...

    async def release(self, pool: str) -> None:
        """Give the pool up (graceful shutdown)."""
        ...

    async def raise_fence(self, pool: str, above: int) -> int | None:
        """While we hold the pool: move its fence past ``above`` (the database's) and return it; None if not ours.

        Redis keeps nothing on disk here: after a restart its fence counter starts again at 1 while the database
        remembers the fence of the last writer, so a new owner raises the counter past it on takeover.
        """
        ...


@dataclass
class LeaseTable:
    """In-process lease storage, shareable by several dispatchers of one process (tests, embedded mode)."""

    holders: dict[str, tuple[str, float]] = field(default_factory=dict)
    fences: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


class InProcessLease:
    """Embedded mode: a lease in memory with the same expiry and fencing rules as the Redis one."""

    def __init__(self, ttl_s: float, table: LeaseTable | None = None, owner: str | None = None) -> None:
        self.owner = owner or uuid.uuid4().hex
        self._ttl = ttl_s
        self._table = table or LeaseTable()

    async def acquire(self, pool: str) -> int | None:
        """Take the pool when free or expired."""
        now = time.monotonic()
        with self._table.lock:
            holder = self._table.holders.get(pool)
            if holder is not None and holder[1] > now and holder[0] != self.owner:
                return None
            self._table.holders[pool] = (self.owner, now + self._ttl)
            self._table.fences[pool] = self._table.fences.get(pool, 0) + 1
            return self._table.fences[pool]

    async def renew(self, pool: str) -> bool:
        """Extend when still ours."""
        now = time.monotonic()
        with self._table.lock:
            holder = self._table.holders.get(pool)
            if holder is None or holder[0] != self.owner or holder[1] <= now:
                return False
            self._table.holders[pool] = (self.owner, now + self._ttl)
            return True

    async def release(self, pool: str) -> None:
        """Drop when ours."""
        with self._table.lock:
            holder = self._table.holders.get(pool)
            if holder is not None and holder[0] == self.owner:
                del self._table.holders[pool]

    async def raise_fence(self, pool: str, above: int) -> int | None:
        """Move the fence past ``above`` while ours."""
        with self._table.lock:
            holder = self._table.holders.get(pool)
            if holder is None or holder[0] != self.owner:
                return None
            self._table.fences[pool] = max(self._table.fences.get(pool, 0), above) + 1
            return self._table.fences[pool]


_ACQUIRE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return redis.call('INCR', KEYS[2])
end
return 0
"""
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RAISE_FENCE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  local fence = math.max(tonumber(redis.call('GET', KEYS[2]) or '0'), tonumber(ARGV[2])) + 1
  redis.call('SET', KEYS[2], fence)
  return fence
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class RedisPoolLease:
    """SET NX PX with a random token; the fence is a per-pool counter incremented atomically on acquisition."""

    def __init__(self, url: str, ttl_s: float, owner: str | None = None) -> None:
        self.owner = owner or uuid.uuid4().hex
        self._ttl_ms = int(ttl_s * 1000)
        self._client = aredis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)

    async def _eval(self, script: str, pool: str, *extra_keys: str, args: Sequence[Any] = ()) -> int:
        result: Any = await self._client.eval(
            script, 1 + len(extra_keys), LEASE_PREFIX + pool, *extra_keys, *args
        )
        return int(result or 0)

    async def acquire(self, pool: str) -> int | None:
        """Take the pool when no live lease exists; the new fence, else None."""
        fence = await self._eval(_ACQUIRE, pool, FENCE_PREFIX + pool, args=(self.owner, self._ttl_ms))
        return fence or None

    async def renew(self, pool: str) -> bool:
        """Extend our lease; False when it expired or another holds it."""
        return bool(await self._eval(_RENEW, pool, args=(self.owner, self._ttl_ms)))

    async def release(self, pool: str) -> None:
        """Delete our lease so a successor need not wait for expiry."""
        await self._eval(_RELEASE, pool, args=(self.owner,))

    async def raise_fence(self, pool: str, above: int) -> int | None:
        """Set the pool's fence counter past ``above`` while we hold the lease; the new fence, else None."""
        fence = await self._eval(_RAISE_FENCE, pool, FENCE_PREFIX + pool, args=(self.owner, above))
        return fence or None

    async def close(self) -> None:
        """Close the connection."""
        await self._client.aclose()
