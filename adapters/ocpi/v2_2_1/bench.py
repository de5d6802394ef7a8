"""``vpp bench ocpi-ingest``: Session PATCH intake over real HTTP against a running service.

Starts uvicorn in a subprocess on a free localhost port (embedded SQLite in a temporary directory, or the
database of ``VPP_DATABASE_URL``), registers a connection, PUTs N sessions, then sends M PATCHes (each
appending one charging period) from several concurrent clients and reports throughput and latency.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from adapters.ocpi.v2_2_1.transport import encode_token, format_datetime

T0 = datetime(2026, 1, 5, 6, 0, tzinfo=UTC)


def add_args(p: argparse.ArgumentParser) -> None:
    """Arguments of the benchmark."""
    p.add_argument("--sessions", type=int, default=200)
    p.add_argument("--patches", type=int, default=5000)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--workers", type=int, default=1, help="uvicorn worker processes (rate limits are per process)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _register(database_url: str, secret: str) -> tuple[str, str]:
    from vpp import migrate
    from vpp.db import create_db_engine, create_session_factory, unit_of_work
    from vpp.ocpi import service
    from vpp.ocpi.schemas import ConnectionFlags, EndpointRef, PartyRole

    engine = create_db_engine(database_url, pool_size=1)
    migrate.upgrade(engine)
    flags = ConnectionFlags(rate_limit_per_s=1e6, rate_limit_burst=1e6)
    with unit_of_work(create_session_factory(engine)) as session:
        row, _token_a = service.invite(session, name=f"bench-{secrets.token_hex(3)}", pepper=secret, flags=flags)
        _row, token = service.accept_registration(
            session, row.id, pepper=secret, outgoing_token="unused",  # noqa: S106
            versions_url="http://bench.invalid/versions",
            version="2.2.1", endpoints=[EndpointRef("chargingprofiles", "RECEIVER", "http://bench.invalid/cp")],
            roles=[PartyRole("CPO", "NL", "BEN")],
        )
    engine.dispose()
    return row.id, token


def _session(session_id: str) -> dict[str, Any]:
    return {
        "country_code": "NL", "party_id": "BEN", "id": session_id, "start_date_time": format_datetime(T0),
        "kwh": 0.0, "auth_method": "WHITELIST", "location_id": "LOC1", "evse_uid": "EVSE1", "connector_id": "1",
        "cdr_token": {"country_code": "NL", "party_id": "EMS", "uid": "U1", "type": "RFID", "contract_id": "C1"},
        "currency": "EUR", "status": "ACTIVE", "last_updated": format_datetime(T0), "charging_periods": [],
    }


def _patch(step: int) -> dict[str, Any]:
    start = T0 + timedelta(minutes=5 * step)
    return {
        "kwh": round(step * 0.9, 3),
        "charging_periods": [{"start_date_time": format_datetime(start),
                              "dimensions": [{"type": "POWER", "volume": 11.0}, {"type": "ENERGY", "volume": 0.9}]}],
        "last_updated": format_datetime(start + timedelta(minutes=5)),
    }


def _cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system) of a process, on Linux; None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _drive(
    base: str, token: str, sessions: int, patches: int, concurrency: int, server_pid: int | None
) -> dict[str, Any]:
    run = secrets.token_hex(4)
    ids = [f"B{run}-{n:06d}" for n in range(sessions)]
    headers = {"Authorization": f"Token {encode_token(token)}"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits, timeout=30) as client:
        for session_id in ids:
            put = await client.put(f"/ocpi/2.2.1/sessions/NL/BEN/{session_id}", json=_session(session_id))
            put.raise_for_status()
        jobs = [(ids[n % sessions], n // sessions + 1) for n in range(patches)]
        latencies: list[float] = []
        errors = 0
        queue: asyncio.Queue[tuple[str, int]] = asyncio.Queue()
        for job in jobs:
            queue.put_nowait(job)

        async def worker() -> None:
            nonlocal errors
            while not queue.empty():
                session_id, step = queue.get_nowait()
                t0 = time.perf_counter()
                answer = await client.patch(f"/ocpi/2.2.1/sessions/NL/BEN/{session_id}", json=_patch(step))
                latencies.append((time.perf_counter() - t0) * 1000)
                if answer.status_code != 200 or answer.json().get("status_code") != 1000:
                    errors += 1

        cpu_before = _cpu_seconds(server_pid) if server_pid else None
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
        cpu_after = _cpu_seconds(server_pid) if server_pid else None
    latencies.sort()
    return {
        "patch_per_s": round(patches / elapsed, 1),
        "p50_ms": round(statistics.median(latencies), 2),
        "p99_ms": round(latencies[int(0.99 * (len(latencies) - 1))], 2),
        "errors": errors,
        "server_cpu_ms_per_patch": (
            round((cpu_after - cpu_before) * 1000 / patches, 3)
            if cpu_before is not None and cpu_after is not None else None
        ),
    }


def _wait_ready(base: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError("the service exited during start-up")
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code in (200, 503):
                return
        except httpx.TransportError:
            time.sleep(0.2)
    raise RuntimeError("the service did not start within 60 s")


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the ingest benchmark and return its figures."""
    with tempfile.TemporaryDirectory() as tmp:
        database_url = os.environ.get("VPP_DATABASE_URL") or f"sqlite:///{Path(tmp) / 'bench.sqlite3'}"
        secret = os.environ.get("VPP_SECRET_KEY") or secrets.token_urlsafe(32)
        _connection_id, token = _register(database_url, secret)
        port = _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("VPP_")}
        env.update({"VPP_DATA_DIR": tmp, "VPP_DATABASE_URL": database_url, "VPP_SECRET_KEY": secret,
                    "VPP_LOG_LEVEL": "WARNING", "VPP_PUBLIC_URL": f"http://127.0.0.1:{port}"})
        if os.environ.get("VPP_REDIS_URL"):
            env["VPP_REDIS_URL"] = os.environ["VPP_REDIS_URL"]
        server = subprocess.Popen(  # noqa: S603 (our own interpreter and module)
            [sys.executable, "-m", "uvicorn", "vpp.api.main:app_from_env", "--factory", "--host", "127.0.0.1",
             "--port", str(port), "--log-level", "warning", "--no-access-log", "--workers", str(args.workers)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            _wait_ready(base, server)
            figures = asyncio.run(
                _drive(base, token, args.sessions, args.patches, args.concurrency,
                       server.pid if args.workers == 1 else None)
            )
        finally:
            server.terminate()
            server.wait(timeout=20)
    return {
        "name": "ocpi-ingest",
        "backend": "postgresql" if database_url.startswith("postgresql") else "sqlite",
        "sessions": args.sessions,
        "patches": args.patches,
        **figures,
        "concurrency": args.concurrency,
        "workers": args.workers,
    }
