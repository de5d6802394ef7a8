"""API-key authentication with a short-lived verification cache, so hot intake paths stay off the database, and
per-key rate limiting."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from sqlalchemy.orm import Session, sessionmaker

from vpp.apikeys import service as apikeys
from vpp.apikeys.service import Principal, Rejected
from vpp.db import unit_of_work, utcnow


@dataclass
class ApiKeyAuthenticator:
    """Verifies bearer keys; a verdict is cached for ``ttl_seconds`` (a revocation takes effect within it, an
    expiry at once: it is checked on every request)."""

    session_factory: sessionmaker[Session]
    pepper: str
    ttl_seconds: float = 5.0
    touch_interval_seconds: float = 60.0
    _cache: dict[str, tuple[Principal | Rejected, float]] = field(default_factory=dict)
    _touched: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def authenticate(self, key: str) -> Principal | None:
        """The principal behind ``key``, or None when it is unknown, malformed, revoked or expired."""
        verdict = self.check(key)
        return verdict if isinstance(verdict, Principal) else None

    def check(self, key: str) -> Principal | Rejected:
        """The principal behind ``key``, or why it is refused."""
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None and cached[1] > now:
            verdict = cached[0]
        else:
            with unit_of_work(self.session_factory) as session:
                verdict = apikeys.check(session, key, pepper=self.pepper)
            with self._lock:
                if len(self._cache) > 10_000:
                    self._cache.clear()
                self._cache[key] = (verdict, now + self.ttl_seconds)
        if isinstance(verdict, Rejected):
            return verdict
        if verdict.expires_at is not None:
            moment = utcnow()
            if verdict.expired(moment):
                return Rejected(f"API key expired at {verdict.expires_at.isoformat()}")
        if now - self._touched.get(verdict.key_id, -1e9) > self.touch_interval_seconds:
            self._touched[verdict.key_id] = now
            with unit_of_work(self.session_factory) as session:
                apikeys.touch(session, verdict.key_id)
        return verdict

    def forget(self) -> None:
        """Drop every cached verdict (after a revocation in this process)."""
        with self._lock:
            self._cache.clear()


class KeyRateLimiter:
    """A token bucket per API key, in this process: a minute's allowance, refilled continuously.

    With N API worker processes a key may make up to N times its limit; set the limits per process accordingly.
    """

    def __init__(self) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def acquire(self, key_id: str, per_minute: int) -> float | None:
        """Take one request; None if allowed, else the seconds until the next one is."""
        now = time.monotonic()
        rate_per_s = per_minute / 60.0
        capacity = float(per_minute)
        with self._lock:
            tokens, last = self._buckets.get(key_id, (capacity, now))
            tokens = min(capacity, tokens + (now - last) * rate_per_s)
            if tokens >= 1.0:
                self._buckets[key_id] = (tokens - 1.0, now)
                return None
            self._buckets[key_id] = (tokens, now)
            return (1.0 - tokens) / rate_per_s
