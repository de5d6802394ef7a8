"""``vpp bench ocpi-ingest``: Session PATCH intake over real HTTP against a running service.

Starts the service as production runs it (``vpp serve --workers N``, INFO logging, on a free localhost port; embedded
SQLite in a temporary directory, or the database of ``VPP_DATABASE_URL``), registers a connection, PUTs N sessions,
then sends M PATCHes (each appending one charging period) and reports throughput, latency and CPU per PATCH.

The load generator is this process, not the server's: a lean HTTP/1.1 keep-alive client (pre-encoded requests, one
connection per concurrent client) so that its share of the CPU stays small next to the server's; both figures are
reported. ``--rate`` sends at a fixed rate (open loop, latency counted from when each PATCH was due, so a server
that falls behind shows it); without it every connection sends its next PATCH as soon as the last one is answered.

``--setpoints-per-s`` adds a TSO: aFRR setpoints POSTed at that rate (open loop, over a connection of their own)
while the measured PATCHes run, and reports their acknowledgement latency: the setpoint path under intake load.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from adapters.ocpi.v2_2_1.transport import encode_token, format_datetime
from vpp import aio

T0 = datetime(2026, 1, 5, 6, 0, tzinfo=UTC)
HOST = "127.0.0.1"


def add_args(p: argparse.ArgumentParser) -> None:
    """Arguments of the benchmark."""
    p.add_argument("--sessions", type=int, default=1000)
    p.add_argument("--patches", type=int, default=20000, help="PATCHes measured (after the warm-up)")
    p.add_argument("--warmup", type=int, default=1000, help="PATCHes sent first and not measured")
    p.add_argument("--concurrency", type=int, default=32, help="client connections (HTTP/1.1 keep-alive)")
    p.add_argument("--rate", type=float, default=0.0,
                   help="PATCH/s to offer (open loop); 0 = each connection sends as soon as it is answered")
    p.add_argument("--workers", type=int, default=1,
                   help="vpp serve worker processes (rate limits are per process; embedded SQLite runs one)")
    p.add_argument("--log-level", default="INFO", help="the service's VPP_LOG_LEVEL (production default: INFO)")
    p.add_argument("--setpoints-per-s", type=float, default=0.0,
                   help="aFRR setpoints POSTed per second beside the PATCHes (their ack latency is reported)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


SETPOINT_POOL = "zone:BENCH"


def _register(database_url: str, secret: str) -> tuple[str, str, str]:
    """Migrate, register the CPO connection; also a market API key and an aFRR award for the setpoints."""
    from vpp import migrate
    from vpp.apikeys import service as apikeys
    from vpp.commitments import service as commitments
    from vpp.db import create_db_engine, create_session_factory, unit_of_work
    from vpp.domain.commitments import CommitmentKind, CommitmentValue
    from vpp.domain.isp import floor_to_isp
    from vpp.keyring import Keyring, derive_key
    from vpp.ocpi import service
    from vpp.ocpi.schemas import ConnectionFlags, EndpointRef, PartyRole

    engine = create_db_engine(database_url, pool_size=1)
    keyring = Keyring.of(derive_key(secret))
    migrate.upgrade(engine, token_keyring=keyring)
    flags = ConnectionFlags(rate_limit_per_s=1e6, rate_limit_burst=1e6)
    with unit_of_work(create_session_factory(engine)) as session:
        row, _token_a = service.invite(session, name=f"bench-{secrets.token_hex(3)}", pepper=secret, flags=flags)
        _row, token = service.accept_registration(
            session, row.id, pepper=secret, outgoing_token="unused", keyring=keyring,  # noqa: S106
            versions_url="http://bench.invalid/versions",
            version="2.2.1", endpoints=[EndpointRef("chargingprofiles", "RECEIVER", "http://bench.invalid/cp")],
            roles=[PartyRole("CPO", "NL", "BEN")],
        )
        _key_row, market_key = apikeys.create(session, name=f"bench-tso-{secrets.token_hex(3)}", role="market",
                                              pepper=secret)
        now = datetime.now(UTC)
        commitments.record(session, [
            CommitmentValue(pool=SETPOINT_POOL, isp_start=floor_to_isp(now) + timedelta(minutes=15 * i), kind=kind,
                            power_kw=5000.0, source="bench", reference=f"bench-{secrets.token_hex(3)}")
            for i in range(-1, 8) for kind in (CommitmentKind.AFRR_CAPACITY_UP, CommitmentKind.AFRR_CAPACITY_DOWN)
        ])
    engine.dispose()
    return row.id, token, market_key


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


def _request(method: str, path: str, authorization: str, payload: dict[str, Any]) -> bytes:
    body = json.dumps(payload, separators=(",", ":")).encode()
    head = (f"{method} {path} HTTP/1.1\r\nHost: {HOST}\r\nAuthorization: {authorization}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode("latin-1") + body


# ------------------------------------------------------------------------------------------- process CPU


def _tree_cpu_seconds(root: int) -> float | None:
    """CPU time (user + system) of a process and all its descendants, on Linux; None elsewhere."""
    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, float]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return None
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        stats[int(entry)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    if root not in stats:
        return None
    tree = {root}
    grew = True
    while grew:
        grew = False
        for pid, (ppid, _cpu) in stats.items():
            if ppid in tree and pid not in tree:
                tree.add(pid)
                grew = True
    return sum(stats[pid][1] for pid in tree)


def _database_cpu_seconds(database_url: str) -> dict[int, float] | None:
    """CPU time per local PostgreSQL backend serving the bench's database (their titles name it); None when there
    are none here (SQLite, a remote server) or not on Linux. WAL writer and checkpointer are not counted."""
    if not database_url.startswith("postgresql"):
        return None
    name = database_url.rsplit("/", 1)[-1].split("?", 1)[0]
    tick = os.sysconf("SC_CLK_TCK")
    backends: dict[int, float] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return None
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            title = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
            if not title.startswith("postgres: ") or f" {name} " not in title:
                continue
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        backends[int(entry)] = (int(fields[11]) + int(fields[12])) / tick
    return backends or None


def _database_cpu_spent(before: dict[int, float] | None, after: dict[int, float] | None) -> float | None:
    """CPU the backends alive at the end spent since ``before`` (a backend that exited meanwhile is not counted:
    a lower bound, exact when the pools kept their connections)."""
    if before is None or after is None:
        return None
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


# ------------------------------------------------------------------------------------------- load generator


class _Exchange:
    """One keep-alive HTTP/1.1 connection: send a pre-encoded request, read status and body."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> _Exchange:
        reader, writer = await asyncio.open_connection(HOST, port)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(reader, writer)

    async def send(self, request: bytes) -> tuple[int, bytes]:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                raise RuntimeError("chunked answers are not expected from the service")
        body = await self.reader.readexactly(length) if length else b""
        return status, body

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


