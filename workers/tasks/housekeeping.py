"""Periodic housekeeping: purge old job runs and long-revoked keys, and record the run."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from vpp.db import unit_of_work, utcnow
from vpp.jobs import service as jobs
from vpp.observability import TASKS
from workers.runtime import get_runtime


@shared_task(name="housekeeping.run")  # type: ignore[untyped-decorator]
def run_housekeeping() -> dict[str, Any]:
    """Purge what has expired; idempotent (a second run purges nothing more)."""
    runtime = get_runtime()
    started = utcnow()
    with unit_of_work(runtime.session_factory) as session:
        detail = jobs.housekeeping(session, now=started)
        run = jobs.record_run(
            session, "housekeeping.run", started_at=started, finished_at=utcnow(), status="ok", detail=detail
        )
        run_id = run.id
    TASKS.labels("housekeeping.run", "ok").inc()
    return {"run_id": run_id, **detail}
