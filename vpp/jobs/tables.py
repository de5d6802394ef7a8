"""Tables of the jobs feature."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from vpp.db import ID, Base, new_id, utcnow


class JobRun(Base):
    """One run of a background job (Celery task or in-process periodic job)."""

    __tablename__ = "job_runs"
    __table_args__ = (Index("ix_job_runs_name_started_at", "name", "started_at"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(100))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    status: Mapped[str] = mapped_column(String(16), default="running")
    detail: Mapped[dict[str, object]] = mapped_column(JSON, default=dict)


class TaskOutbox(Base):
    """A background task that must run at least once whatever happens to the broker (Redis here keeps nothing on
    disk: a restart drops its queues). Written in the transaction of what asks for the task, marked done by the
    task itself, sent again by ``jobs.redeliver_outbox`` while it is not done."""

    __tablename__ = "task_outbox"
    __table_args__ = (Index("ix_task_outbox_done_next", "done_at", "next_attempt_at"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    task_name: Mapped[str] = mapped_column(String(100))
    kwargs: Mapped[dict[str, object]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    next_attempt_at: Mapped[datetime]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    done_at: Mapped[datetime | None] = mapped_column(default=None)
