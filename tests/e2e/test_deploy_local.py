"""deploy/local/stack.sh: the whole production stack on one machine (api with two uvicorn workers, the market
process the TSO posts to, a Celery worker, beat, a dispatcher) against the real PostgreSQL and Redis, one short
scenario through it, and a clean stop."""

import base64
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from nacl.bindings import crypto_sign_keypair
from sqlalchemy import create_engine, func, make_url, select, text

from sim import tso
from tests.conftest import IN_CI, require_service
from vpp.activations.tables import AfrrSetpoint
from vpp.commitments import service as commitments
from vpp.db import create_session_factory, unit_of_work
from vpp.domain.commitments import CommitmentKind, CommitmentValue
from vpp.domain.isp import floor_to_isp
from workers.bus import LEASE_PREFIX

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
STACK = ROOT / "deploy" / "local" / "stack.sh"
STACK_REDIS_DB = 14  # the suite's other Redis tests use 15
PROCESSES = ("api", "market", "worker", "beat", "dispatcher")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for(predicate: Callable[[], Any], timeout_s: float, what: str,
              logs: Callable[[], str] = lambda: "") -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            value = predicate()
        except httpx.TransportError:
            value = None
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}\n{logs()}"
        time.sleep(0.3)


@dataclass
class Stack:
    env: dict[str, str]
    run_dir: Path
    base: str
    market: str
    database_url: str
    redis_url: str
    metrics_ports: tuple[int, int]

    def stack(self, command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", str(STACK), command], env=self.env, capture_output=True, text=True,
                              timeout=420, check=False)

    def vpp(self, *args: str) -> Any:
        done = subprocess.run([str(ROOT / ".venv" / "bin" / "vpp"), *args], env=self.env, capture_output=True,
                              text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def logs(self) -> str:
        return "\n".join(f"== {p.name}\n{p.read_text()[-2500:]}" for p in sorted((self.run_dir / "logs").glob("*")))


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    database = require_service("VPP_TEST_DATABASE_URL", "PostgreSQL")
    redis_base = require_service("VPP_TEST_REDIS_URL", "Redis")
    if not (shutil.which("bash") and shutil.which("curl")):
        if IN_CI:
            pytest.fail("deploy/local/stack.sh needs bash and curl")
        pytest.skip("deploy/local/stack.sh needs bash and curl")
    if not (ROOT / ".venv" / "bin" / "vpp").exists():
        pytest.skip("the stack runs the repository's .venv (make venv)")
    server = make_url(database)
    name = f"vpp_deploy_e2e_{uuid.uuid4().hex[:8]}"  # the stack script creates it
    database_url = server.set(database=name).render_as_string(hide_password=False)
    redis_url = str(make_url(redis_base.replace("redis://", "postgresql://")).set(database=str(STACK_REDIS_DB))
                    ).replace("postgresql://", "redis://")
    try:
        client = redis.Redis.from_url(redis_url, socket_connect_timeout=2)
        client.flushdb()
        client.close()
    except redis.RedisError as exc:
        if IN_CI:
            pytest.fail(f"Redis at {redis_url} is unreachable: {exc}")
        pytest.skip(f"Redis unreachable: {exc}")
    api_port, market_port, worker_port, dispatcher_port = _free_port(), _free_port(), _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VPP_", "PROMETHEUS_"))}
    env.update({
        "VPP_STACK_DIR": str(tmp_path / "run"), "VPP_DATABASE_URL": database_url, "VPP_REDIS_URL": redis_url,
        "VPP_PUBLIC_URL": f"http://127.0.0.1:{api_port}", "VPP_STACK_API_PORT": str(api_port),
        "VPP_STACK_MARKET_PORT": str(market_port),
        "VPP_STACK_API_WORKERS": "2", "VPP_STACK_WORKER_CONCURRENCY": "1",
        "VPP_STACK_WORKER_METRICS_PORT": str(worker_port), "VPP_STACK_DISPATCHER_METRICS_PORT": str(dispatcher_port),
        "VPP_STACK_STOP_TIMEOUT": "40", "VPP_DISPATCH_INTERVAL_SECONDS": "1",
        # Four uvicorn workers import the app at once beside the suite's other stacks: give them the time.
        "VPP_STACK_START_TIMEOUT": "300",
        # Given, as an orchestrator would: the secrets come from the environment, never from the image or repo.
        "VPP_SECRET_KEY": secrets.token_urlsafe(32),
        "VPP_UFTP_SIGNING_KEY": base64.b64encode(crypto_sign_keypair()[1]).decode(),
    })
    running = Stack(env=env, run_dir=tmp_path / "run", base=f"http://127.0.0.1:{api_port}",
                    market=f"http://127.0.0.1:{market_port}",
                    database_url=database_url, redis_url=redis_url, metrics_ports=(worker_port, dispatcher_port))
    try:
        yield running
    finally:
        running.stack("stop")
        admin = create_engine(server.set(database="postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _start_sim_cpo(stack: Stack, tmp_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    invited = stack.vpp("ocpi", "invite", "--name", "sim-cpo", "--json")
    port = _free_port()
    log = (tmp_path / "sim-cpo.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "vpp.cli", "sim", "cpo", "--port", str(port), "--evses", "6", "--seed", "7",
         "--register-with", invited["versions_url"], "--scsp-token-a", invited["token_a"]],
        env=stack.env, stdout=log, stderr=subprocess.STDOUT,
    )
    return process, f"http://127.0.0.1:{port}"


def test_the_local_stack_runs_a_scenario_and_stops_cleanly(stack: Stack, tmp_path: Path) -> None:
    started = stack.stack("start")
    assert started.returncode == 0, started.stderr + stack.logs()
    pids = {p: int((stack.run_dir / f"{p}.pid").read_text()) for p in PROCESSES}
    sim_cpo, sim_url = _start_sim_cpo(stack, tmp_path)
    try:
        key = stack.vpp("apikey", "create", "--role", "admin", "--name", "e2e", "--json")["key"]
        api = httpx.Client(base_url=stack.base, headers={"Authorization": f"Bearer {key}"}, timeout=10)

        # A simulated CPO registers over OCPI and pushes the sessions of the cars plugged in. Generous: on a loaded
        # 2-core host (the suite's other stacks beside it) the first requests to fresh workers take seconds each.
        def logs() -> str:
            return f"== sim-cpo\n{(tmp_path / 'sim-cpo.log').read_text()[-4000:]}\n{stack.logs()}"

        _wait_for(lambda: httpx.get(f"{sim_url}/admin/state").json()["connections"], 180, "the OCPI handshake", logs)
        for _ in range(3):
            httpx.post(f"{sim_url}/admin/sessions", json={"energy_kwh": 30, "connection_hours": 8},
                       timeout=10).raise_for_status()
        sessions = _wait_for(lambda: api.get("/api/v1/sessions").json()["total"] >= 3 and
                             api.get("/api/v1/sessions").json(), 60, "the pushed sessions", logs)
        assert all(item["cpo"] == "sim-cpo" for item in sessions["items"])
        pools = [p["pool"] for p in api.get("/api/v1/portfolio/pools").json() if p["sessions"] > 0]
        zone = next(p for p in pools if p.startswith("zone:"))

        # The pool holds an aFRR award (imported by the trader in real life); the TSO streams setpoints.
        isp = floor_to_isp(datetime.now(UTC))
        factory = create_session_factory(create_engine(stack.database_url))
        with unit_of_work(factory) as session:
            commitments.record(session, [
                CommitmentValue(pool=zone, isp_start=isp + timedelta(minutes=15 * k), kind=kind, power_kw=50.0,
                                source="e2e", reference="award-e2e")
                for k in range(2) for kind in (CommitmentKind.AFRR_CAPACITY_UP, CommitmentKind.AFRR_CAPACITY_DOWN)
            ])
        # The TSO posts to the market process, not to the API beside the OCPI intake.
        market = httpx.Client(base_url=stack.market, headers={"Authorization": f"Bearer {key}"}, timeout=10)
        latencies = tso.run(market, [zone], lambda t: 0.01 if t < 8 else -0.01, steps=4, step_s=0.5, first_seq=1)
        assert len(latencies) == 4
        with unit_of_work(factory) as session:
            stored = session.scalar(select(func.count()).select_from(AfrrSetpoint).where(AfrrSetpoint.pool == zone))
        assert stored == 4

        # A DSO limit on a congestion point is recorded as a commitment of its pool.
        end = isp + timedelta(minutes=30)
        limit = api.post("/api/v1/dso/limits", json={"congestion_point": "871685900000000001",
                                                     "start": isp.isoformat(), "end": end.isoformat(),
                                                     "max_kw": 40.0})
        assert limit.status_code == 201, limit.text
        recorded = api.get("/api/v1/commitments", params={"pool": "congestion_point:871685900000000001",
                                                          "start": isp.isoformat(), "end": end.isoformat()}).json()
        assert {(c["kind"], c["power_kw"]) for c in recorded} == {("congestion_limit", 40.0)}

        # The dispatcher holds the leases of the pools with sessions, and says so.
        client = redis.Redis.from_url(stack.redis_url)
        _wait_for(lambda: client.exists(LEASE_PREFIX + zone), 60, "the dispatcher's lease of the zone pool", logs)
        worker_port, dispatcher_port = stack.metrics_ports
        dispatcher_metrics = httpx.get(f"http://127.0.0.1:{dispatcher_port}/metrics").text
        assert "vpp_dispatch_pools_known" in dispatcher_metrics
        assert "vpp_dispatch_cycle_seconds_count" in dispatcher_metrics
        assert "vpp_tasks_total" in httpx.get(f"http://127.0.0.1:{worker_port}/metrics").text

        health = httpx.get(f"{stack.base}/health")
        assert health.status_code == 200 and health.json()["mode"] == "production"
        # Both uvicorn workers' samples, whichever answers: multi-process metrics.
        metrics = httpx.get(f"{stack.base}/metrics").text
        for name in ("vpp_celery_queue_length", "vpp_job_interval_seconds", "vpp_dependency_up",
                     "vpp_http_requests_total"):
            assert name in metrics, name
        # The setpoints were counted by the market process (both of its workers, whichever answers): its own series.
        market_metrics = httpx.get(f"{stack.market}/metrics").text
        for name in ("vpp_afrr_setpoints_total", "vpp_afrr_setpoint_lag_seconds_bucket", "vpp_http_requests_total"):
            assert name in market_metrics, name
        assert 'vpp_afrr_setpoints_total{outcome="stored"} 4.0' in market_metrics

        status = stack.stack("status")
        assert status.returncode == 0, status.stdout + stack.logs()
    finally:
        sim_cpo.terminate()
        sim_cpo.wait(timeout=20)

    stopped = stack.stack("stop")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr + stack.logs()
    assert sorted(stopped.stdout.split("\n")[:-1]) == sorted(f"{p} exit 0" for p in PROCESSES)
    for process, pid in pids.items():
        assert not Path(f"/proc/{pid}").exists(), f"{process} still runs"
    assert client.keys(LEASE_PREFIX + "*") == [], "the dispatcher handed its leases back"
    client.close()
    for process in ("api", "market", "dispatcher", "worker", "beat"):
        lines = (stack.run_dir / "logs" / f"{process}.log").read_text().splitlines()
        records = [json.loads(line) for line in lines if line.startswith("{")]
        assert records, f"{process} logs JSON records"
