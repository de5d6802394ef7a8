"""``vpp bench simulate``: a bundled scenario end to end (``vpp simulate``), timed, with the figures it gave.

The wall time of the simulation (``wall_seconds``: the service in its process, the simulated parties in this one,
the KPIs and report not included) and the simulated span it covered, so that runs of one scenario can be compared
before and after a change; the machine's load average before and after the run says how loaded it was (the
machines this runs on are shared). The like-for-like KPIs of the run come along, so that a faster run is seen to
measure the same thing. ``--push-concurrency`` sets the simulated CPOs' pushes in flight (1: one at a time).
"""

from __future__ import annotations

import argparse
import os
from typing import Any

KEYS = ("needs_met_pct", "energy_delivered_kwh", "energy_uncontrolled_kwh", "price_paid_eur_per_mwh",
        "price_paid_eur_per_mwh_uncontrolled", "price_paid_eur_per_mwh_perfect_foresight", "price_capture_pct",
        "peak_kw", "peak_kw_uncontrolled", "dayahead_imbalance_pct", "congestion_violation_isps",
        "curtailment_compliance_pct", "afrr_steps_within_tolerance_pct", "sessions_judged", "follow_end")


def add_args(p: argparse.ArgumentParser) -> None:
    """Options of ``vpp bench simulate``."""
    p.add_argument("--scenario", default="toulouse-plus100", help="a bundled scenario name or a scenario file")
    p.add_argument("--push-concurrency", type=int, default=None, metavar="N",
                   help="pushes each simulated CPO keeps in flight (default: the runner's)")


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the scenario once; its wall time, simulated span, load and KPIs."""
    from vpp import aio
    from vpp.simulation import runner
    from vpp.simulation.kpis import compute_kpis
    from vpp.simulation.scenario import load_scenario

    if args.push_concurrency is not None:
        if args.push_concurrency < 1:
            raise ValueError("--push-concurrency must be at least 1")
        runner.PUSH_CONCURRENCY = args.push_concurrency
    scenario = load_scenario(args.scenario)
    load_before = os.getloadavg()
    result = aio.run(runner.run_scenario(scenario, progress=False))
    load_after = os.getloadavg()
    kpis = compute_kpis(result)
    begin = result.timeline.begin
    end = result.follow_end or result.timeline.end
    return {
        "benchmark": "simulate",
        "scenario": scenario.name,
        "push_concurrency": runner.PUSH_CONCURRENCY,
        "wall_seconds": round(result.wall_seconds, 2),
        "simulated_hours": round((end - begin).total_seconds() / 3600.0, 2),
        "sessions": len(result.sessions),
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in load_after],
        "cpus": os.cpu_count(),
        "kpis": {key: kpis.get(key) for key in KEYS},
    }
