"""``vpp bench NAME --json``: one JSON object per benchmark on stdout (the benchmarks live in vpp/benchmarks/)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from vpp.benchmarks import BENCHMARKS, Benchmark
from vpp.commands.common import print_json, stdout_to_stderr, terminated_as_interrupted


class _BenchmarkParser(argparse.ArgumentParser):
    """The parser of one benchmark: its module adds the options when that benchmark is chosen or its help shown,
    so that building the ``vpp`` parser imports no benchmark (they pull in numpy, uvicorn, the simulator)."""

    def __init__(self, *args: Any, benchmark: Benchmark | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pending = benchmark

    def _add_benchmark_args(self) -> None:
        if self._pending is not None:
            benchmark, self._pending = self._pending, None
            benchmark.load().add_args(self)

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        self._add_benchmark_args()
        return super().parse_known_args(args, namespace)

    def format_help(self) -> str:
        self._add_benchmark_args()
        return super().format_help()


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add ``vpp bench`` with one subcommand per benchmark."""
    p = sub.add_parser("bench", help="run a benchmark and print one JSON object")
    names = p.add_subparsers(dest="bench_name", required=True, parser_class=_BenchmarkParser)
    for item in BENCHMARKS:
        b = names.add_parser(item.name, help=item.help, benchmark=item)
        b.add_argument("--json", action="store_true", help="print JSON (the only output format)")
        b.set_defaults(func=_runner(item))


def _runner(item: Benchmark) -> Any:
    def run(args: argparse.Namespace) -> int:
        with terminated_as_interrupted(), stdout_to_stderr():
            result = item.load().run(args)
        print_json(result)
        return 0

    return run
