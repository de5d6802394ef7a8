"""OCPI background work: resync a connection by pull, resync all periodically, expire lost limit requests."""

from __future__ import annotations

import asyncio
from typing import Any

from celery import shared_task

from adapters.ocpi.v2_2_1 import sync
from adapters.ocpi.v2_2_1.context import OcpiContext
from vpp.db import unit_of_work, utcnow
from vpp.jobs import service as jobs
from vpp.observability import TASKS
from vpp.ocpi import service as connections
from vpp.ocpi.settings import OcpiSettings
from vpp.sessions import limits
from workers.runtime import enqueue_from_task, get_runtime


def _context() -> OcpiContext:
    runtime = get_runtime()
    return OcpiContext(
        session_factory=runtime.session_factory, public_url=runtime.settings.public_url,
        pepper=runtime.settings.secret, settings=OcpiSettings(),
        keyring=runtime.settings.token_keyring,
    )


def _record(name: str, started: Any, detail: dict[str, Any], status: str = "ok") -> None:
    with unit_of_work(get_runtime().session_factory) as session:
        jobs.record_run(session, name, started_at=started, finished_at=utcnow(), status=status, detail=detail)
    TASKS.labels(name, status).inc()


@shared_task(name="ocpi.pull_sessions")  # type: ignore[untyped-decorator]
def pull_sessions(connection_id: str) -> dict[str, Any]:
    """Resync one connection's sessions (and its locations on the first run); safe to run twice."""
    context = _context()
    started = utcnow()

    with unit_of_work(context.session_factory) as session:
        first = connections.peer_access(session, connection_id, context.token_keyring).locations_pulled_at is None

    async def run() -> dict[str, Any]:
        detail: dict[str, Any] = {"connection_id": connection_id}
        if first:
            detail["locations"] = await sync.pull_locations(context, connection_id)
        detail["sessions"] = await sync.pull_sessions(context, connection_id)
        return detail

    try:
        detail = asyncio.run(run())
    except Exception as exc:
        _record("ocpi.pull_sessions", started, {"connection_id": connection_id, "error": repr(exc)[:500]}, "error")
        raise
    _record("ocpi.pull_sessions", started, detail)
    return detail


@shared_task(name="ocpi.pull_reference_data")  # type: ignore[untyped-decorator]
def pull_reference_data(connection_id: str) -> dict[str, Any]:
    """Resync one connection's locations and CDRs; safe to run twice (CDRs are stored once)."""
    context = _context()
    started = utcnow()

    async def run() -> dict[str, Any]:
        return {
            "connection_id": connection_id,
            "locations": await sync.pull_locations(context, connection_id),
            "cdrs": await sync.pull_cdrs(context, connection_id),
        }

    try:
        detail = asyncio.run(run())
    except Exception as exc:
        _record("ocpi.pull_reference_data", started, {"connection_id": connection_id, "error": repr(exc)[:500]},
                "error")
        raise
    _record("ocpi.pull_reference_data", started, detail)
    return detail


@shared_task(name="ocpi.pull_all")  # type: ignore[untyped-decorator]
def pull_all() -> dict[str, Any]:
    """Fan out one resync per connected CPO, so a slow CPO holds up only its own task."""
    with unit_of_work(get_runtime().session_factory) as session:
        ids = [row.id for row in connections.list_connections(session, status="connected")]
    for connection_id in ids:
        enqueue_from_task("ocpi.pull_reference_data", connection_id=connection_id)
        enqueue_from_task("ocpi.pull_sessions", connection_id=connection_id)
    TASKS.labels("ocpi.pull_all", "ok").inc()
    return {"connections": ids}


@shared_task(name="ocpi.expire_limit_requests")  # type: ignore[untyped-decorator]
def expire_limit_requests() -> dict[str, Any]:
    """Accepted limit requests past their deadline without a result count as lost."""
    with unit_of_work(get_runtime().session_factory) as session:
        lost = limits.expire_lost(session, now=utcnow())
    TASKS.labels("ocpi.expire_limit_requests", "ok").inc()
    return {"lost": lost}
