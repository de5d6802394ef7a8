"""The stack of deploy/local as the soak runs it: api (uvicorn, several workers), a Celery worker, beat and TWO
dispatchers, each a ``vpp`` subcommand with its settings from the environment and its log in ``logs/<name>.log``.

Processes are started here rather than through ``deploy/local/stack.sh`` because the faults need their pids (a
dispatcher is killed mid-cycle, an API worker is killed) and a second dispatcher, which the script does not run.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from sim.soak.services import HOST, ServiceError, free_port

# Generous: on a loaded 2-core machine (load 15-18) a process took over 90 s to import and start.
START_TIMEOUT_S = 300.0
STOP_ORDER = ("api", "market", "dispatcher-b", "dispatcher-a", "beat", "worker")


@dataclass
class Stack:
    """The service's processes, by name."""

    root: Path
    env: dict[str, str]
    api_workers: int = 2
    api_port: int = field(default_factory=free_port)
    market_workers: int = 2  # 0: no market process, the TSO posts to the API
    market_port: int = field(default_factory=free_port)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    metrics_ports: dict[str, int] = field(default_factory=dict)
    exits: dict[str, list[int]] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        """The API's URL."""
        return f"http://{HOST}:{self.api_port}"

    @property
    def market_url(self) -> str:
        """Where the TSO posts its setpoints: the market process, else the API."""
        return f"http://{HOST}:{self.market_port}" if self.market_workers else self.base_url

    @property
    def logs(self) -> Path:
        """The directory of the processes' logs."""
        return self.root / "logs"

    def vpp(self, *args: str, timeout_s: float = 120) -> str:
        """Run a ``vpp`` command to completion; its stdout."""
        done = subprocess.run([sys.executable, "-m", "vpp.cli", *args], env=self.env, capture_output=True,  # noqa: S603
                              text=True, timeout=timeout_s, check=False)
        if done.returncode != 0:
            raise ServiceError(f"vpp {args[0]} failed: {done.stderr.strip()[-2000:]}")
        return done.stdout

    def launch(self, name: str, *args: str) -> None:
        """Start ``vpp <args>`` as ``name``, appending to its log."""
        self.logs.mkdir(parents=True, exist_ok=True)
        with (self.logs / f"{name}.log").open("ab") as log:
            self.processes[name] = subprocess.Popen(  # noqa: S603
                [sys.executable, "-m", "vpp.cli", *args], env=self.env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def start_dispatcher(self, name: str) -> None:
        """Start (or restart) a dispatcher with its own metrics port."""
        port = self.metrics_ports.setdefault(name, free_port())
        self.launch(name, "dispatcher", "--metrics-port", str(port))
        self.wait_until(name, lambda: _answers(f"http://{HOST}:{port}/metrics"), START_TIMEOUT_S)

    def start(self) -> None:
        """Migrate, then start every process and wait until each is healthy."""
        self.vpp("migrate")
        self.launch("api", "serve", "--host", HOST, "--port", str(self.api_port), "--workers", str(self.api_workers))
        if self.market_workers:
            self.launch("market", "serve", "--host", HOST, "--port", str(self.market_port),
                        "--workers", str(self.market_workers))
        self.metrics_ports["worker"] = free_port()
        self.launch("worker", "worker", "--concurrency", "2", "--metrics-port", str(self.metrics_ports["worker"]))
        self.launch("beat", "beat")
        self.wait_until("api", lambda: _answers(f"{self.base_url}/health"), START_TIMEOUT_S)
        if self.market_workers:
            self.wait_until("market", lambda: _answers(f"{self.market_url}/health"), START_TIMEOUT_S)
        worker_metrics = f"http://{HOST}:{self.metrics_ports['worker']}/metrics"
        self.wait_until("worker", lambda: _answers(worker_metrics), START_TIMEOUT_S)
        self.start_dispatcher("dispatcher-a")

    def wait_until(self, name: str, ready: object, timeout_s: float) -> None:
        """Wait for ``ready()``; fail when the process dies or the time is up."""
        deadline = time.monotonic() + timeout_s
        while not (callable(ready) and ready()):
            process = self.processes[name]
            if process.poll() is not None:
                raise ServiceError(f"{name} exited with {process.returncode} while starting; see {self.logs}")
            if time.monotonic() > deadline:
                raise ServiceError(f"{name} not ready after {timeout_s:.0f} s; see {self.logs}")
            time.sleep(0.25)

    def kill(self, name: str) -> int:
        """SIGKILL ``name`` (no clean-up, no lease release); its pid."""
        process = self.processes[name]
        pid = process.pid
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        self.exits.setdefault(name, []).append(process.returncode)
        return pid

    def api_worker_pids(self, name: str = "api") -> list[int]:
        """The uvicorn worker processes under the supervisor ``name`` (api or market; spawned, not
        multiprocessing's helpers)."""
        workers = []
        for pid in _children(self.processes[name].pid):
            with contextlib.suppress(OSError):
                if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    workers.append(pid)
        return workers

    def api_serving(self, name: str = "api") -> bool:
        """Whether the API (or the market process) answers its health check."""
        return _answers(f"{self.market_url if name == 'market' else self.base_url}/health")

    def alive(self) -> dict[str, bool]:
        """Whether each process runs."""
        return {name: p.poll() is None for name, p in self.processes.items()}

    def stop(self, timeout_s: float = 30) -> dict[str, int | None]:
        """SIGTERM in the order of deploy/local (intake first, the worker last), SIGKILL after ``timeout_s``."""
        codes: dict[str, int | None] = {}
        for name in [*STOP_ORDER, *(n for n in self.processes if n not in STOP_ORDER)]:
            process = self.processes.get(name)
            if process is None:
                continue
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=timeout_s)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=10)
            codes[name] = process.returncode
        return codes

    def cleanup(self) -> None:
        """Make sure nothing of ours survives: SIGKILL whatever still runs, with its children."""
        for process in self.processes.values():
            for pid in [*_children(process.pid), process.pid]:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code in (200, 503)
    except httpx.TransportError:
        return False


def _children(parent: int) -> list[int]:
    """Every descendant of ``parent`` (Linux /proc)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                parents[int(entry)] = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
    found: list[int] = []
    frontier = [parent]
    while frontier:
        current = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == current and pid not in found:
                found.append(pid)
                frontier.append(pid)
    return found


def stack_env(base: Mapping[str, str], **settings: str) -> dict[str, str]:
    """The environment of the stack's processes: ours without any VPP_ or PROMETHEUS_ variable, then ``settings``."""
    env = {k: v for k, v in base.items() if not k.startswith(("VPP_", "PROMETHEUS_"))}
    env.update(settings)
    return env
