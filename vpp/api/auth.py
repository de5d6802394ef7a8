"""API-key authentication with a short-lived verification cache, so hot intake paths stay off the database."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from sqlalchemy.orm import Session, sessionmaker

from vpp.apikeys import service as apikeys
from vpp.apikeys.service import Principal
from vpp.db import unit_of_work


@dataclass
class ApiKeyAuthenticator:
    """Verifies bearer keys; a verdict is cached for ``ttl_seconds`` (a revocation takes effect within it)."""

    session_factory: sessionmaker[Session]
    pepper: str
    ttl_seconds: float = 5.0
    touch_interval_seconds: float = 60.0
    _cache: dict[str, tuple[Principal | None, float]] = field(default_factory=dict)
    _touched: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def authenticate(self, key: str) -> Principal | None:
        """The principal behind ``key``, or None when it is unknown, malformed or revoked."""
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None and cached[1] > now:
            principal = cached[0]
        else:
            with unit_of_work(self.session_factory) as session:
                principal = apikeys.verify(session, key, pepper=self.pepper)
            with self._lock:
                if len(self._cache) > 10_000:
                    self._cache.clear()
                self._cache[key] = (principal, now + self.ttl_seconds)
        if principal is not None and now - self._touched.get(principal.key_id, -1e9) > self.touch_interval_seconds:
            self._touched[principal.key_id] = now
            with unit_of_work(self.session_factory) as session:
                apikeys.touch(session, principal.key_id)
        return principal

    def forget(self) -> None:
        """Drop every cached verdict (after a revocation in this process)."""
        with self._lock:
            self._cache.clear()
