"""The ``vpp`` command: a composition root that dispatches to one subcommand."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from vpp import __version__
from vpp.commands import (
    apikey,
    bench,
    dispatch,
    forecast,
    ocpi,
    secrets,
    service,
    settle,
    sim,
    simulate,
    soak,
    solve,
    uftp,
)
from vpp.commands.common import CommandError
from vpp.domain.errors import DomainError


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="vpp", description="VPP aggregator for EV flexibility")
    parser.add_argument("--version", action="version", version=f"vpp {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in (service, apikey, secrets, bench, solve, sim, ocpi, uftp, dispatch, forecast, settle, simulate,
                   soak):
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; exit code 2 with a message on a usage or input error."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except (CommandError, DomainError) as exc:
        sys.stderr.write(f"vpp {args.command}: error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
