"""``vpp dispatcher``: the real-time activation loop as its own process (production, with Redis)."""

from __future__ import annotations

import argparse
import asyncio
import signal
from typing import Any

from vpp import aio
from vpp.commands.common import CommandError, load_settings, open_database


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add ``vpp dispatcher``."""
    p = sub.add_parser("dispatcher", help="run the real-time aFRR dispatcher (pools claimed through Redis)")
    p.add_argument("--metrics-port", type=int, default=None, help="serve Prometheus metrics on this port")
    p.set_defaults(func=dispatcher)


def dispatcher(args: argparse.Namespace) -> int:
    """Run the dispatcher until SIGINT/SIGTERM, then release its pools."""
    from vpp.observability import configure_logging
    from workers.dispatcher import build_dispatcher

    settings = load_settings()
    if not settings.redis_url:
        raise CommandError("vpp dispatcher needs VPP_REDIS_URL (in embedded mode it runs inside vpp serve)")
    configure_logging(settings.log_level, settings.log_format)
    if args.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(args.metrics_port)
    engine, factory = open_database(settings)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await build_dispatcher(settings, factory).run(stop)

    try:
        aio.run(main())
    finally:
        engine.dispose()
    return 0
