"""``vpp forecast backtest``: how well the session forecast did on held-out days."""

from __future__ import annotations

import argparse
from typing import Any

from vpp.commands.common import load_settings, open_database, print_json


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add ``vpp forecast backtest``."""
    p = sub.add_parser("forecast", help="forecasts of sessions not yet plugged in")
    kinds = p.add_subparsers(dest="forecast_kind", required=True)
    b = kinds.add_parser("backtest", help="forecast the last N days from the rest and report the error")
    b.add_argument("--pool", required=True, help="e.g. zone:NL, cpo:NL-CPA, site:depot")
    b.add_argument("--days", type=int, default=7, help="held-out days at the end of the history")
    b.add_argument("--history-days", type=int, default=90, help="history read from the database")
    b.add_argument("--simulate-days", type=int, default=None,
                   help="backtest on simulated ElaadNL history of this many days instead of the database")
    b.add_argument("--sessions-per-day", type=float, default=40.0)
    b.add_argument("--category", default="public", choices=["home", "private", "public", "workplace"])
    b.add_argument("--seed", type=int, default=1)
    b.set_defaults(func=backtest)


def backtest(args: argparse.Namespace) -> int:
    """Run the backtest and print its report."""
    from vpp.algorithms.forecast import backtest as run_backtest
    from vpp.data.elaad import simulate_history
    from vpp.db import unit_of_work, utcnow
    from vpp.domain.pools import PoolId
    from vpp.portfolio.service import pool_history

    PoolId.parse(args.pool)
    settings = load_settings()
    if args.simulate_days:
        history = simulate_history(args.simulate_days, args.sessions_per_day, args.category, args.seed,
                                   pool=args.pool, tz=settings.market_timezone)
        source = f"simulated ElaadNL {args.category}, {args.sessions_per_day}/day"
    else:
        engine, factory = open_database(settings)
        try:
            with unit_of_work(factory) as db:
                history = pool_history(db, utcnow(), args.pool, args.history_days)
        finally:
            engine.dispose()
        source = f"database, last {args.history_days} days"
    report = run_backtest(history, args.pool, args.days, tz=settings.market_timezone)
    print_json({"pool": args.pool, "held_out_days": args.days, "history": source, "sessions": len(history),
                **report})
    return 0
