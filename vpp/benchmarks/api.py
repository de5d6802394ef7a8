"""``vpp bench api``: authenticated GET round trips through the whole ASGI stack, in process, on embedded defaults."""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any


def add_args(p: argparse.ArgumentParser) -> None:
    """Options of ``vpp bench api``."""
    p.add_argument("--requests", type=int, default=2000)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Authenticated GET round trips through the whole ASGI stack, in process, on embedded defaults."""
    from fastapi.testclient import TestClient

    from vpp import migrate
    from vpp.api.app import create_app
    from vpp.apikeys import service as apikeys
    from vpp.config import Settings
    from vpp.db import unit_of_work

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp))
        app = create_app(settings, background=False)
        migrate.upgrade(app.state.engine)
        with unit_of_work(app.state.session_factory) as session:
            _row, key = apikeys.create(session, name="bench", role="admin", pepper=settings.secret)
        latencies: list[float] = []
        with TestClient(app) as client:
            headers = {"Authorization": f"Bearer {key}"}
            started = time.perf_counter()
            for _ in range(args.requests):
                t0 = time.perf_counter()
                client.get("/api/v1/apikeys", headers=headers).raise_for_status()
                latencies.append((time.perf_counter() - t0) * 1000)
            elapsed = time.perf_counter() - started
        app.state.engine.dispose()
    latencies.sort()
    return {
        "name": "api",
        "requests": args.requests,
        "requests_per_s": round(args.requests / elapsed, 1),
        "p50_ms": round(statistics.median(latencies), 3),
        "p99_ms": round(latencies[int(0.99 * (len(latencies) - 1))], 3),
    }
