"""The soak's TSO in a process of its own: ``python -m sim.soak.tso_process`` posts a setpoint per pool every 4 s
(``load.Tso``) and prints one JSON line per post as it is answered; ``TsoProcess`` runs it and reads them.

A real TSO does not share a process with a fleet's telemetry. In the soak's own process the TSO's answers waited
for the event loop and the garbage collector of the CPO load generator (110 PATCH/s): at a load of 15 that loop
woke its sleepers 166 ms late at the median, which the acknowledgement latency counted as the service's.
The API key comes in the environment (``SOAK_TSO_KEY``), never on the command line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx

from sim.soak.load import SetpointSent, Tso
from vpp.observability import freeze_startup_heap

KEY_ENV = "SOAK_TSO_KEY"
READY = b"ready"


def encode(sent: SetpointSent) -> str:
    """One post as a JSON line."""
    return json.dumps({"pool": sent.pool, "seq": sent.seq, "sent_at": sent.sent_at, "latency_ms": sent.latency_ms,
                       "error": sent.error})


def decode(line: str | bytes) -> SetpointSent:
    """A post from its JSON line."""
    raw = json.loads(line)
    return SetpointSent(str(raw["pool"]), int(raw["seq"]), float(raw["sent_at"]),
                        None if raw["latency_ms"] is None else float(raw["latency_ms"]), raw.get("error"))


@dataclass
class TsoProcess:
    """``load.Tso``'s interface (``sent``, ``acked``, ``run``) with the posting done by a child process."""

    base_url: str
    key: str
    pools: Sequence[str]
    capacity_mw: float
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    sent: list[SetpointSent] = field(default_factory=list)
    acked: asyncio.Event = field(default_factory=asyncio.Event)

    _child: asyncio.subprocess.Process | None = None

    async def start(self, first_seq: int, timeout_s: float = 300) -> None:
        """Start the child and wait until it has imported what it needs: it posts its first step right after."""
        self._child = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "from sim.soak.tso_process import main; raise SystemExit(main())",
            "--base-url", self.base_url, "--pools", ",".join(self.pools), "--capacity-mw", str(self.capacity_mw),
            "--first-seq", str(first_seq),
            env={**self.env, KEY_ENV: self.key}, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE)
        assert self._child.stdout is not None
        line = await asyncio.wait_for(self._child.stdout.readline(), timeout=timeout_s)
        if line.strip() != READY:
            raise RuntimeError(f"the TSO process did not start: {line!r}")

    async def run(self, stop: asyncio.Event, first_seq: int | None = None) -> None:
        """Post until ``stop`` (then the child finishes its step's posts and exits); every answer lands in ``sent``.

        Starts the child first unless ``start`` did (``first_seq`` is then that of ``start``)."""
        if self._child is None:
            await self.start(int(time.time()) if first_seq is None else first_seq)
        child = self._child
        assert child is not None and child.stdout is not None
        reader = asyncio.create_task(self._read(child.stdout))
        try:
            await stop.wait()
        finally:
            if child.returncode is None:
                child.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(child.wait(), timeout=15)
            except TimeoutError:
                child.kill()
                await child.wait()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(reader, timeout=5)

    async def _read(self, stdout: asyncio.StreamReader) -> None:
        async for line in stdout:
            if line.strip():
                sent = decode(line)
                self.sent.append(sent)
                if sent.latency_ms is not None:
                    self.acked.set()


async def _post(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    def report(sent: SetpointSent) -> None:
        sys.stdout.write(encode(sent) + "\n")
        sys.stdout.flush()

    sys.stdout.write(READY.decode() + "\n")
    sys.stdout.flush()
    limits = httpx.Limits(max_connections=8, max_keepalive_connections=8)
    async with httpx.AsyncClient(base_url=args.base_url, timeout=5, limits=limits,
                                 headers={"Authorization": f"Bearer {os.environ[KEY_ENV]}"}) as client:
        tso = Tso(client, args.pools.split(","), capacity_mw=args.capacity_mw, on_sent=report)
        await tso.run(stop, first_seq=args.first_seq)


def main(argv: Sequence[str] | None = None) -> int:
    """Post setpoints until SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m sim.soak.tso_process")
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--pools", required=True, help="comma-separated pools")
    parser.add_argument("--capacity-mw", type=float, required=True)
    parser.add_argument("--first-seq", type=int, required=True)
    args = parser.parse_args(argv)
    freeze_startup_heap()  # what the imports left is never scanned again: a full collection would pause the posts
    asyncio.run(_post(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
