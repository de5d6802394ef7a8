"""`vpp serve --workers N`: uvicorn's supervisor gives each worker 30 s (not its 5 s) to answer a ping, so that a
worker still importing the app on a loaded host is not killed and replaced in a loop (found by `vpp soak`)."""

from pathlib import Path
from typing import Any

import pytest
import uvicorn

from vpp import cli
from vpp.commands.service import WORKER_HEALTHCHECK_TIMEOUT_S


@pytest.fixture
def production_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: calls.append(kwargs))
    monkeypatch.setenv("VPP_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:1/none")
    monkeypatch.setenv("VPP_SECRET_KEY", "x" * 32)
    monkeypatch.setenv("VPP_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "metrics"))
    return calls


def test_workers_get_a_generous_health_check_timeout(production_env: list[dict[str, Any]]) -> None:
    assert cli.main(["serve", "--workers", "2"]) == 0
    assert production_env[-1]["workers"] == 2
    assert production_env[-1]["timeout_worker_healthcheck"] == WORKER_HEALTHCHECK_TIMEOUT_S == 30
    assert cli.main(["serve", "--workers", "2", "--worker-healthcheck-timeout", "12"]) == 0
    assert production_env[-1]["timeout_worker_healthcheck"] == 12


def test_a_timeout_below_one_second_is_refused(production_env: list[dict[str, Any]],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["serve", "--workers", "2", "--worker-healthcheck-timeout", "0"]) == 2
    assert "--worker-healthcheck-timeout must be at least 1 s" in capsys.readouterr().err
    assert production_env == []


def test_two_api_processes_on_one_machine_keep_their_metrics_apart(
    production_env: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # deploy/local runs the API twice (api and market): each empties its metrics directory at start, so they
    # must not share one.
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
    assert cli.main(["serve", "--port", "8000", "--workers", "2"]) == 0
    api = tmp_path / "metrics-api-8000"
    (api / "counter_1.db").write_bytes(b"samples of the api")
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")  # set by the first serve for its workers
    assert cli.main(["serve", "--port", "8001", "--workers", "2"]) == 0
    assert (tmp_path / "metrics-api-8001").is_dir()
    assert (api / "counter_1.db").exists(), "the market process left the api's samples alone"
