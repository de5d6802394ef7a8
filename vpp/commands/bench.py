"""``vpp bench NAME --json``: one JSON object per benchmark on stdout."""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from vpp import bench
from vpp.commands.common import print_json, stdout_to_stderr


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


def _dayahead_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sessions", type=int, default=10_000)
    p.add_argument("--v2g", action="store_true")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--exact-max-sessions", type=int, default=20_000,
                   help="solve the exact LP for the gap up to this many sessions")


def _dayahead_run(args: argparse.Namespace) -> dict[str, Any]:
    from vpp.algorithms.scheduling.bench import run_dayahead_bench

    return run_dayahead_bench(args.sessions, v2g=args.v2g, seed=args.seed,
                              exact_max_sessions=args.exact_max_sessions)


bench.register("dayahead", "portfolio scheduling: fast solver vs the exact LP", _dayahead_args, _dayahead_run)


def _dayahead_curve_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sessions", type=int, default=10_000)
    p.add_argument("--uncapped", action="store_true", help="no pool cap (the parametric curve is then exact)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--check-points", type=int, default=12, help="(MTU, level) points re-solved for the error")


def _dayahead_curve_run(args: argparse.Namespace) -> dict[str, Any]:
    from vpp.bids.bench import run_dayahead_curve_bench

    return run_dayahead_curve_bench(args.sessions, capped=not args.uncapped, seed=args.seed,
                                    check_points=args.check_points)


bench.register("dayahead-curve", "one delivery day's demand curves (all MTUs, all levels)", _dayahead_curve_args,
               _dayahead_curve_run)


def _allocate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sessions", type=int, default=100_000)
    p.add_argument("--groups", type=int, default=None)
    p.add_argument("--repeats", type=int, default=50)
    p.add_argument("--seed", type=int, default=1)


def _allocate_run(args: argparse.Namespace) -> dict[str, Any]:
    from vpp.algorithms.bench_allocation import run_allocate_bench

    return run_allocate_bench(args.sessions, groups=args.groups, repeats=args.repeats, seed=args.seed)


bench.register("allocate", "allocation of a pool target to sessions with group caps", _allocate_args, _allocate_run)


def _settle_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sessions", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=1)


def _settle_run(args: argparse.Namespace) -> dict[str, Any]:
    from vpp.algorithms.bench_settlement import run_settle_bench

    return run_settle_bench(args.sessions, seed=args.seed)


bench.register("settle", "settlement of a simulated day (15-minute and 4-second resolution)", _settle_args,
               _settle_run)


def _flexibility_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sessions", type=int, default=100_000)
    p.add_argument("--hours", type=int, default=48)
    p.add_argument("--seed", type=int, default=1)


def _flexibility_run(args: argparse.Namespace) -> dict[str, Any]:
    from vpp.algorithms.bench_flexibility import run_flexibility_bench

    return run_flexibility_bench(args.sessions, hours=args.hours, seed=args.seed)


bench.register("flexibility", "session envelopes and pool aggregates", _flexibility_args, _flexibility_run)


def _dispatch_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sessions", type=int, default=10_000)
    p.add_argument("--network", choices=("http", "fake"), default="http",
                   help="http: simulated OCPI CPOs on localhost over real HTTP; fake: the in-process fake network")
    p.add_argument("--cpos", type=int, default=None, help="CPOs (default: 5 over HTTP, 10 fake)")
    p.add_argument("--concurrency", type=int, default=None,
                   help="http: ChargingProfiles requests in flight per CPO (default: the OCPI setting)")
    p.add_argument("--latency-ms", type=float, default=50.0, help="fake: latency per request")


def _dispatch_run(args: argparse.Namespace) -> dict[str, Any]:
    if args.network == "fake":
        from vpp.dispatch.bench import run_dispatch_bench

        return run_dispatch_bench(args.sessions, latency_s=args.latency_ms / 1000.0, cpos=args.cpos or 10)
    from vpp.dispatch.bench_http import run_http_dispatch_bench

    return run_http_dispatch_bench(args.sessions, cpos=args.cpos or 5, concurrency=args.concurrency)


def _afrr_intake_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--requests", type=int, default=1000)


def _afrr_intake_run(args: argparse.Namespace) -> dict[str, Any]:
    from vpp.dispatch.bench import run_intake_bench

    return run_intake_bench(args.requests)


def _afrr_tracking_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sessions", type=int, default=2000)
    p.add_argument("--non-followers", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--telemetry-seconds", type=float, default=10.0,
                   help="charging period of the session telemetry (900: the 15-minute periods outside activations)")


def _afrr_tracking_run(args: argparse.Namespace) -> dict[str, Any]:
    from vpp.dispatch.bench import run_tracking_bench

    return run_tracking_bench(args.sessions, non_followers=args.non_followers, seed=args.seed,
                              telemetry_s=args.telemetry_seconds)


bench.register("dispatch", "a dispatcher cycle sending limits to simulated CPOs", _dispatch_args, _dispatch_run)
bench.register("afrr-intake", "aFRR setpoint acknowledgement latency over HTTP", _afrr_intake_args,
               _afrr_intake_run)
bench.register("afrr-tracking", "aFRR tracking of a simulated pool in simulated time", _afrr_tracking_args,
               _afrr_tracking_run)


def _ocpi_ingest_run(args: argparse.Namespace) -> dict[str, Any]:
    from adapters.ocpi.v2_2_1.bench import run

    return run(args)


def _ocpi_ingest_args(p: argparse.ArgumentParser) -> None:
    from adapters.ocpi.v2_2_1.bench import add_args

    add_args(p)


bench.register("ocpi-ingest", "OCPI Session PATCH intake over HTTP (uvicorn + httpx)", _ocpi_ingest_args,
               _ocpi_ingest_run)


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
        with stdout_to_stderr():
            result = item.run(args)
        print_json(result)
        return 0

    return run
