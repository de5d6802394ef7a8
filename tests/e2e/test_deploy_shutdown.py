"""Graceful shutdown of the production processes on SIGTERM: a dispatcher hands its leases back, a Celery worker
finishes the task it is running and leaves the ones it had not started in the queue."""

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import redis
from celery import Celery

from workers.bus import LEASE_PREFIX

pytestmark = [pytest.mark.redis]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(tmp_path: Path, redis_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VPP_", "PROMETHEUS_"))}
    env.update({
        "VPP_DATA_DIR": str(tmp_path), "VPP_REDIS_URL": redis_url, "VPP_SECRET_KEY": "shutdown-test-only",
        "VPP_DATABASE_URL": f"sqlite:///{tmp_path / 'vpp.sqlite3'}", "VPP_LOG_LEVEL": "INFO",
    })
    return env


def _wait_for(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _start(script: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)], env=env, stdout=out,
                                stderr=subprocess.STDOUT)


def _stop(process: subprocess.Popen[bytes], log: Path, timeout_s: float = 30) -> int:
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        pytest.fail(f"the process ignored SIGTERM for {timeout_s} s; log:\n{log.read_text()[-3000:]}")


DISPATCHER = """
    import sys
    import workers.dispatcher as dispatcher

    class Pools:  # one pool with nothing to dispatch: the test is about the lease
        def pools(self): return [{pool!r}]
        def snapshot(self, pool, at): return None

    class Network:
        async def set_limits(self, limits): return []

    dispatcher.default_components = lambda *args, **kwargs: (Pools(), Network())
    from vpp.cli import main
    sys.exit(main(["dispatcher", "--metrics-port", "{port}"]))
"""


def test_a_dispatcher_releases_its_lease_and_exits_0_on_sigterm(tmp_path: Path, redis_url: str) -> None:
    env = _env(tmp_path, redis_url)
    migrated = subprocess.run([sys.executable, "-m", "vpp.cli", "migrate"], env=env, capture_output=True, timeout=120,
                              check=False)
    assert migrated.returncode == 0, migrated.stderr
    pool, port = f"zone:SHUTDOWN{uuid.uuid4().hex[:8]}", _free_port()
    client = redis.Redis.from_url(redis_url)
    log = tmp_path / "dispatcher.log"
    process = _start(DISPATCHER.format(pool=pool, port=port), env, log)
    try:
        _wait_for(lambda: client.exists(LEASE_PREFIX + pool) == 1 or process.poll() is not None, 30, "the lease")
        assert process.poll() is None, log.read_text()
        scraped = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        assert "vpp_dispatch_pools_owned 1.0" in scraped and "vpp_dispatch_pools_known 1.0" in scraped
        assert _stop(process, log) == 0, log.read_text()[-3000:]
        assert client.exists(LEASE_PREFIX + pool) == 0
        lines = [line for line in log.read_text().splitlines() if line.startswith("{")]
        assert any('"took over a pool"' in line for line in lines), "the dispatcher logs JSON lines"
    finally:
        if process.poll() is None:
            process.kill()
        client.delete(LEASE_PREFIX + pool)
        client.close()


WORKER = """
    import sys, time
    import redis
    from vpp.config import Settings
    from workers.celery_app import get_celery_app

    app = get_celery_app(Settings())

    @app.task(name="deploy_test.sleep")
    def sleep(marker, seconds):
        redis.Redis.from_url(Settings().redis_url).rpush(marker + ":started", 1)
        time.sleep(seconds)
        return marker

    from vpp.cli import main
    sys.exit(main(["worker", "--concurrency", "1", "--queues", {queue!r}, "--metrics-port", "{port}"]))
"""


def test_a_worker_finishes_its_running_task_on_sigterm_and_loses_none_of_the_queued_ones(
    tmp_path: Path, redis_url: str,
) -> None:
    env = _env(tmp_path, redis_url)
    queue = f"deploy-test-{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(redis_url)
    sender = Celery("deploy-test", broker=redis_url, backend=redis_url)
    markers = [f"{queue}:task{i}" for i in range(3)]
    results = [sender.send_task("deploy_test.sleep", args=[m, 1.5], queue=queue) for m in markers]
    first_log, second_log = tmp_path / "worker1.log", tmp_path / "worker2.log"
    first = _start(WORKER.format(queue=queue, port=_free_port()), env, first_log)
    second: subprocess.Popen[bytes] | None = None
    try:
        _wait_for(lambda: client.llen(markers[0] + ":started") > 0 or first.poll() is not None, 60, "the first task")
        assert first.poll() is None, first_log.read_text()
        assert _stop(first, first_log) == 0, first_log.read_text()[-3000:]
        assert results[0].get(timeout=5) == markers[0], "the running task finished during the warm shutdown"
        assert sum(client.llen(m + ":started") for m in markers) == 1, "the worker started nothing after SIGTERM"

        second = _start(WORKER.format(queue=queue, port=_free_port()), env, second_log)
        assert [r.get(timeout=60) for r in results[1:]] == markers[1:], "the queued tasks were not lost"
        assert [client.llen(m + ":started") for m in markers] == [1, 1, 1], "and none ran twice"
        assert _stop(second, second_log) == 0, second_log.read_text()[-3000:]
        json_lines = [line for line in first_log.read_text().splitlines() if line.startswith("{")]
        assert json_lines, "the worker logs JSON lines"
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.kill()
        client.delete(queue, *(m + ":started" for m in markers))
        client.close()
        sender.close()
