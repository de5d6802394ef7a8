"""``python -m sim.cpo``: run a simulated OCPI 2.2.1 CPO."""

from __future__ import annotations

import argparse

from sim.cpo.faults import FaultConfig
from sim.cpo.runner import run_cpo


def main(argv: list[str] | None = None) -> None:
    """Parse arguments and serve the simulator."""
    parser = argparse.ArgumentParser(prog="python -m sim.cpo", description=__doc__)
    parser.add_argument("--port", type=int, default=8801)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--public-url", default=None, help="URL peers use to reach us")
    parser.add_argument("--party", default="NL/CPA")
    parser.add_argument("--evses", type=int, default=10)
    parser.add_argument("--max-kw", type=float, default=11.0)
    parser.add_argument("--dc", action="store_true")
    parser.add_argument("--v2g", action="store_true")
    parser.add_argument("--speed", type=float, default=1.0, help="simulated seconds per real second")
    parser.add_argument("--token-a", default=None)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--no-arrivals", action="store_true", help="only cars plugged in via /admin/sessions")
    parser.add_argument("--scsp-versions-url", default=None, help="register with this SCSP at start-up")
    parser.add_argument("--scsp-token-a", default=None)
    parser.add_argument("--faults", default=None, help="FaultConfig JSON, e.g. '{\"error_rate\": 0.1}'")
    args = parser.parse_args(argv)
    run_cpo(
        args.port,
        args.party,
        args.evses,
        host=args.host,
        public_url=args.public_url,
        max_kw=args.max_kw,
        dc=args.dc,
        v2g=args.v2g,
        speed=args.speed,
        token_a=args.token_a,
        seed=args.seed,
        auto_arrivals=not args.no_arrivals,
        scsp_versions_url=args.scsp_versions_url,
        scsp_token_a=args.scsp_token_a,
        faults=FaultConfig.model_validate_json(args.faults) if args.faults else None,
    )


if __name__ == "__main__":
    main()
