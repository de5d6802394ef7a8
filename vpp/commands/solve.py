"""``vpp solve ...``: the offline solvers, instance file in, result JSON out, for analysts and verification."""

from __future__ import annotations

import argparse
from typing import Any

from vpp.commands.common import CommandError, print_json, read_json_file, stdout_to_stderr, write_json_file


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add ``vpp solve dayahead|allocate|settle-flex-order``."""
    p = sub.add_parser("solve", help="run an offline solver on an instance file")
    kinds = p.add_subparsers(dest="solve_kind", required=True)

    d = kinds.add_parser("dayahead", help="cheapest pool schedule meeting every session's need")
    d.add_argument("--instance", required=True)
    d.add_argument("--out", required=True)
    d.add_argument("--exact", action="store_true", help="solve the exact per-session LP instead (slow)")
    d.set_defaults(func=solve_dayahead)

    a = kinds.add_parser("allocate", help="one power limit per session from a pool target")
    a.add_argument("--instance", required=True)
    a.add_argument("--out", required=True)
    a.set_defaults(func=solve_allocate)

    s = kinds.add_parser("settle-flex-order", help="USEF FlexOrder settlement per ISP")
    s.add_argument("--instance", required=True)
    s.set_defaults(func=settle_flex_order)


def _object(path: str) -> dict[str, Any]:
    instance = read_json_file(path)
    if not isinstance(instance, dict):
        raise CommandError(f"{path}: the instance must be a JSON object")
    return instance


def solve_dayahead(args: argparse.Namespace) -> int:
    """Solve a day-ahead scheduling instance."""
    from vpp.algorithms.scheduling import problem_from_instance, result_to_output, solve_exact_lp, solve_instance

    instance = _object(args.instance)
    with stdout_to_stderr():
        if args.exact:
            problem = problem_from_instance(instance)
            result = result_to_output(problem, solve_exact_lp(problem))
        else:
            result = solve_instance(instance)
    write_json_file(args.out, result)
    print_json({k: result[k] for k in ("status", "cost_eur", "solve_seconds")})
    return 0


def solve_allocate(args: argparse.Namespace) -> int:
    """Allocate a pool target to sessions."""
    from vpp.algorithms.allocation import allocate_instance

    result = allocate_instance(_object(args.instance))
    write_json_file(args.out, result)
    print_json({k: result[k] for k in ("total_kw", "solve_ms")})
    return 0


def settle_flex_order(args: argparse.Namespace) -> int:
    """Settle a FlexOrder and print the result."""
    from vpp.algorithms.settlement import settle_flex_order_instance

    print_json(settle_flex_order_instance(_object(args.instance)))
    return 0
