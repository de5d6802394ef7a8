"""The periodic jobs: one list, read by Celery beat in production and by the in-process scheduler when embedded."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vpp.config import Settings


@dataclass(frozen=True, slots=True)
class PeriodicJob:
    """A task run every ``every_seconds``."""

    task_name: str
    every_seconds: float
    kwargs: dict[str, Any] = field(default_factory=dict)


def periodic_jobs(settings: Settings) -> list[PeriodicJob]:
    """Every periodic job of the service, with intervals from the settings."""
    return [PeriodicJob("housekeeping.run", settings.housekeeping_interval_seconds)]
