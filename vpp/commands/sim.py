"""``vpp sim ...``: the simulated outside world, for demos, tests and benchmarks."""

from __future__ import annotations

import argparse
import json
from typing import Any

from vpp.commands.common import CommandError


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add ``vpp sim cpo``."""
    p = sub.add_parser("sim", help="run a simulated party of the outside world")
    kinds = p.add_subparsers(dest="sim_kind", required=True)
    c = kinds.add_parser("cpo", help="a simulated OCPI 2.2.1 CPO with cars that obey charging profiles")
    c.add_argument("--port", type=int, default=8801)
    c.add_argument("--host", default="127.0.0.1")
    c.add_argument("--party", default="NL/CPA", help="country code and party id, e.g. NL/CPA")
    c.add_argument("--evses", type=int, default=10)
    c.add_argument("--max-kw", type=float, default=11.0)
    c.add_argument("--dc", action="store_true", help="DC chargers (cars report their state of charge)")
    c.add_argument("--v2g", action="store_true", help="bidirectional EVSEs")
    c.add_argument("--speed", type=float, default=1.0, help="simulated seconds per real second")
    c.add_argument("--seed", type=int, default=None)
    c.add_argument("--token-a", default=None, help="token A to hand out (default: random)")
    c.add_argument("--register-with", default=None, metavar="VERSIONS_URL",
                   help="register with this SCSP at start (needs --scsp-token-a)")
    c.add_argument("--scsp-token-a", default=None)
    c.add_argument("--faults", default=None, help='JSON, e.g. {"error_rate": 0.1, "latency_ms": 200}')
    c.set_defaults(func=sim_cpo)


def sim_cpo(args: argparse.Namespace) -> int:
    """Serve a simulated CPO until interrupted."""
    from sim.cpo import run_cpo
    from sim.cpo.faults import FaultConfig

    faults = None
    if args.faults:
        try:
            faults = FaultConfig(**json.loads(args.faults))
        except (ValueError, TypeError) as exc:
            raise CommandError(f"--faults: {exc}") from exc
    if bool(args.register_with) != bool(args.scsp_token_a):
        raise CommandError("--register-with and --scsp-token-a go together")
    run_cpo(args.port, args.party, args.evses, host=args.host, max_kw=args.max_kw, dc=args.dc, v2g=args.v2g,
            speed=args.speed, token_a=args.token_a, seed=args.seed, scsp_versions_url=args.register_with,
            scsp_token_a=args.scsp_token_a, faults=faults)
    return 0
