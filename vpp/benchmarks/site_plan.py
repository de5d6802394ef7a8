"""``vpp bench site-plan``: one site planned behind its meter (cars, battery, PV, load, a capacity tariff), timed.

The site planner runs once per equipped site at every pool re-plan (each ISP), so its time is what a site costs
the planner. The generated site: ``--cars`` cars (a third of them V2G) with random windows and needs over two days
of ISPs, a battery, PV and a building load, a time-of-use tariff with a monthly capacity charge. Reference in the
same run: the same site without its battery, V2G and capacity charge (a plain transport-like LP).
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace
from typing import Any

import numpy as np

from vpp.algorithms.site_planning import SiteProblem, plan_site
from vpp.domain.sites import Battery


def site_problem(cars: int, isps: int, *, seed: int = 1) -> SiteProblem:
    """A generated site (see the module docstring)."""
    rng = np.random.default_rng(seed)
    t = np.arange(isps)
    hour = (t / 4.0) % 24.0
    pv = np.clip(np.sin((hour - 6.0) / 12.0 * np.pi), 0.0, None) * 0.8 * 5.0 * cars
    load = np.where((hour >= 8) & (hour < 18), 2.0 * cars, 1.2 * cars).astype(np.float64)
    price = np.where((hour >= 22) | (hour < 6), 0.2, 0.3)
    arrival = rng.integers(0, isps - 16, cars)
    departure = np.minimum(arrival + rng.integers(16, 56, cars), isps)
    v2g = rng.random(cars) < 1 / 3
    battery_kwh = np.where(v2g, 60.0, np.nan)
    return SiteProblem(
        isp_hours=0.25, import_eur_per_kwh=price, export_eur_per_kwh=np.full(isps, 0.08), pv_kw=pv, load_kw=load,
        import_max_kw=np.full(isps, 8.0 * cars), export_max_kw=np.full(isps, 5.0 * cars), arrival=arrival,
        departure=departure, energy_kwh=rng.uniform(5.0, 30.0, cars), max_kw=np.full(cars, 11.0),
        discharge_kw=np.where(v2g, 11.0, 0.0), car_battery_kwh=battery_kwh, car_soc_kwh=np.where(v2g, 30.0, np.nan),
        car_min_soc_kwh=np.where(v2g, 18.0, np.nan),
        battery=Battery(capacity_kwh=10.0 * cars, power_kw=5.0 * cars, efficiency=0.95, soc_kwh=5.0 * cars,
                        cycle_cost_eur_per_kwh=0.02),
        capacity_eur_per_kw=5.0, peak_bucket=np.zeros(isps, dtype=np.int64), peak_so_far_kw=np.zeros(1),
        v2g_cycle_eur_per_kwh=0.05)


def run_site_plan_bench(cars: int, isps: int, *, seed: int = 1, repeat: int = 3) -> dict[str, Any]:
    """Time ``plan_site`` on the generated site; the median of ``repeat`` runs, beside the plain reference."""
    problem = site_problem(cars, isps, seed=seed)
    plain = replace(problem, battery=None, discharge_kw=np.zeros(cars), capacity_eur_per_kw=0.0, peak_bucket=None)

    def timed(p: SiteProblem) -> tuple[list[float], Any]:
        times, result = [], None
        for _ in range(max(1, repeat)):
            started = time.perf_counter()
            result = plan_site(p)
            times.append(time.perf_counter() - started)
        return times, result

    times, plan = timed(problem)
    reference, _ = timed(plain)
    return {
        "name": "site-plan", "cars": cars, "isps": isps,
        "seconds": round(statistics.median(times), 4), "runs_seconds": [round(x, 4) for x in times],
        "plain_reference_seconds": round(statistics.median(reference), 4),
        "status": plan.status, "unmet_kwh": round(float(plan.unmet_kwh.sum()), 3),
        "bill_eur": {k: round(v, 2) for k, v in plan.bill_eur.items()},
    }


def add_args(p: argparse.ArgumentParser) -> None:
    """``vpp bench site-plan`` options."""
    p.add_argument("--cars", type=int, default=40)
    p.add_argument("--isps", type=int, default=192, help="the horizon (192: to the end of the next day)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--repeat", type=int, default=3)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Plan a generated site ``--repeat`` times."""
    return run_site_plan_bench(args.cars, args.isps, seed=args.seed, repeat=args.repeat)
