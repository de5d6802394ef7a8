"""Use cases of background jobs: record runs, and the periodic housekeeping."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import CursorResult, delete, select
from sqlalchemy.orm import Session

from vpp.apikeys.tables import ApiKey
from vpp.jobs.tables import JobRun


def record_run(session: Session, name: str, *, started_at: datetime, finished_at: datetime,
               status: str, detail: dict[str, object]) -> JobRun:
    """Record a finished job run."""
    run = JobRun(name=name, started_at=started_at, finished_at=finished_at, status=status, detail=detail)
    session.add(run)
    session.flush()
    return run


def housekeeping(session: Session, *, now: datetime, job_retention: timedelta = timedelta(days=30),
                 revoked_key_retention: timedelta = timedelta(days=90)) -> dict[str, object]:
    """Purge old job runs and long-revoked API keys; running it twice in a row purges nothing more."""
    purged_runs: CursorResult[Any] = session.execute(  # type: ignore[assignment]
        delete(JobRun).where(JobRun.started_at < now - job_retention)
    )
    purged_keys: CursorResult[Any] = session.execute(  # type: ignore[assignment]
        delete(ApiKey).where(ApiKey.revoked_at.is_not(None), ApiKey.revoked_at < now - revoked_key_retention)
    )
    session.flush()
    return {"purged_job_runs": int(purged_runs.rowcount or 0), "purged_api_keys": int(purged_keys.rowcount or 0)}


def last_runs(session: Session, name: str, limit: int = 10) -> list[JobRun]:
    """The latest runs of a job, newest first."""
    stmt = select(JobRun).where(JobRun.name == name).order_by(JobRun.started_at.desc()).limit(limit)
    return list(session.scalars(stmt))
