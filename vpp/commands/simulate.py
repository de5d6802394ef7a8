"""``vpp simulate``: run a scenario end to end and write its KPIs and report."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
from pathlib import Path
from typing import Any


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add the simulate command."""
    p = sub.add_parser("simulate", help="run a scenario (YAML file or bundled name) and write kpis.json, report.html")
    p.add_argument("--scenario", required=True, help="a scenario file, or a bundled scenario: demo, utrecht, ...")
    p.add_argument("--out", default="var/simulation", help="directory for kpis.json and report.html")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help="keep the service's data (database, secret) in DIR to browse it afterwards with "
                        "`VPP_DATA_DIR=DIR vpp serve`; default: a temporary directory, removed after the run")
    p.add_argument("--list", action="store_true", help="list the bundled scenarios and exit")
    p.set_defaults(func=simulate)


def simulate(args: argparse.Namespace) -> int:
    """Run the scenario, print the KPI table, write the artefacts."""
    from vpp import aio
    from vpp.simulation.kpis import build_series, compute_kpis, kpi_table
    from vpp.simulation.report import render_report
    from vpp.simulation.runner import run_scenario
    from vpp.simulation.scenario import bundled_scenarios, load_scenario

    if args.list:
        print("\n".join(bundled_scenarios()))
        return 0
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    scenario = load_scenario(args.scenario)
    data_dir = None
    if args.data_dir is not None:
        data_dir = Path(args.data_dir).resolve()
        refused = _check_data_dir(data_dir)
        if refused:
            print(f"vpp simulate: {refused}", file=sys.stderr)
            return 2
    # One event loop carries the service and every simulated party: uvloop's where installed.
    result = aio.run(run_scenario(scenario, progress=not args.quiet, data_dir=data_dir))
    series = build_series(result)
    kpis = compute_kpis(result, series)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "kpis.json").write_text(json.dumps(kpis, indent=2, sort_keys=True) + "\n")
    (out / "report.html").write_text(render_report(kpis, series, result.timeline.zone, scenario.model_dump(
        mode="json"), cars=result.car_sample), encoding="utf-8")
    print(kpi_table(kpis))
    print(f"written: {out / 'kpis.json'}, {out / 'report.html'}")
    if data_dir is not None:
        print(browse_hint(data_dir))
    return 0


def _check_data_dir(data_dir: Path) -> str | None:
    """Why ``data_dir`` cannot keep the run, or None.

    The kept data must be what ``Settings(data_dir=DIR)`` (``vpp serve``, ``vpp apikey``) reads later: the
    embedded SQLite database ``DIR/vpp.sqlite3`` and the pepper ``DIR/secret.key``. The simulated service is
    built the same way (sim.world.simulation_settings) as long as the environment selects the embedded mode.
    """
    from vpp.config import Settings

    if os.environ.get("VPP_DATABASE_URL") or os.environ.get("VPP_REDIS_URL"):
        return ("--data-dir keeps the embedded SQLite database and secret in DIR; unset VPP_DATABASE_URL and "
                "VPP_REDIS_URL (the simulation would otherwise write to that database with a random secret)")
    settings = Settings(data_dir=data_dir)
    if not settings.embedded:
        return "--data-dir needs the embedded mode (SQLite in DIR, no Redis)"
    database = data_dir / "vpp.sqlite3"
    if database.exists() and database.stat().st_size > 0:
        return f"{database} exists: use an empty or new directory"
    return None


def browse_hint(data_dir: Path) -> str:
    """How to serve the kept data and get a key for it."""
    env = f"VPP_DATA_DIR={shlex.quote(str(data_dir))}"
    return "\n".join([
        f"service data kept in {data_dir} (database vpp.sqlite3, secret secret.key); to browse it:",
        f"  {env} vpp apikey create --role trader --name me   # prints a trader key (shown once)",
        f"  {env} vpp serve   # then open http://127.0.0.1:8000/ui and sign in with that key",
        "Times are the scenario's (simulated) days: sessions the run left plugged in show as active.",
    ])
