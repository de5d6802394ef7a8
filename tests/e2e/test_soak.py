"""`vpp soak`, short: the stack of deploy/local on its own PostgreSQL and Redis (started here from initdb/pg_ctl and
redis-server, never the machine's), under load while a dispatcher is SIGKILLed, Redis and PostgreSQL restart, an
API worker is killed and a CPO answers 5xx, too late and vanishes. Nothing acknowledged may be lost, no profile may
go out twice, no secret may appear in the service's logs, and nothing may survive the run.

Runs where the binaries exist (CI and most newcomers' machines); the long soak's figures are in docs/operations.md.
"""

from pathlib import Path

import pytest

from sim.soak import SoakConfig, binaries_available
from sim.soak.run import Soak, lines_with_secrets

pytestmark = [
    pytest.mark.slow,
    pytest.mark.soak,
    pytest.mark.skipif(not binaries_available(), reason="needs initdb/pg_ctl and redis-server"),
]


def test_a_short_soak_loses_nothing_acknowledged_and_logs_no_secret(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    soak = Soak(SoakConfig(minutes=0.5, cars=9000, ingest_sessions=200, evses_per_cpo=8, keep=logs))
    report = soak.run()

    assert report["left_running"] == [], "every process and port of the run is gone"
    assert report["setpoints_acknowledged"] > 0 and report["readings_acknowledged"] > 0
    assert report["setpoints_lost"] == 0 and report["readings_lost"] == 0, report
    assert report["setpoints_persisted"] == report["setpoints_acknowledged"]
    assert report["profiles_sent_twice"] == 0
    assert report["lease_takeovers"] >= 1 and report["lease_takeover_max_s"] is not None
    faults = [f["name"] for f in report["faults"]]
    assert faults == ["dispatcher_sigkill", "redis_restart", "postgres_restart", "api_worker_sigkill",
                      "cpo_5xx_timeout_vanish"], report["faults"]
    assert not any("error" in f for f in report["faults"]), report["faults"]
    for key in ("setpoints_acknowledged", "setpoints_lost", "readings_acknowledged", "readings_lost",
                "profiles_sent_twice", "lease_takeover_max_s", "ack_p99_ms", "ack_p99_ms_in_faults",
                "setpoints_applied", "dispatch_gap_max_s"):
        assert key in report

    # The service's logs, grepped here for every token and key the run handed out (as is and Base64-encoded).
    service_logs = sorted(logs.glob("*.log"))
    assert {p.stem for p in service_logs} >= {"api", "market", "worker", "beat", "dispatcher-a", "dispatcher-b"}
    assert sum(p.stat().st_size for p in service_logs) > 10_000, "the logs carry the run"
    secrets = soak.known_secrets()
    assert len(secrets) >= 8  # keys, API keys, tokens A, the telemetry CPO's token, the tokens we present
    assert lines_with_secrets(service_logs, secrets) == 0
    assert report["secrets_in_logs"] == 0


def test_the_log_search_finds_a_secret_in_clear_or_base64(tmp_path: Path) -> None:
    log = tmp_path / "api.log"
    log.write_text('{"msg": "ok"}\n{"msg": "Authorization: Token c2VjcmV0LXRva2VuLTEyMw=="}\n{"key": "vpp_abcdefgh"}\n')
    assert lines_with_secrets([log], ["secret-token-123"]) == 1
    assert lines_with_secrets([log], ["vpp_abcdefgh", "secret-token-123"]) == 2
    assert lines_with_secrets([log], ["short"]) == 0
