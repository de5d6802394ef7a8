"""``vpp bench NAME --json``: one JSON object per benchmark on stdout."""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from vpp import bench
from vpp.commands.common import print_json


def _api_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--requests", type=int, default=2000)


def _api_run(args: argparse.Namespace) -> dict[str, Any]:
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


bench.register("api", "authenticated API round trips in process (SQLite)", _api_args, _api_run)


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add ``vpp bench`` with one subcommand per registered benchmark."""
    p = sub.add_parser("bench", help="run a benchmark and print one JSON object")
    names = p.add_subparsers(dest="bench_name", required=True)
    for item in bench.REGISTRY.values():
        b = names.add_parser(item.name, help=item.help)
        b.add_argument("--json", action="store_true", help="print JSON (the only output format)")
        item.add_args(b)
        b.set_defaults(func=_runner(item))


def _runner(item: bench.Benchmark) -> Any:
    def run(args: argparse.Namespace) -> int:
        print_json(item.run(args))
        return 0

    return run
