"""``vpp simulate``: run a scenario end to end and write its KPIs and report."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shlex
import sys
from pathlib import Path
from typing import Any


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add the simulate command."""
    p = sub.add_parser("simulate", help="run a scenario (YAML file or bundled name) and write kpis.json, "
                                        "report.html, sessions.csv")
    p.add_argument("--scenario", required=True, help="a scenario file, or a bundled scenario: demo, utrecht, ...")
    p.add_argument("--out", default="var/simulation",
                   help="directory for kpis.json, report.html and sessions.csv (each session's need and what it got)")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help="keep the service's data (database, secret) in DIR to browse it afterwards with "
                        "`VPP_DATA_DIR=DIR vpp serve`; default: a temporary directory, removed after the run")
    p.add_argument("--list", action="store_true", help="list the bundled scenarios and exit")
    p.set_defaults(func=simulate)
    p = sub.add_parser("pilots", help="run the bundled scenarios and print the table of docs/scenarios.md "
                                      "(each beside its pilot figure and the perfect-foresight optimum)")
    p.add_argument("--out", default="var/pilots", help="one directory per scenario for its kpis.json, report.html")
    p.add_argument("--scenario", action="append", default=None, metavar="NAME",
                   help="a bundled scenario (repeatable); default: every bundled scenario but the demo")
    p.add_argument("--no-run", action="store_true",
                   help="only print the table from the kpis.json already in OUT/NAME (e.g. after a run elsewhere)")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.set_defaults(func=pilots)


def simulate(args: argparse.Namespace) -> int:
    """Run the scenario, print the KPI table, write the artefacts."""
    if not args.list:
        _prelaunch_service()
    from vpp.simulation.kpis import kpi_table
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
    out = Path(args.out)
    kpis = run_and_write(scenario, out, progress=not args.quiet, data_dir=data_dir)
    print(kpi_table(kpis))
    print(f"written: {out / 'kpis.json'}, {out / 'report.html'}, {out / 'sessions.csv'}")
    if data_dir is not None:
        print(browse_hint(data_dir))
    return 0


def run_and_write(scenario: Any, out: Path, *, progress: bool, data_dir: Path | None = None) -> dict[str, Any]:
    """Run ``scenario``, write ``out/kpis.json`` and ``out/report.html``; the KPIs."""
    _prelaunch_service()
    from vpp import aio
    from vpp.observability import silence_solver_banner
    from vpp.simulation.kpis import build_series, compute_kpis, session_outcomes, sessions_csv
    from vpp.simulation.report import render_report
    from vpp.simulation.runner import run_scenario

    silence_solver_banner()
    # One event loop carries the simulated parties: uvloop's where installed.
    result = aio.run(run_scenario(scenario, progress=progress, data_dir=data_dir))
    series = build_series(result)
    kpis = compute_kpis(result, series)
    out.mkdir(parents=True, exist_ok=True)
    (out / "kpis.json").write_text(json.dumps(kpis, indent=2, sort_keys=True) + "\n")
    (out / "sessions.csv").write_text(sessions_csv(session_outcomes(result)), encoding="utf-8")
    (out / "report.html").write_text(render_report(kpis, series, result.timeline.zone, scenario.model_dump(
        mode="json"), cars=result.car_sample), encoding="utf-8")
    return kpis


def pilots(args: argparse.Namespace) -> int:
    """Run the bundled scenarios (or read their kpis.json) and print the pilots' table in Markdown."""
    if not args.no_run:
        _prelaunch_service()
    from vpp.commands.common import stdout_to_stderr
    from vpp.simulation.pilots import table
    from vpp.simulation.scenario import bundled_scenarios, load_scenario

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    names = args.scenario or [name for name in bundled_scenarios() if name != "demo"]
    unknown = sorted(set(names) - set(bundled_scenarios()))
    if unknown:
        print(f"vpp pilots: no bundled scenario {', '.join(unknown)} (bundled: {', '.join(bundled_scenarios())})",
              file=sys.stderr)
        return 2
    out = Path(args.out)
    rows = []
    for name in names:
        scenario = load_scenario(name)
        path = out / name / "kpis.json"
        if args.no_run:
            if not path.is_file():
                print(f"vpp pilots: {path} is missing (run without --no-run first)", file=sys.stderr)
                return 2
            kpis = json.loads(path.read_text(encoding="utf-8"))
        else:
            print(f"[pilots] {name}", file=sys.stderr)
            # The solver's banners go to stderr: stdout is the table alone.
            with stdout_to_stderr():
                kpis = run_and_write(scenario, out / name, progress=not args.quiet)
        rows.append((name, kpis, scenario.reference))
    print(f"{_provenance()}\n")
    print(table(rows))
    return 0


def _prelaunch_service() -> None:
    """Start the next run's service process now (``sim.prelaunch``): it imports the service on the other core
    while this process imports the simulation and plans the scenario, instead of after. A no-op while one waits."""
    from sim.prelaunch import prelaunch

    prelaunch()


def _provenance() -> str:
    """The commit of the code that ran (when in a git work tree) and the machine's load now."""
    import shutil
    import subprocess

    git = shutil.which("git")
    commit = "unknown"
    if git is not None:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            commit = subprocess.run([git, "rev-parse", "--short", "HEAD"],  # noqa: S603 (git, fixed arguments)
                                    capture_output=True, text=True, timeout=10,
                                    cwd=Path(__file__).resolve().parent, check=False).stdout.strip() or commit
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    return f"commit {commit}, load average now (1, 5, 15 min) {load}, {os.cpu_count()} cores"


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
