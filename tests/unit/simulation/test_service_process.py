"""The simulated service's process does not outlive the simulation that started it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
# A stand-in for `vpp simulate`: starts the service's process as start_service_process does, prints its pid and
# waits to be killed. The service waits for its configuration on the stdin it inherits, whose other end the test
# holds: it stays open when the stand-in dies, as a service busy serving would not notice either.
PARENT = """
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-m", "sim.service_process", str(os.getpid())])
print(child.pid, flush=True)
time.sleep(120)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by init) counts as gone.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_the_service_process_exits_when_its_simulation_is_killed() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              cwd=ROOT, env=env)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    try:
        assert _alive(child)
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 20.0
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _alive(child), "the service's process outlived its simulation"
    finally:
        assert parent.stdin is not None
        parent.stdin.close()
        if _alive(child):
            os.kill(child, signal.SIGKILL)
