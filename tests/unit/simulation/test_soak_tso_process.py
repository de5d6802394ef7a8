"""The soak's TSO posts from a process of its own and hands each answer back as it comes."""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from sim.soak.load import SetpointSent
from sim.soak.tso_process import TsoProcess, decode, encode

ROOT = Path(__file__).resolve().parents[3]


def test_a_post_survives_its_json_line() -> None:
    for sent in (SetpointSent("zone:A", 7, 1000.25, 12.5), SetpointSent("zone:B", 8, 1004.0, None, "HTTP 503")):
        assert decode(encode(sent)) == sent


@pytest.fixture
def tso_endpoint() -> Iterator[tuple[str, list[dict[str, object]]]]:
    seen: list[dict[str, object]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append({"path": self.path, "auth": self.headers["Authorization"],
                         "request_id": self.headers["X-Request-Id"], **body})
            status = 201 if body["pool"] == "zone:A" else 503
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def test_the_child_posts_each_pool_and_reports_every_answer(tso_endpoint: tuple[str, list[dict[str, object]]]) -> None:
    url, seen = tso_endpoint
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    tso = TsoProcess(url, "vpp_secret_key_123", ["zone:A", "zone:B"], capacity_mw=0.05, env=env)

    async def soak() -> None:
        stop = asyncio.Event()
        await tso.start(first_seq=100)  # returns once the child is ready: it posts its first step right away
        running = asyncio.create_task(tso.run(stop))
        await asyncio.wait_for(tso.acked.wait(), timeout=60)
        for _ in range(600):  # the other pool's answer of the same step
            if len(tso.sent) >= 2:
                break
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.wait_for(running, timeout=30)

    asyncio.run(soak())
    by_pool = {s.pool: s for s in tso.sent if s.seq == 100}
    assert by_pool["zone:A"].latency_ms is not None and by_pool["zone:A"].error is None
    assert by_pool["zone:B"].latency_ms is None and by_pool["zone:B"].error == "HTTP 503"
    first = {str(r["pool"]): r for r in seen if r["seq"] == 100}
    assert first["zone:A"]["path"] == "/api/v1/market/afrr/setpoints"
    assert first["zone:A"]["auth"] == "Bearer vpp_secret_key_123"
    assert first["zone:A"]["request_id"] == "tso-zone:A-100"
