"""Benchmarks: ``vpp bench NAME`` runs one and prints one JSON object.

Each benchmark is one module of this package and a composition root of its own, like ``vpp/cli.py``: it builds
what it measures (a database, the API under uvicorn, simulated CPOs, a dispatcher) and so may import every layer,
the adapters, the workers and the simulated parties of ``sim/``; nothing else in ``vpp`` imports it. A module
offers ``add_args(parser)`` (its options) and ``run(args)`` (the JSON object, as a dict). To add a benchmark,
write ``vpp/benchmarks/<name>.py`` (dashes in the name become underscores) and add its line to ``BENCHMARKS``.
A module is imported only when its benchmark is chosen, so the ``vpp`` command starts no slower for it.
"""

from __future__ import annotations

import argparse
import importlib
from dataclasses import dataclass
from typing import Any, Protocol, cast


class BenchmarkModule(Protocol):
    """What a benchmark module offers the ``vpp bench`` command."""

    def add_args(self, parser: argparse.ArgumentParser) -> None:
        """Add the benchmark's options."""
        ...

    def run(self, args: argparse.Namespace) -> dict[str, Any]:
        """Run the benchmark; one JSON object."""
        ...


@dataclass(frozen=True)
class Benchmark:
    """A named benchmark, its one-line help, and the module that runs it."""

    name: str
    help: str

    @property
    def module_name(self) -> str:
        """The module in this package that runs the benchmark."""
        return f"{__name__}.{self.name.replace('-', '_')}"

    def load(self) -> BenchmarkModule:
        """Import the benchmark's module."""
        return cast(BenchmarkModule, importlib.import_module(self.module_name))


BENCHMARKS: tuple[Benchmark, ...] = (
    Benchmark("api", "authenticated API round trips in process (SQLite)"),
    Benchmark("dayahead", "portfolio scheduling: fast solver vs the exact LP"),
    Benchmark("replan", "re-planning a pool's per-car plans (present sessions and forecast arrivals)"),
    Benchmark("site-plan", "one site planned behind its meter (cars, battery, PV, load, tariff)"),
    Benchmark("dayahead-curve", "one delivery day's demand curves (all MTUs, all levels)"),
    Benchmark("allocate", "allocation of a pool target to sessions with group caps"),
    Benchmark("settle", "settlement of a simulated day (15-minute and 4-second resolution)"),
    Benchmark("flexibility", "session envelopes and pool aggregates"),
    Benchmark("dispatch", "a dispatcher cycle sending limits to simulated CPOs"),
    Benchmark("afrr-intake", "aFRR setpoint acknowledgement latency over HTTP"),
    Benchmark("afrr-tracking", "aFRR tracking of a simulated pool in simulated time"),
    Benchmark("ocpi-ingest", "OCPI Session PATCH intake over HTTP (uvicorn + httpx)"),
    Benchmark("partitions", "reading intake, flexibility and settlement reads after N days (PostgreSQL partitions)"),
    Benchmark("simulate", "a bundled scenario end to end (vpp simulate), its wall time beside its KPIs"),
)
