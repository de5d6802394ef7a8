"""``vpp settle --day YYYY-MM-DD [--pool P] [--out DIR]``: settle a closed day, print a JSON summary, write reports."""

from __future__ import annotations

import argparse
from datetime import date
from pathlib import Path
from typing import Any

from vpp.commands.common import CommandError, load_settings, open_database, print_json


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add ``vpp settle``."""
    p = sub.add_parser("settle", help="settle a closed delivery day (aFRR, congestion, day-ahead, sessions)")
    p.add_argument("--day", required=True, help="local delivery day, YYYY-MM-DD")
    p.add_argument("--pool", default=None, help="one pool (default: every pool with data on the day)")
    p.add_argument("--out", default=None, help="folder for CSV reports and PNG plots")
    p.add_argument("--afrr-price", type=float, default=100.0, help="aFRR energy price (EUR/MWh) without award")
    p.add_argument("--afrr-penalty", type=float, default=200.0, help="aFRR shortfall penalty (EUR/MWh)")
    p.add_argument("--imbalance-price", type=float, default=100.0, help="flat imbalance price (EUR/MWh)")
    p.set_defaults(func=settle)


def settle(args: argparse.Namespace) -> int:
    """Settle, persist (a recompute replaces), print the summaries, write reports when asked."""
    from vpp.db import unit_of_work
    from vpp.settlement import plots, reports, service
    from vpp.settlement.values import SettlementParams

    try:
        day = date.fromisoformat(args.day)
    except ValueError as exc:
        raise CommandError(f"--day {args.day!r} is not YYYY-MM-DD") from exc
    settings = load_settings()
    engine, factory = open_database(settings)
    params = SettlementParams(afrr_energy_price_eur_per_mwh=args.afrr_price,
                              afrr_penalty_eur_per_mwh=args.afrr_penalty,
                              imbalance_price_eur_per_mwh=args.imbalance_price)
    try:
        with unit_of_work(factory) as db:
            runs = service.settle_day(db, day=day, pool=args.pool, time_zone=settings.market_timezone,
                                      params=params)
            summaries = [reports.summary(run) for run in runs]
        if not summaries:
            print_json({"day": day.isoformat(), "pools": [],
                        "message": f"nothing to settle on {day.isoformat()}: no pool has responses, setpoints "
                                   "or commitments that day"})
            return 0
        if args.out:
            out = Path(args.out)
            out.mkdir(parents=True, exist_ok=True)
            with factory() as db:
                for kind in reports.TABLES:
                    (out / f"settlement-{day.isoformat()}-{kind}.csv").write_text(
                        reports.to_csv(kind, reports.rows(db, kind, day, args.pool)))
                for item in summaries:
                    name = str(item["pool"]).replace(":", "_")
                    (out / f"settlement-{day.isoformat()}-{name}.png").write_bytes(
                        plots.requested_vs_delivered_png(db, day=day, pool=str(item["pool"]),
                                                         time_zone=settings.market_timezone))
        print_json({"day": day.isoformat(), "pools": summaries})
    finally:
        engine.dispose()
    return 0
