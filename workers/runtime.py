"""What a task needs at run time (settings, a session factory), and how tasks run when embedded.

Each process sets its runtime once in its composition root: the API in ``create_app``, a Celery worker in
``vpp worker``. In embedded mode tasks run on a small thread pool inside the API process and periodic jobs
on a scheduler thread, so nothing beside the package is needed.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from vpp.config import Settings
from vpp.db import create_db_engine, create_session_factory
from vpp.ports import TaskQueue

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Runtime:
    """Process-wide dependencies of background work."""

    settings: Settings
    session_factory: sessionmaker[Session]
    # Tasks of this process run here even with a broker configured (a simulation carrying the whole service in
    # one process on a simulated clock): tasks they start run here too, not on workers that may not exist.
    tasks_in_process: bool = False


_runtime: Runtime | None = None
_lock = threading.Lock()


def set_runtime(runtime: Runtime) -> None:
    """Install the runtime of this process (its composition root calls this)."""
    global _runtime
    _runtime = runtime


def get_runtime() -> Runtime:
    """The runtime of this process, built from the environment on first use in a worker."""
    global _runtime
    with _lock:
        if _runtime is None:
            settings = Settings()
            engine = create_db_engine(settings.resolved_database_url, pool_size=settings.db_pool_size)
            _runtime = Runtime(settings=settings, session_factory=create_session_factory(engine))
        return _runtime


def enqueue_from_task(task_name: str, **kwargs: Any) -> None:
    """Start another task from inside a task, on this process's broker.

    Production sends it to Redis; embedded mode runs it right here (we are already on a background thread), so
    a fan-out finishes with its parent. ``.delay()`` would use whichever Celery app was made default last.
    """
    from workers.celery_app import get_celery_app

    runtime = get_runtime()
    settings = runtime.settings
    app = get_celery_app(settings)
    if settings.redis_url and not runtime.tasks_in_process:
        app.send_task(task_name, kwargs=kwargs)
    else:
        app.tasks[task_name].apply(kwargs=kwargs).get(propagate=True)


class CeleryTaskQueue:
    """Sends tasks by name to the Redis broker."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def enqueue(self, task_name: str, **kwargs: Any) -> None:
        """Send ``task_name`` to the broker."""
        from workers.celery_app import get_celery_app

        get_celery_app(self._settings).send_task(task_name, kwargs=kwargs)


class InProcessTaskQueue:
    """Runs tasks on a small thread pool in this process (embedded mode)."""

    def __init__(self, runtime: Runtime, max_workers: int = 2) -> None:
        self._runtime = runtime
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="vpp-task")
        self._connection_locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def _lock_for(self, kwargs: dict[str, Any]) -> threading.Lock | None:
        # Tasks about one OCPI connection (pulls after registration, periodic resyncs) run one at a time:
        # two concurrent pulls of the same CPO would insert the same new locations twice.
        key = kwargs.get("connection_id")
        if not isinstance(key, str):
            return None
        with self._locks_guard:
            return self._connection_locks.setdefault(key, threading.Lock())

    def enqueue(self, task_name: str, **kwargs: Any) -> None:
        """Run ``task_name`` soon on the pool."""
        self._pool.submit(self._run, task_name, kwargs)

    def _run(self, task_name: str, kwargs: dict[str, Any]) -> None:
        from workers.celery_app import get_celery_app

        set_runtime(self._runtime)
        lock = self._lock_for(kwargs)
        try:
            if lock is not None:
                lock.acquire()
            get_celery_app(self._runtime.settings).tasks[task_name].apply(kwargs=kwargs).get(propagate=True)
        except Exception:
            log.exception("in-process task %s failed", task_name)
        finally:
            if lock is not None:
                lock.release()

    def shutdown(self) -> None:
        """Finish running tasks and stop."""
        self._pool.shutdown(wait=True)


def build_task_queue(runtime: Runtime) -> TaskQueue:
    """The task queue for the runtime's mode."""
    if runtime.settings.redis_url:
        return CeleryTaskQueue(runtime.settings)
    set_runtime(runtime)
    return InProcessTaskQueue(runtime)


class EmbeddedScheduler:
    """Runs the periodic jobs on a thread, as Celery beat does in production."""

    def __init__(self, runtime: Runtime, queue: TaskQueue) -> None:
        from workers.schedule import periodic_jobs

        self._jobs = periodic_jobs(runtime.settings)
        self._queue = queue
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="vpp-scheduler", daemon=True)

    def start(self) -> EmbeddedScheduler:
        """Start the thread."""
        self._thread.start()
        return self

    def _loop(self) -> None:
        import time

        next_due = {job.task_name: time.monotonic() + min(job.every_seconds, 5.0) for job in self._jobs}
        while not self._stop.is_set():
            now = time.monotonic()
            for job in self._jobs:
                if now >= next_due[job.task_name]:
                    next_due[job.task_name] = now + job.every_seconds
                    self._queue.enqueue(job.task_name, **job.kwargs)
            self._stop.wait(0.5)

    def stop(self) -> None:
        """Stop the thread and wait for it."""
        self._stop.set()
        self._thread.join(timeout=5)
        if isinstance(self._queue, InProcessTaskQueue):
            self._queue.shutdown()


def start_embedded_scheduler(runtime: Runtime) -> EmbeddedScheduler:
    """Start the periodic jobs in this process (embedded mode)."""
    return EmbeddedScheduler(runtime, InProcessTaskQueue(runtime)).start()
