"""Tables of the jobs feature."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Index, String
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
