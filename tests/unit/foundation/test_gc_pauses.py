"""The API process logs its long garbage-collector pauses (a full collection stalls every request in flight)."""

import gc
import logging
from collections.abc import Iterator

import pytest

from vpp.observability import watch_gc_pauses


@pytest.fixture
def no_watcher() -> Iterator[None]:
    before = list(gc.callbacks)
    gc.callbacks[:] = [cb for cb in before if getattr(cb, "__name__", "") != "_gc_pause"]
    yield
    gc.callbacks[:] = before


def test_a_collection_over_the_threshold_is_logged_once_per_process(
    no_watcher: None, caplog: pytest.LogCaptureFixture
) -> None:
    watch_gc_pauses(threshold_ms=0.0)
    watch_gc_pauses(threshold_ms=0.0)
    assert sum(1 for cb in gc.callbacks if getattr(cb, "__name__", "") == "_gc_pause") == 1
    with caplog.at_level(logging.INFO, logger="vpp.gc"):
        gc.collect()
    pauses = [r for r in caplog.records if r.name == "vpp.gc"]
    assert len(pauses) == 1
    assert pauses[0].generation == 2 and pauses[0].pause_ms >= 0  # type: ignore[attr-defined]


def test_a_short_collection_is_not_logged(no_watcher: None, caplog: pytest.LogCaptureFixture) -> None:
    watch_gc_pauses(threshold_ms=60_000.0)
    with caplog.at_level(logging.INFO, logger="vpp.gc"):
        gc.collect()
    assert [r for r in caplog.records if r.name == "vpp.gc"] == []


def test_the_api_process_freezes_its_start_up_heap_after_collecting_its_garbage() -> None:
    import weakref

    from vpp.observability import freeze_startup_heap

    class Node:
        pass

    cycle = Node()
    cycle.self = cycle  # type: ignore[attr-defined]
    dead = weakref.ref(cycle)
    del cycle
    gc.disable()
    try:
        freeze_startup_heap()
        assert dead() is None, "start-up garbage is collected, not frozen"
        assert gc.get_freeze_count() > 10_000  # the test process's modules, as the API's would be
    finally:
        gc.unfreeze()
        gc.enable()


def test_a_worker_warms_its_database_and_redis_connections_and_shrugs_off_a_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from types import SimpleNamespace
    from typing import Any, cast

    from sqlalchemy import create_engine
    from sqlalchemy.pool import QueuePool

    from vpp.api.main import warm_up

    pings: list[str] = []
    engine = create_engine("sqlite://", poolclass=QueuePool)
    redis_client = SimpleNamespace(ping=lambda: pings.append("ping"))
    app = SimpleNamespace(state=SimpleNamespace(engine=engine, redis=redis_client))
    warm_up(cast(Any, app))
    assert engine.pool.checkedin() == 1, "a connection waits in the pool"
    assert pings == ["ping"]

    def down() -> None:
        raise ConnectionError("redis is restarting")

    app.state.redis = SimpleNamespace(ping=down)
    with caplog.at_level(logging.INFO, logger="vpp.api"):
        warm_up(cast(Any, app))
    assert "warm-up" in caplog.text