def _accepted(status: int, body: bytes, statuses: tuple[int, ...]) -> bool:
    if status not in statuses:
        return False
    try:
        return bool(json.loads(body).get("status_code") == 1000)
    except ValueError:
        return False


async def _send_all(
    exchanges: Sequence[_Exchange], requests: Sequence[bytes], *, rate: float, statuses: tuple[int, ...] = (200,)
) -> tuple[list[float], int, float]:
    """Send every request over the connections; (latencies in ms, errors, elapsed seconds)."""
    latencies: list[float] = []
    errors = 0
    position = 0
    started = time.perf_counter()

    async def client(exchange: _Exchange) -> None:
        nonlocal errors, position
        while position < len(requests):
            index = position
            position += 1
            due = time.perf_counter()
            if rate > 0:
                scheduled = started + index / rate
                if scheduled > due:
                    await asyncio.sleep(scheduled - due)
                due = scheduled
            status, body = await exchange.send(requests[index])
            latencies.append((time.perf_counter() - due) * 1000)
            if not _accepted(status, body, statuses):
                errors += 1

    await asyncio.gather(*(client(e) for e in exchanges))
    return latencies, errors, time.perf_counter() - started


def _percentile(ordered: Sequence[float], q: float) -> float:
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)


async def _setpoints(port: int, key: str, rate: float, done: asyncio.Event) -> tuple[list[float], int]:
    """POST setpoints at ``rate`` until ``done``; (latencies in ms from when each was due, errors)."""
    exchange = await _Exchange.open(port)
    latencies: list[float] = []
    errors = 0
    seq = int(time.time() * 1000)
    started = time.perf_counter()
    try:
        for n in range(1_000_000):
            due = started + n / rate
            wait = due - time.perf_counter()
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(done.wait(), timeout=wait)
            if done.is_set():
                break
            body = {"pool": SETPOINT_POOL, "seq": seq + n, "timestamp": datetime.now(UTC).isoformat(),
                    "setpoint_mw": round(2.0 * ((n % 20) - 10) / 10, 3)}
            status, _body = await exchange.send(
                _request("POST", "/api/v1/market/afrr/setpoints", f"Bearer {key}", body)
            )
            latencies.append((time.perf_counter() - due) * 1000)
            if status != 200:
                errors += 1
    finally:
        await exchange.close()
    return latencies, errors


