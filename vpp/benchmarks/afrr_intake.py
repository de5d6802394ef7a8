"""``vpp bench afrr-intake``: aFRR setpoint acknowledgement latency over HTTP, against uvicorn on embedded SQLite."""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any


def run_intake_bench(requests: int = 1000, *, pools: int = 4) -> dict[str, Any]:
    """Setpoint acknowledgement latency over HTTP against uvicorn on a free port (embedded SQLite)."""
    import socket
    import threading

    import httpx
    import uvicorn

    from vpp.api.app import create_app
    from vpp.apikeys import service as apikeys
    from vpp.commitments import service as commitments
    from vpp.config import Settings
    from vpp.db import unit_of_work
    from vpp.domain.commitments import CommitmentKind, CommitmentValue
    from vpp.domain.isp import floor_to_isp
    from vpp.tables import metadata

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp))
        app = create_app(settings, background=False)
        metadata.create_all(app.state.engine)
        now = datetime.now(UTC)
        isps = [floor_to_isp(now) + timedelta(minutes=15 * i) for i in range(-1, 4)]
        pool_ids = [f"zone:B{i}" for i in range(pools)]
        with unit_of_work(app.state.session_factory) as session:
            _row, key = apikeys.create(session, name="tso", role="market", pepper=settings.secret)
            commitments.record(session, [
                CommitmentValue(pool=p, isp_start=isp, kind=kind, power_kw=5000.0, source="bench", reference="b")
                for p in pool_ids for isp in isps
                for kind in (CommitmentKind.AFRR_CAPACITY_UP, CommitmentKind.AFRR_CAPACITY_DOWN)
            ])
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        latencies: list[float] = []
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}",
                              headers={"Authorization": f"Bearer {key}"}) as client:
                for i in range(requests):
                    body = {"pool": pool_ids[i % pools], "seq": i, "timestamp": datetime.now(UTC).isoformat(),
                            "setpoint_mw": round(3.0 * math.sin(i / 20), 3)}
                    t0 = time.perf_counter()
                    client.post("/api/v1/market/afrr/setpoints", json=body).raise_for_status()
                    latencies.append((time.perf_counter() - t0) * 1000)
        finally:
            server.should_exit = True
            thread.join(timeout=10)
            app.state.engine.dispose()
    latencies.sort()
    return {
        "name": "afrr-intake",
        "requests": requests,
        "p50_ms": round(statistics.median(latencies), 3),
        "p99_ms": round(latencies[int(0.99 * (len(latencies) - 1))], 3),
        "max_ms": round(latencies[-1], 3),
        "server": "uvicorn, embedded SQLite, in-process bus, one client in sequence",
    }


def add_args(p: argparse.ArgumentParser) -> None:
    """Options of ``vpp bench afrr-intake``."""
    p.add_argument("--requests", type=int, default=1000)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """``vpp bench afrr-intake``: ``--requests`` setpoints posted one after another."""
    return run_intake_bench(args.requests)
