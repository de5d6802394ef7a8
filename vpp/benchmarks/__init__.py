"""The ``vpp bench NAME`` family: each benchmark registers here and prints one JSON object."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

BenchRun = Callable[[argparse.Namespace], dict[str, Any]]
AddArgs = Callable[[argparse.ArgumentParser], None]


@dataclass(frozen=True)
class Benchmark:
    """A named benchmark: its arguments and its run function."""

    name: str
    help: str
    add_args: AddArgs
    run: BenchRun


REGISTRY: dict[str, Benchmark] = {}


def register(name: str, help: str, add_args: AddArgs, run: BenchRun) -> None:
    """Add a benchmark to ``vpp bench``."""
    REGISTRY[name] = Benchmark(name, help, add_args, run)
