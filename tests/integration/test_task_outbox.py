"""The task outbox: a settlement recompute asked for by a new CDR survives a broker that loses its queue (Redis
keeps nothing on disk here; `vpp soak` restarts it) and runs once it is sent again."""

from datetime import timedelta
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import update

from tests.conftest import TEST_SECRET
from tests.integration.test_ocpi_cdrs_locations import _cdr
from tests.integration.test_ocpi_support import connect
from vpp.db import unit_of_work, utcnow
from vpp.jobs import outbox
from vpp.jobs.tables import TaskOutbox
from workers.runtime import Runtime, set_runtime
from workers.schedule import periodic_jobs

TASK = "settlement.recompute_for_cdr"


class LostQueue:
    """A broker that accepts tasks and then loses them (Redis restarted before a worker took them)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def enqueue(self, task_name: str, **kwargs: Any) -> None:
        self.sent.append((task_name, kwargs))


def _post_cdr_into_a_lost_queue(app: FastAPI, client: TestClient) -> str:
    app.state.ocpi_app.state.ocpi.task_queue = LostQueue()
    peer = connect(app.state.session_factory, TEST_SECRET)
    posted = client.post("/ocpi/2.2.1/cdrs", json=_cdr(), headers=peer.headers)
    assert posted.status_code == 201
    return str(posted.headers["location"].rsplit("/", 1)[-1])


def test_a_recompute_lost_with_the_queue_is_due_again_with_its_outbox_id_until_done(
    app: FastAPI, client: TestClient
) -> None:
    factory = app.state.session_factory
    cdr_id = _post_cdr_into_a_lost_queue(app, client)
    with unit_of_work(factory) as db:
        assert outbox.pending(db) == 1
        assert outbox.due(db, now=utcnow()) == [], "the first send gets its chance first"
    later = utcnow() + outbox.REDELIVER_AFTER + timedelta(seconds=1)
    with unit_of_work(factory) as db:
        due = outbox.due(db, now=later)
    assert [(name, kwargs["cdr_id"]) for name, kwargs in due] == [(TASK, cdr_id)]
    with unit_of_work(factory) as db:
        assert outbox.due(db, now=later + timedelta(seconds=1)) == [], "the next attempt waits longer"

    from workers.tasks.settlement import recompute_for_cdr

    set_runtime(Runtime(settings=app.state.settings, session_factory=factory))
    assert recompute_for_cdr(**due[0][1])["status"] == "ok"
    with unit_of_work(factory) as db:
        assert outbox.pending(db) == 0
        assert outbox.due(db, now=later + timedelta(days=1)) == []
        assert outbox.purge(db, now=later + outbox.KEEP_DONE + timedelta(days=1)) == 1


def test_the_periodic_redelivery_runs_the_lost_task_and_is_scheduled(app: FastAPI, client: TestClient) -> None:
    factory = app.state.session_factory
    _post_cdr_into_a_lost_queue(app, client)
    with unit_of_work(factory) as db:
        db.execute(update(TaskOutbox).values(next_attempt_at=utcnow() - timedelta(seconds=1)))

    from workers.tasks.housekeeping import redeliver_outbox

    # Embedded runtime: enqueue_from_task runs the task right here, as a worker would take it from Redis.
    set_runtime(Runtime(settings=app.state.settings, session_factory=factory, tasks_in_process=True))
    assert redeliver_outbox() == {"redelivered": 1, "due": 1, "purged": 0}
    with unit_of_work(factory) as db:
        assert outbox.pending(db) == 0
    assert redeliver_outbox()["due"] == 0
    assert {job.task_name: job.every_seconds for job in periodic_jobs(app.state.settings)}[
        "jobs.redeliver_outbox"] == 60.0