async def _drive(
    port: int, token: str, args: argparse.Namespace, server_pid: int, market_key: str = ""
) -> dict[str, Any]:
    run = secrets.token_hex(4)
    ids = [f"B{run}-{n:06d}" for n in range(args.sessions)]
    authorization = f"Token {encode_token(token)}"
    path = "/ocpi/2.2.1/sessions/NL/BEN/"
    puts = [_request("PUT", path + session_id, authorization, _session(session_id)) for session_id in ids]
    total = args.warmup + args.patches
    patches = [
        _request("PATCH", path + ids[n % args.sessions], authorization, _patch(n // args.sessions + 1))
        for n in range(total)
    ]
    exchanges = [await _Exchange.open(port) for _ in range(args.concurrency)]
    try:
        _lat, put_errors, _t = await _send_all(exchanges, puts, rate=0, statuses=(200, 201))
        if put_errors:
            raise RuntimeError(f"{put_errors} of {len(puts)} session PUTs failed")
        await _send_all(exchanges, patches[: args.warmup], rate=0)
        load_before = os.getloadavg()[0]
        cpu_before = _tree_cpu_seconds(server_pid)
        db_before = _database_cpu_seconds(args.database_url)
        client_before = time.process_time()
        done = asyncio.Event()
        tso = (asyncio.create_task(_setpoints(port, market_key, args.setpoints_per_s, done))
               if args.setpoints_per_s > 0 else None)
        latencies, errors, elapsed = await _send_all(exchanges, patches[args.warmup:], rate=args.rate)
        done.set()
        setpoint_latencies, setpoint_errors = await tso if tso is not None else ([], 0)
        client_cpu = time.process_time() - client_before
        cpu_after = _tree_cpu_seconds(server_pid)
        db_after = _database_cpu_seconds(args.database_url)
        load_after = os.getloadavg()[0]
    finally:
        for exchange in exchanges:
            await exchange.close()
    latencies.sort()
    measured = len(latencies)
    setpoint_latencies.sort()
    setpoints: dict[str, Any] = {}
    if setpoint_latencies:
        setpoints = {"setpoints": len(setpoint_latencies), "setpoint_errors": setpoint_errors,
                     "setpoint_p50_ms": _percentile(setpoint_latencies, 0.50),
                     "setpoint_p99_ms": _percentile(setpoint_latencies, 0.99),
                     "setpoint_max_ms": round(setpoint_latencies[-1], 2)}
    return {
        "patch_per_s": round(measured / elapsed, 1),
        "p50_ms": _percentile(latencies, 0.50),
        "p90_ms": _percentile(latencies, 0.90),
        "p99_ms": _percentile(latencies, 0.99),
        "max_ms": round(latencies[-1], 2),
        "errors": errors,
        "seconds": round(elapsed, 2),
        "server_cpu_ms_per_patch": (
            round((cpu_after - cpu_before) * 1000 / measured, 3)
            if cpu_before is not None and cpu_after is not None else None
        ),
        "database_cpu_ms_per_patch": (
            round(spent * 1000 / measured, 3) if (spent := _database_cpu_spent(db_before, db_after)) is not None
            else None
        ),
        "client_cpu_ms_per_patch": round(client_cpu * 1000 / measured, 3),
        "load_1m_before": round(load_before, 2),
        "load_1m_after": round(load_after, 2),
        **setpoints,
    }


def _wait_ready(base: str, server: subprocess.Popen[bytes], timeout_s: float = 180.0) -> None:
    # Generous: two workers importing the app took over 60 s on the shared 2-core VM at a load of 20.
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError("the service exited during start-up")
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code in (200, 503):
                return
        except httpx.TransportError:
            time.sleep(0.2)
    raise RuntimeError(f"the service did not start within {timeout_s:g} s")


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the ingest benchmark and return its figures."""
    with tempfile.TemporaryDirectory() as tmp:
        database_url = os.environ.get("VPP_DATABASE_URL") or f"sqlite:///{Path(tmp) / 'bench.sqlite3'}"
        secret = os.environ.get("VPP_SECRET_KEY") or secrets.token_urlsafe(32)
        _connection_id, token, market_key = _register(database_url, secret)
        port = _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("VPP_")}
        env.update({"VPP_DATA_DIR": tmp, "VPP_DATABASE_URL": database_url, "VPP_SECRET_KEY": secret,
                    "VPP_LOG_LEVEL": args.log_level, "VPP_PUBLIC_URL": f"http://{HOST}:{port}"})
        if os.environ.get("VPP_REDIS_URL"):
            env["VPP_REDIS_URL"] = os.environ["VPP_REDIS_URL"]
        embedded = database_url.startswith("sqlite") and "VPP_REDIS_URL" not in env
        log_path = Path(tmp) / "server.log"
        with log_path.open("wb") as log_file:
            server = subprocess.Popen(  # noqa: S603 (our own interpreter and module)
                [sys.executable, "-m", "vpp.cli", "serve", "--host", HOST, "--port", str(port),
                 "--workers", str(args.workers)],
                env=env, stdout=subprocess.DEVNULL, stderr=log_file,
            )
            try:
                _wait_ready(f"http://{HOST}:{port}", server)
                args.database_url = database_url
                figures = aio.run(_drive(port, token, args, server.pid, market_key))
            finally:
                server.terminate()
                server.wait(timeout=30)
        log_lines = sum(1 for _ in log_path.open("rb"))
    return {
        "name": "ocpi-ingest",
        "backend": "postgresql" if database_url.startswith("postgresql") else "sqlite",
        "sessions": args.sessions,
        "patches": args.patches,
        **figures,
        "concurrency": args.concurrency,
        "rate": args.rate or None,
        "workers": 1 if embedded else args.workers,
        "server_log_level": args.log_level,
        "server_log_lines": log_lines,
    }
