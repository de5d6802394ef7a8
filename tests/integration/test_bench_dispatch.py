"""``vpp bench dispatch`` end to end at a small size: embedded (SQLite, no bus) and production (PostgreSQL, Redis).

The benchmark's figures are timings, not asserted here; what is asserted is that it measured what it claims: every
changed limit became one request, was answered and got its result, in both modes.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import require_service
from vpp.benchmarks.dispatch import run_http_dispatch_bench

pytestmark = pytest.mark.slow


def _check(figures: dict[str, Any], sessions: int) -> None:
    assert figures["changed"] > 0
    assert figures["requests"] == figures["changed"]
    assert figures["results"] == figures["requests"]
    assert figures["statuses"] == {"applied": figures["changed"]}
    assert 0 < figures["seconds_to_last_ack"] <= figures["seconds_to_last_result"]
    assert figures["changed"] <= sessions


def test_the_dispatch_bench_embedded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VPP_DATABASE_URL", raising=False)
    monkeypatch.delenv("VPP_REDIS_URL", raising=False)
    out = run_http_dispatch_bench(120, cpos=2)
    assert out["sessions"] == 120
    assert out["database"].startswith("SQLite")
    assert out["activation_bus"].startswith("none")
    assert out["first_cycle"]["changed"] == 120  # every session gets its first limit
    _check(out["first_cycle"], 120)
    _check(out, 120)


def test_the_dispatch_bench_with_postgresql_and_redis(monkeypatch: pytest.MonkeyPatch, redis_url: str) -> None:
    monkeypatch.setenv("VPP_DATABASE_URL", require_service("VPP_TEST_DATABASE_URL", "PostgreSQL"))
    monkeypatch.setenv("VPP_REDIS_URL", redis_url)
    out = run_http_dispatch_bench(120, cpos=2)
    assert out["database"].startswith("PostgreSQL")
    assert out["activation_bus"].startswith("Redis")
    # The step's cycle was run by the dispatcher's own loop on the doorbell, after the setpoint was stored.
    assert out["setpoint_ack_seconds"] > 0 and 0 < out["cycle_started_seconds"] < out["seconds_to_last_ack"]
    _check(out["first_cycle"], 120)
    _check(out, 120)
