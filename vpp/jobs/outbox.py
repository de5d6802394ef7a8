"""The task outbox: tasks that must not be lost with the broker's queues.

``add`` in the caller's transaction, then enqueue after the commit as before (the fast path); the task calls
``done`` when it has finished. ``due`` hands the periodic redelivery every task still not done after
``REDELIVER_AFTER`` (the broker lost it, or a worker died running it), with a growing pause between attempts.
Tasks sent this way run at least once, so they must be idempotent (a recompute replaces, never duplicates).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import CursorResult, delete, select, update
from sqlalchemy.orm import Session

from vpp.db import utcnow
from vpp.jobs.tables import TaskOutbox

OUTBOX_KWARG = "outbox_id"
REDELIVER_AFTER = timedelta(minutes=2)
MAX_PAUSE = timedelta(hours=1)
KEEP_DONE = timedelta(days=7)


def add(session: Session, task_name: str, *, now: datetime | None = None, **kwargs: Any) -> str:
    """Record that ``task_name(**kwargs)`` must run; its outbox id (pass it to the task as ``outbox_id``)."""
    row = TaskOutbox(task_name=task_name, kwargs=kwargs, next_attempt_at=(now or utcnow()) + REDELIVER_AFTER)
    session.add(row)
    session.flush()
    return row.id


def done(session: Session, outbox_id: str | None, *, now: datetime | None = None) -> None:
    """Mark the task done (a task run without an outbox id, or run twice, changes nothing)."""
    if outbox_id:
        session.execute(update(TaskOutbox).where(TaskOutbox.id == outbox_id, TaskOutbox.done_at.is_(None))
                        .values(done_at=now or utcnow()))


def due(session: Session, *, now: datetime, limit: int = 500) -> list[tuple[str, dict[str, Any]]]:
    """The tasks to send again, each with its kwargs and outbox id; their next attempt moves on (doubling)."""
    rows = session.scalars(
        select(TaskOutbox).where(TaskOutbox.done_at.is_(None), TaskOutbox.next_attempt_at <= now)
        .order_by(TaskOutbox.next_attempt_at).limit(limit).with_for_update(skip_locked=True)
    ).all()
    out = []
    for row in rows:
        row.attempts += 1
        row.next_attempt_at = now + min(REDELIVER_AFTER * 2 ** row.attempts, MAX_PAUSE)
        out.append((row.task_name, {**row.kwargs, OUTBOX_KWARG: row.id}))
    session.flush()
    return out


def purge(session: Session, *, now: datetime) -> int:
    """Delete the tasks done more than ``KEEP_DONE`` ago; how many."""
    result: CursorResult[Any] = session.execute(  # type: ignore[assignment]
        delete(TaskOutbox).where(TaskOutbox.done_at.is_not(None), TaskOutbox.done_at < now - KEEP_DONE))
    return int(result.rowcount or 0)


def pending(session: Session) -> int:
    """Tasks not done yet."""
    return len(session.scalars(select(TaskOutbox.id).where(TaskOutbox.done_at.is_(None))).all())
