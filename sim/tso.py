"""A simulated TSO: posts an aFRR setpoint per 4-s step and pool to the service, as the LFC would.

``python -m sim.tso --url http://127.0.0.1:8000 --key vpp_... --pool zone:NL --capacity-mw 2``
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import httpx

from vpp.benchmarks.afrr_tracking import STEP_S, setpoint_profile


def run(client: httpx.Client, pools: Sequence[str], profile: Callable[[float], float], steps: int,
        step_s: float = STEP_S, first_seq: int = 0) -> list[float]:
    """Post ``steps`` setpoints per pool, one step every ``step_s`` seconds; the acknowledgement latencies (ms)."""
    latencies: list[float] = []
    started = time.monotonic()
    for k in range(steps):
        for pool in pools:
            body = {"pool": pool, "seq": first_seq + k, "timestamp": datetime.now(UTC).isoformat(),
                    "setpoint_mw": round(profile(k * STEP_S), 4)}
            t0 = time.perf_counter()
            client.post("/api/v1/market/afrr/setpoints", json=body).raise_for_status()
            latencies.append((time.perf_counter() - t0) * 1000)
        time.sleep(max(0.0, started + (k + 1) * step_s - time.monotonic()))
    return latencies


def main(argv: Sequence[str] | None = None) -> int:
    """Command line of the simulated TSO."""
    parser = argparse.ArgumentParser(prog="sim.tso", description="post aFRR setpoints every 4 s")
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--key", required=True, help="an API key of the market role")
    parser.add_argument("--pool", action="append", required=True)
    parser.add_argument("--capacity-mw", type=float, default=1.0)
    parser.add_argument("--steps", type=int, default=465)
    parser.add_argument("--step-s", type=float, default=STEP_S, help="wall-clock seconds per step (faster: < 4)")
    args = parser.parse_args(argv)
    with httpx.Client(base_url=args.url, headers={"Authorization": f"Bearer {args.key}"}, timeout=5) as client:
        latencies = run(client, args.pool, lambda t: setpoint_profile(args.capacity_mw, t), args.steps, args.step_s,
                        first_seq=int(time.time()))
    latencies.sort()
    print(f"{len(latencies)} setpoints, p50 {latencies[len(latencies) // 2]:.1f} ms, "
          f"p99 {latencies[int(0.99 * (len(latencies) - 1))]:.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
