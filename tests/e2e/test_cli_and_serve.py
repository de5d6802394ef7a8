import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _vpp(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vpp.cli", *args], env=env, capture_output=True, text=True,
                          timeout=120, check=False)


def test_vpp_serve_on_embedded_defaults_answers_health_metrics_and_enforces_roles(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VPP_")}
    env.update({"VPP_DATA_DIR": str(tmp_path), "VPP_LOG_FORMAT": "text"})
    created = _vpp("apikey", "create", "--role", "trader", "--name", "desk", "--json", env=env)
    assert created.returncode == 0, created.stderr
    trader = json.loads(created.stdout)
    assert trader["role"] == "trader" and trader["key"].startswith("vpp_")
    bad = _vpp("apikey", "create", "--role", "trader", "--name", " ", env=env)
    assert bad.returncode == 2 and "name must not be empty" in bad.stderr

    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "vpp.cli", "serve", "--port", str(port)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90  # a cold start beside the other xdist worker's tests
        while True:
            try:
                health = httpx.get(f"{base}/health", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "vpp serve did not start"
                time.sleep(0.2)
        assert health.status_code == 200 and health.json()["mode"] == "embedded"
        assert "vpp_http_requests_total" in httpx.get(f"{base}/metrics").text
        assert httpx.get(f"{base}/api/v1/apikeys").status_code == 401
        trader_auth = {"Authorization": f"Bearer {trader['key']}"}
        assert httpx.get(f"{base}/api/v1/apikeys", headers=trader_auth).status_code == 403
        admin = json.loads(_vpp("apikey", "create", "--role", "admin", "--name", "ops", "--json", env=env).stdout)
        listed = httpx.get(f"{base}/api/v1/apikeys", headers={"Authorization": f"Bearer {admin['key']}"})
        assert listed.status_code == 200 and {k["name"] for k in listed.json()} >= {"desk", "ops"}
        revoked = _vpp("apikey", "revoke", trader["id"], env=env)
        assert revoked.returncode == 0, revoked.stderr
    finally:
        server.terminate()
        server.wait(timeout=20)
