"""A Prometheus collector of active sessions per CPO, read from the database at scrape time (cached briefly)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.orm import Session, sessionmaker

from vpp.db import unit_of_work
from vpp.sessions import service

log = logging.getLogger(__name__)


class ActiveSessionsCollector(Collector):
    """``vpp_ocpi_sessions_active{cpo}``: counted in the database, so every API replica reports the same."""

    def __init__(self, cache_seconds: float = 10.0) -> None:
        self._factory: sessionmaker[Session] | None = None
        self._cache_seconds = cache_seconds
        self._cached: tuple[float, list[tuple[str, int]]] = (0.0, [])
        self._lock = threading.Lock()

    def bind(self, factory: sessionmaker[Session]) -> None:
        """Count in this database from now on."""
        with self._lock:
            self._factory = factory
            self._cached = (0.0, [])

    def _counts(self) -> list[tuple[str, int]]:
        with self._lock:
            factory, (at, counts) = self._factory, self._cached
        if factory is None or time.monotonic() - at < self._cache_seconds:
            return counts
        try:
            with unit_of_work(factory) as session:
                counts = service.active_counts(session)
        except Exception:
            log.warning("active sessions not counted", exc_info=True)
            return counts
        with self._lock:
            self._cached = (time.monotonic(), counts)
        return counts

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """The gauge family, one sample per CPO connection."""
        family = GaugeMetricFamily("vpp_ocpi_sessions_active", "Active charging sessions per CPO", labels=["cpo"])
        for name, count in self._counts():
            family.add_metric([name], count)
        yield family


_collector: ActiveSessionsCollector | None = None
_registration = threading.Lock()


def active_sessions_collector() -> ActiveSessionsCollector:
    """The process's collector, registered with the default registry on first use."""
    global _collector
    with _registration:
        if _collector is None:
            _collector = ActiveSessionsCollector()
            REGISTRY.register(_collector)
        return _collector
