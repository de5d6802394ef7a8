"""``vpp simulate``: run a scenario end to end and write its KPIs and report."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
from pathlib import Path
from typing import Any


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add the simulate command."""
    p = sub.add_parser("simulate", help="run a scenario (YAML file or bundled name) and write kpis.json, report.html")
    p.add_argument("--scenario", required=True, help="a scenario file, or a bundled scenario: demo, utrecht, ...")
    p.add_argument("--out", default="var/simulation", help="directory for kpis.json and report.html")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.add_argument("--list", action="store_true", help="list the bundled scenarios and exit")
    p.set_defaults(func=simulate)


def simulate(args: argparse.Namespace) -> int:
    """Run the scenario, print the KPI table, write the artefacts."""
    from vpp.simulation.kpis import build_series, compute_kpis, kpi_table
    from vpp.simulation.report import render_report
    from vpp.simulation.runner import run_scenario
    from vpp.simulation.scenario import bundled_scenarios, load_scenario

    if args.list:
        print("\n".join(bundled_scenarios()))
        return 0
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    scenario = load_scenario(args.scenario)
    result = asyncio.run(run_scenario(scenario, progress=not args.quiet))
    series = build_series(result)
    kpis = compute_kpis(result, series)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "kpis.json").write_text(json.dumps(kpis, indent=2, sort_keys=True) + "\n")
    (out / "report.html").write_text(render_report(kpis, series, result.timeline.zone, scenario.model_dump(
        mode="json")))
    print(kpi_table(kpis))
    print(f"written: {out / 'kpis.json'}, {out / 'report.html'}")
    return 0
