import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from adapters.ocpi.v2_2_1.transport import encode_token
from sim.cpo.app import create_cpo_app
from sim.cpo.config import CpoConfig


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _vpp(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vpp.cli", *args], env=env, capture_output=True, text=True,
                          timeout=120, check=False)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """``vpp serve`` on embedded defaults, with its public URL set to where it listens."""
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("VPP_")}
    env.update({"VPP_DATA_DIR": str(tmp_path), "VPP_LOG_FORMAT": "text", "VPP_PUBLIC_URL": base})
    server = subprocess.Popen([sys.executable, "-m", "vpp.cli", "serve", "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 90  # a cold start beside the other xdist worker's tests
        while True:
            try:
                httpx.get(f"{base}/health", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "vpp serve did not start"
                time.sleep(0.2)
        yield base, env
    finally:
        server.terminate()
        server.wait(timeout=20)


def test_vpp_ocpi_invite_prints_token_a_and_our_versions_url_that_accept_it(
    served: tuple[str, dict[str, str]],
) -> None:
    base, env = served
    invited = _vpp("ocpi", "invite", "--name", "cpo-one", "--json", env=env)
    assert invited.returncode == 0, invited.stderr
    printed = json.loads(invited.stdout)
    assert set(printed) == {"token_a", "versions_url"} and printed["versions_url"] == f"{base}/ocpi/versions"
    ok = httpx.get(printed["versions_url"], headers={"Authorization": f"Token {encode_token(printed['token_a'])}"})
    assert ok.status_code == 200 and ok.json()["data"][0]["version"] == "2.2.1"
    assert httpx.get(printed["versions_url"]).status_code == 401


def test_vpp_ocpi_register_completes_the_handshake_with_a_served_sim_cpo(served: tuple[str, dict[str, str]]) -> None:
    _base, env = served
    port = _free_port()
    cpo = create_cpo_app(CpoConfig(base_url=f"http://127.0.0.1:{port}", token_a="sim-token-a", auto_arrivals=False))
    server = uvicorn.Server(uvicorn.Config(cpo, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.05)
        registered = _vpp("ocpi", "register", "--versions-url", f"http://127.0.0.1:{port}/ocpi/versions",
                          "--token-a", "sim-token-a", "--name", "sim", env=env)
        assert registered.returncode == 0, registered.stderr
        assert json.loads(registered.stdout)["status"] == "connected"
        listed = json.loads(_vpp("ocpi", "list", env=env).stdout)
        assert [(c["name"], c["status"], c["initiated_by"]) for c in listed] == [("sim", "connected", "us")]
        state = httpx.get(f"http://127.0.0.1:{port}/admin/state").json()
        assert state["connections"] == [{"party": "NL/VPP", "versions_url": f"{_base}/ocpi/versions"}]
    finally:
        server.should_exit = True
        thread.join(timeout=10)
