"""The service's process of the next simulation, started ahead of its configuration (standard library only).

A simulation's two processes each import the whole service (FastAPI, SQLAlchemy, pandas, the portfolio and the
adapters: seconds of CPU, the most of a short scenario's set-up when no bytecode is cached). Started by the
simulation when it starts the service (``start_world``), the service's process imported only after the simulating
process had imported its own modules and planned the scenario: one after the other, on one core. ``vpp simulate``
and ``vpp pilots`` call :func:`prelaunch` before they import the simulation, so the service's process imports on
the other core meanwhile; ``sim.service_process.start_service_process`` takes it (:func:`take`) and configures it
as it would configure a process it launched. Nothing else changes: the same process, module and configuration.

This module imports nothing but the standard library, so that the process starts before the caller's imports.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from typing import IO, Any

# The argument after the parent's pid that marks a service's process launched ahead (it imports while it waits).
SERVICE_ROLE = "service"

_pending: list[subprocess.Popen[bytes]] = []


def prelaunch() -> None:
    """Start ``python -m sim.service_process`` for the next simulation of this process, unless one waits already.

    It imports the service's modules, then waits for its configuration on stdin; one never configured (the run
    did not start) reads the end of its stdin when this process exits, and exits quietly."""
    if _pending and _pending[0].poll() is None:
        return
    _pending.clear()
    _pending.append(subprocess.Popen(  # noqa: S603 (this interpreter, a module of ours, fixed arguments)
        [sys.executable, "-m", "sim.service_process", str(os.getpid()), SERVICE_ROLE],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE))


def take() -> PrelaunchedProcess | None:
    """The process :func:`prelaunch` started (once), still waiting for its configuration; None without one."""
    if not _pending:
        return None
    process = _pending.pop()
    if process.poll() is not None:
        return None
    return PrelaunchedProcess(process)


class _Writer:
    """The stdin of a process started with ``subprocess``, as ``asyncio``'s process has it (write, drain, close)."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream

    def write(self, data: bytes) -> None:
        self.stream.write(data)

    async def drain(self) -> None:
        await asyncio.to_thread(self.stream.flush)

    def close(self) -> None:
        self.stream.close()


class _Reader:
    """The stdout of a process started with ``subprocess``, read a line at a time off the event loop."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream

    async def readline(self) -> bytes:
        return await asyncio.to_thread(self.stream.readline)


class PrelaunchedProcess:
    """A process started with ``subprocess`` (before the event loop ran) behind the part of ``asyncio``'s process
    interface the simulation uses: stdin, stdout's lines, returncode, kill and wait."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdin is not None and process.stdout is not None
        self.process = process
        self.stdin = _Writer(process.stdin)
        self.stdout = _Reader(process.stdout)

    @property
    def returncode(self) -> int | None:
        return self.process.poll()

    def kill(self) -> None:
        self.process.kill()

    async def wait(self) -> Any:
        return await asyncio.to_thread(self.process.wait)


__all__ = ["SERVICE_ROLE", "PrelaunchedProcess", "prelaunch", "take"]
