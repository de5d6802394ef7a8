"""``vpp soak --minutes N --json``: the chaos soak (sim/soak/), one JSON object on stdout."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from vpp.commands.common import CommandError, print_json, stdout_to_stderr, terminated_as_interrupted


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add ``vpp soak``."""
    p = sub.add_parser("soak", help="run the stack on its own PostgreSQL and Redis under load while things break")
    p.add_argument("--minutes", type=float, required=True, help="length of the loaded run (set-up not counted)")
    p.add_argument("--cars", type=int, default=100_000,
                   help="fleet whose telemetry the CPO pushes: cars / 900 s charging periods a second")
    p.add_argument("--ingest-sessions", type=int, default=2000, help="sessions the telemetry cycles through")
    p.add_argument("--cpos", type=int, default=2, help="simulated CPOs (sim.cpo) that receive the profiles")
    p.add_argument("--evses", type=int, default=20, help="cars plugged in at each simulated CPO")
    p.add_argument("--api-workers", type=int, default=2, help="uvicorn workers of the API")
    p.add_argument("--market-workers", type=int, default=2,
                   help="uvicorn workers of the market API, a process of its own that the TSO posts its setpoints "
                        "to (deploy/local's market); 0: the TSO posts to the API beside the OCPI intake")
    p.add_argument("--keep-logs", type=Path, default=None, help="copy every log of the run to this directory")
    p.add_argument("--json", action="store_true", help="print JSON (the only output format)")
    p.set_defaults(func=soak)


def soak(args: argparse.Namespace) -> int:
    """Run the soak; exit 1 when a goal was missed (something acknowledged lost, a slow takeover, a slow ack)."""
    from sim.soak import SoakConfig, binaries_available, run_soak
    from sim.soak.services import ServiceError

    if args.market_workers < 0:
        raise CommandError("--market-workers must be 0 or more")
    if args.minutes <= 0 or args.cars <= 0 or args.ingest_sessions <= 0 or args.cpos < 2 or args.evses <= 0:
        raise CommandError("--minutes, --cars, --ingest-sessions and --evses must be positive, --cpos at least 2")
    if not binaries_available():
        raise CommandError("the soak runs its own PostgreSQL and Redis: initdb/pg_ctl and redis-server are needed")
    config = SoakConfig(minutes=args.minutes, cars=args.cars, ingest_sessions=args.ingest_sessions,
                        cpos=args.cpos, evses_per_cpo=args.evses, api_workers=args.api_workers,
                        market_workers=args.market_workers, keep=args.keep_logs)
    try:
        with terminated_as_interrupted(), stdout_to_stderr():
            result = run_soak(config)
    except ServiceError as exc:
        raise CommandError(str(exc)) from exc
    print_json(result)
    return 0 if result["goals_met"] else 1
