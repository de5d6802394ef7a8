"""Periodic housekeeping: purge old job runs and long-revoked keys, keep the time partitions, record the runs;
redeliver the task outbox."""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task

from vpp.db import unit_of_work, utcnow
from vpp.jobs import outbox, partitions
from vpp.jobs import service as jobs
from vpp.observability import TASKS
from workers.runtime import enqueue_from_task, get_runtime

log = logging.getLogger(__name__)


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


@shared_task(name="jobs.redeliver_outbox")  # type: ignore[untyped-decorator]
def redeliver_outbox() -> dict[str, Any]:
    """Send again every outbox task not done in time (its queue died with Redis, or its worker with the task)."""
    runtime = get_runtime()
    now = utcnow()
    with unit_of_work(runtime.session_factory) as session:
        tasks = outbox.due(session, now=now)
        purged = outbox.purge(session, now=now)
    sent = 0
    for task_name, kwargs in tasks:
        try:
            enqueue_from_task(task_name, **kwargs)
            sent += 1
        except Exception:  # the broker is still down: the next run sends it again
            log.warning("outbox redelivery failed", extra={"task": task_name}, exc_info=True)
    TASKS.labels("jobs.redeliver_outbox", "ok" if sent == len(tasks) else "partial").inc()
    return {"redelivered": sent, "due": len(tasks), "purged": purged}


@shared_task(name="housekeeping.partitions")  # type: ignore[untyped-decorator]
def maintain_partitions() -> dict[str, Any]:
    """PostgreSQL: create the coming days' partitions, re-home stranded rows, drop settled days past retention."""
    runtime = get_runtime()
    settings = runtime.settings
    started = utcnow()
    policy = partitions.RetentionPolicy(retention_days=settings.partition_retention_days,
                                        ahead_days=settings.partition_ahead_days, time_zone=settings.market_timezone)
    detail = partitions.maintain(runtime.session_factory, policy, now=started)
    # "ok" on SQLite too (nothing to do is success): the job-freshness alert watches for the last "ok".
    status = "partial" if detail.get("failed") else "ok"
    with unit_of_work(runtime.session_factory) as session:
        run = jobs.record_run(session, "housekeeping.partitions", started_at=started, finished_at=utcnow(),
                              status=status, detail=detail)
        run_id = run.id
    TASKS.labels("housekeeping.partitions", status).inc()
    return {"run_id": run_id, "status": status, **detail}
