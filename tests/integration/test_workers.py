import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from tests.conftest import TEST_SECRET
from vpp.config import Settings
from vpp.db import unit_of_work, utcnow
from vpp.jobs import service as jobs
from vpp.jobs.tables import JobRun
from workers.runtime import InProcessTaskQueue, Runtime


def _wait_for_run(factory: sessionmaker[Session], timeout_s: float) -> list[JobRun]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with factory() as session:
            runs = jobs.last_runs(session, "housekeeping.run")
        if runs:
            return runs
        time.sleep(0.1)
    return []


def test_housekeeping_purges_old_runs_once_and_keeps_recent_ones(session_factory: sessionmaker[Session]) -> None:
    from datetime import timedelta

    now = utcnow()
    with unit_of_work(session_factory) as session:
        jobs.record_run(session, "x", started_at=now - timedelta(days=40), finished_at=now, status="ok", detail={})
        jobs.record_run(session, "x", started_at=now - timedelta(days=1), finished_at=now, status="ok", detail={})
    with unit_of_work(session_factory) as session:
        assert jobs.housekeeping(session, now=now)["purged_job_runs"] == 1
    with unit_of_work(session_factory) as session:
        assert jobs.housekeeping(session, now=now)["purged_job_runs"] == 0
        assert len(list(session.scalars(select(JobRun)))) == 1


def test_embedded_task_queue_runs_the_task_in_process(settings: Settings,
                                                      session_factory: sessionmaker[Session]) -> None:
    queue = InProcessTaskQueue(Runtime(settings=settings, session_factory=session_factory))
    queue.enqueue("housekeeping.run")
    queue.shutdown()
    runs = _wait_for_run(session_factory, 5)
    assert runs and runs[0].status == "ok"


@pytest.mark.redis
def test_a_real_worker_runs_the_task_from_the_redis_broker(
    redis_url: str, database_url: str, engine: Engine, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "VPP_DATABASE_URL": database_url,
        "VPP_REDIS_URL": redis_url,
        "VPP_SECRET_KEY": TEST_SECRET,
        "VPP_DATA_DIR": str(tmp_path),
        "VPP_LOG_FORMAT": "text",
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "vpp.cli", "worker", "--concurrency", "1"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        from workers.celery_app import get_celery_app

        settings = Settings(data_dir=tmp_path, database_url=database_url, redis_url=redis_url,
                            secret_key=TEST_SECRET)  # type: ignore[arg-type]
        result = get_celery_app(settings).send_task("housekeeping.run")
        outcome = result.get(timeout=60)
        assert "run_id" in outcome
        runs = _wait_for_run(session_factory, 5)
        assert [r.id for r in runs] == [outcome["run_id"]]
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()


def test_embedded_tasks_about_one_connection_run_one_at_a_time(settings: Settings,
                                                               session_factory: sessionmaker[Session]) -> None:
    import threading
    import uuid

    from celery import shared_task

    running: dict[str, int] = {}
    overlaps: list[str] = []
    guard = threading.Lock()

    task_name = f"tests.record_overlap.{uuid.uuid4().hex}"

    @shared_task(name=task_name)  # type: ignore[untyped-decorator]
    def record_overlap(connection_id: str) -> None:
        with guard:
            running[connection_id] = running.get(connection_id, 0) + 1
            if running[connection_id] > 1:
                overlaps.append(connection_id)
        time.sleep(0.2)
        with guard:
            running[connection_id] -= 1

    queue = InProcessTaskQueue(Runtime(settings=settings, session_factory=session_factory), max_workers=4)
    for connection_id in ("a", "a", "b", "a"):
        queue.enqueue(task_name, connection_id=connection_id)
    queue.shutdown()
    assert overlaps == []
    assert running == {"a": 0, "b": 0}
