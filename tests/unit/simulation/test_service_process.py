"""The simulated service's process does not outlive the simulation that started it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

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


def _serves(url: str) -> bool:
    import httpx

    try:
        httpx.get(f"{url}/health", timeout=2.0)
    except httpx.TransportError:
        return False
    return True


def test_the_ocpi_intake_runs_in_processes_of_its_own_on_the_same_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With VPP_SIM_INTAKE_PROCESSES=2 peers are given the intake's URL: it answers OCPI with what the service's
    process wrote (the invitation's token A), the simulation's API stays with the service, and stopping the
    service stops the intake."""
    monkeypatch.setenv("VPP_SIM_INTAKE_PROCESSES", "2")
    import asyncio
    from datetime import UTC, datetime
    from urllib.parse import urlsplit

    import httpx

    from adapters.ocpi.v2_2_1.transport import authorization_header
    from sim.service_process import CONTROL_HEADER, start_service_process, stop_service_process

    async def scenario() -> tuple[str, str]:
        handle = await start_service_process(tmp_path, datetime(2024, 6, 11, tzinfo=UTC), {})
        control = httpx.AsyncClient(base_url=handle.url, headers={CONTROL_HEADER: handle.control_token}, timeout=30)
        try:
            async with httpx.AsyncClient(base_url=handle.url, timeout=30, headers={
                    "Authorization": f"Bearer {handle.keys['admin']}"}) as admin:
                invite = await admin.post("/api/v1/ocpi/connections", json={"name": "a CPO"})
                assert invite.status_code < 300, invite.text
                body = invite.json()
            versions_url = body["versions_url"]
            intake = "{0.scheme}://{0.netloc}".format(urlsplit(versions_url))
            assert intake != handle.url
            async with httpx.AsyncClient(timeout=30) as peer:
                answer = await peer.get(versions_url, headers={"Authorization": authorization_header(body["token_a"])})
            assert answer.status_code == 200, answer.text
            assert answer.json()["status_code"] == 1000
            assert any(v["version"] == "2.2.1" for v in answer.json()["data"])
            # The service's clock moves the intake's too.
            moved = await control.post("/_sim/clock", json={"now": "2024-06-11T01:00:00+00:00"})
            assert moved.status_code == 200
        finally:
            await stop_service_process(handle, control)
            await control.aclose()
        return handle.url, intake

    service, intake = asyncio.run(scenario())
    assert not _serves(service)
    assert not _serves(intake)


def test_an_intake_process_launched_ahead_waits_for_its_configuration_and_is_ended_when_abandoned(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The service's process launches its intake processes before it imports and migrates: such a process imports
    and then waits for its configuration (it has not served, nor exited, meanwhile); one never configured (the
    service failed to start) is ended by ``_abandon``."""
    import asyncio

    from sim.service_process import INTAKE_ROLE, _abandon, _launch

    monkeypatch.setenv("PYTHONPATH", str(ROOT))

    async def scenario() -> tuple[int | None, int | None]:
        process = await _launch(INTAKE_ROLE)
        try:
            await asyncio.sleep(1.0)
            waiting = process.returncode
        finally:
            await _abandon(process)
        return waiting, process.returncode

    waiting, ended = asyncio.run(scenario())
    assert waiting is None
    assert ended is not None


def test_a_service_process_launched_ahead_is_the_one_the_simulation_configures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``vpp simulate`` and ``vpp pilots`` launch the service's process before they import the simulation
    (``sim.prelaunch``): ``start_service_process`` takes that process (no second one) and it serves as a process
    launched there would; once taken, the next start launches its own."""
    import asyncio
    from datetime import UTC, datetime

    import httpx

    from sim import prelaunch
    from sim.service_process import CONTROL_HEADER, start_service_process, stop_service_process

    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    prelaunch.prelaunch()
    ahead = prelaunch._pending[0]
    prelaunch.prelaunch()  # one waits already: no second one
    assert prelaunch._pending == [ahead]

    async def scenario() -> int:
        handle = await start_service_process(tmp_path, datetime(2024, 6, 11, tzinfo=UTC), {})
        control = httpx.AsyncClient(base_url=handle.url, headers={CONTROL_HEADER: handle.control_token}, timeout=30)
        try:
            async with httpx.AsyncClient(base_url=handle.url, timeout=30, headers={
                    "Authorization": f"Bearer {handle.keys['admin']}"}) as admin:
                answer = await admin.get("/api/v1/ocpi/connections")
            assert answer.status_code == 200, answer.text
            pid: int = handle.process.process.pid
        finally:
            await stop_service_process(handle, control)
            await control.aclose()
        return pid

    assert asyncio.run(scenario()) == ahead.pid
    assert ahead.wait(10) == 0
    assert prelaunch.take() is None


def test_a_service_process_launched_ahead_and_never_configured_exits_quietly() -> None:
    """A run that ends before it starts its service (a refused data directory, an error) leaves the process
    launched ahead with the end of its stdin: it exits at once, without a traceback."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, "-m", "sim.service_process", str(os.getpid()), "service"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
                               env=env)
    out, err = process.communicate(b"", timeout=120)
    assert process.returncode == 0
    assert out == b""
    assert b"Traceback" not in err
