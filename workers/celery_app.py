"""The Celery composition root: broker from settings, the beat schedule, the task modules."""

from __future__ import annotations

from celery import Celery

from vpp.config import Settings
from workers.schedule import periodic_jobs

TASK_MODULES = ["workers.tasks.housekeeping", "workers.tasks.bids", "workers.tasks.ocpi", "workers.tasks.uftp",
                "workers.tasks.settlement", "workers.tasks.planning"]

_apps: dict[str, Celery] = {}


def create_celery_app(settings: Settings) -> Celery:
    """A Celery app on Redis (production) or in memory with eager execution (embedded)."""
    app = Celery("vpp", include=TASK_MODULES)
    if settings.redis_url:
        app.conf.broker_url = settings.redis_url
        app.conf.result_backend = settings.redis_url
    else:
        app.conf.broker_url = "memory://"
        app.conf.result_backend = "cache+memory://"
        app.conf.task_always_eager = True
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_expires=3600,
        timezone="UTC",
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        beat_schedule={
            job.task_name: {"task": job.task_name, "schedule": job.every_seconds, "kwargs": job.kwargs}
            for job in periodic_jobs(settings)
        },
    )
    app.set_default()
    app.loader.import_default_modules()
    for module in TASK_MODULES:
        __import__(module)
    return app


def get_celery_app(settings: Settings) -> Celery:
    """The Celery app for these settings' broker, created on first use."""
    key = settings.redis_url or "memory://"
    if key not in _apps:
        _apps[key] = create_celery_app(settings)
    return _apps[key]
