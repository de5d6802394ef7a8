"""The periodic jobs: one list, read by Celery beat in production and by the in-process scheduler when embedded."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vpp.config import Settings
from vpp.ocpi.settings import OcpiSettings


@dataclass(frozen=True, slots=True)
class PeriodicJob:
    """A task run every ``every_seconds``."""

    task_name: str
    every_seconds: float
    kwargs: dict[str, Any] = field(default_factory=dict)


def periodic_jobs(settings: Settings) -> list[PeriodicJob]:
    """Every periodic job of the service, with intervals from the settings."""
    ocpi = OcpiSettings()
    return [
        PeriodicJob("housekeeping.run", settings.housekeeping_interval_seconds),
        # Tasks of the outbox that are not done after two minutes: Redis lost them (a restart keeps nothing).
        PeriodicJob("jobs.redeliver_outbox", 60.0),
        # PostgreSQL: daily partitions ahead, retention (a no-op on SQLite).
        PeriodicJob("housekeeping.partitions", settings.partition_interval_seconds),
        PeriodicJob("ocpi.pull_all", ocpi.pull_interval_seconds),
        PeriodicJob("ocpi.expire_limit_requests", 60.0),
        PeriodicJob("uftp.deliver_outbox", settings.uftp_outbox_interval_seconds),
        PeriodicJob("uftp.send_d_prognoses", settings.uftp_d_prognosis_interval_seconds),
        PeriodicJob("bids.build_day_ahead", settings.bids_build_interval_seconds),
        PeriodicJob("bids.build_afrr_energy", settings.bids_build_interval_seconds),
        # Every ISP: each pool's per-car plan (the dispatcher also re-plans a pool on events).
        PeriodicJob("plan.replan_pools", 900.0),
        # Hourly, guarded on stored runs: the previous local day is settled once, after 02:00 local.
        PeriodicJob("settlement.settle_day", 3600.0),
    ]
