"""The deployment files agree with the code: compose runs real `vpp` subcommands with real settings and no
secrets; the alert rules parse and name only metrics the processes export."""

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from pydantic import SecretStr

from vpp.api.app import create_app
from vpp.cli import build_parser
from vpp.config import Settings

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"
OUR_IMAGE = "vpp-aggregator"
# Names Prometheus itself provides, and PromQL words that look like metric names.
PROMETHEUS_BUILTINS = {"up"}
PROMQL_WORDS = {
    "sum", "max", "min", "avg", "by", "on", "and", "or", "unless", "rate", "abs", "absent", "histogram_quantile",
    "le", "without", "group_left", "ignoring", "humanizeDuration",
}


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "docker" / "compose.yaml").read_text())
    return loaded


def _our_services() -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in _compose()["services"].items()
            if str(svc.get("image", "")).startswith(OUR_IMAGE) or "build" in svc}


def _subcommands() -> set[str]:
    parser = build_parser()
    action = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return set(action.choices)  # type: ignore[union-attr]


def test_compose_has_every_process_of_the_stack_and_prometheus() -> None:
    services = _compose()["services"]
    assert {"api", "market", "worker", "beat", "dispatcher", "postgres", "redis", "prometheus"} <= set(services)
    assert {"api", "market", "worker", "beat", "dispatcher"} <= set(_our_services())


def test_every_service_on_our_image_runs_an_existing_vpp_subcommand() -> None:
    dockerfile = (DEPLOY / "docker" / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["vpp"]' in dockerfile and "FROM python:3.11-slim" in dockerfile
    assert re.search(r"^USER (?!root)\w+", dockerfile, re.MULTILINE), "the image runs as a non-root user"
    subcommands = _subcommands()
    for name, service in _our_services().items():
        command = service["command"]
        assert isinstance(command, list) and command[0] in subcommands, (name, command)
        build_parser().parse_args(command)  # the options exist too


def test_beat_runs_exactly_once() -> None:
    beat = _compose()["services"]["beat"]
    assert beat.get("deploy", {}).get("replicas", 1) == 1


def test_every_vpp_variable_in_compose_is_a_setting_and_no_secret_is_written_down() -> None:
    fields = set(Settings.model_fields)
    secret_fields = {name for name, f in Settings.model_fields.items() if "SecretStr" in str(f.annotation)}
    for name, service in _our_services().items():
        environment = service.get("environment", {})
        assert isinstance(environment, dict), name
        for variable, value in environment.items():
            if variable.startswith("VPP_"):
                field = variable.removeprefix("VPP_").lower()
                assert field in fields, f"{name}: {variable} is not a Settings field"
                assert field not in secret_fields, f"{name}: the secret {variable} belongs in the env_file"
            assert "@" not in str(value) or "${" in str(value).split("@")[0], f"{name}: credentials in {variable}"
        assert service.get("env_file"), f"{name} takes its secrets from an env_file"
    example = (DEPLOY / "docker" / "vpp.env.example").read_text()
    for line in example.splitlines():
        if line.startswith("VPP_"):
            variable, _, value = line.partition("=")
            assert variable.removeprefix("VPP_").lower() in fields, variable
            if variable.removeprefix("VPP_").lower() in secret_fields:
                assert value == "", f"{variable} must be empty in the example"
    for service in _compose()["services"].values():
        for variable, value in (service.get("environment") or {}).items():
            if re.search(r"PASSWORD|SECRET|TOKEN|KEY", variable):
                assert str(value).startswith("${"), f"{variable} is set literally"


def _rules() -> list[dict[str, Any]]:
    document = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    rules = [rule for group in document["groups"] for rule in group["rules"]]
    assert rules and all({"alert", "expr"} <= set(rule) for rule in rules)
    return rules


def _metric_names(expr: str) -> set[str]:
    without_strings = re.sub(r'"[^"]*"', '""', expr)
    without_labels = re.sub(r"\{[^}]*\}", "", without_strings)
    without_ranges = re.sub(r"\[[^\]]*\]", "", without_labels)
    words = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", without_ranges))
    by_lists = set(re.findall(r"(?:by|on|without|ignoring)\s*\(([^)]*)\)", without_ranges))
    labels = {w.strip() for group in by_lists for w in group.split(",")}
    return words - PROMQL_WORDS - labels


@pytest.fixture(scope="module")
def exposed(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """Metric names of a scrape of the in-process registry through /metrics (with the operator gauges)."""
    settings = Settings(data_dir=tmp_path_factory.mktemp("metrics"), secret_key=SecretStr("test-only"))
    from vpp.db import create_db_engine
    from vpp.migrate import upgrade

    upgrade(create_db_engine(settings.resolved_database_url), "head")
    with TestClient(create_app(settings, background=False)) as client:
        body = client.get("/metrics").text
    names = set(re.findall(r"^# TYPE (\S+) (\S+)", body, re.MULTILINE))
    out: set[str] = set()
    for name, kind in names:
        out.add(name)
        if kind == "histogram":
            out |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
        if kind == "counter":
            out.add(f"{name}_total" if not name.endswith("_total") else name)
    return out


def test_the_alert_rules_parse_and_every_metric_they_use_is_exported(exposed: set[str]) -> None:
    used: set[str] = set()
    for rule in _rules():
        used |= _metric_names(rule["expr"])
    assert used, "the rules use metrics"
    assert used - exposed - PROMETHEUS_BUILTINS == set()


def test_a_metric_the_code_does_not_export_is_caught() -> None:
    assert _metric_names('max by (job) (vpp_nope_seconds{job="x"}[5m]) > on (job) 3 * up') == {"vpp_nope_seconds", "up"}


def test_the_scrape_config_covers_api_worker_and_dispatcher_and_loads_the_rules() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"vpp-api", "vpp-worker", "vpp-dispatcher"}
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]
    ports = {job: t.split(":")[1] for job, j in jobs.items() for t in j["static_configs"][0]["targets"]}
    compose = _compose()["services"]
    assert ports["vpp-worker"] in compose["worker"]["command"]
    assert ports["vpp-dispatcher"] in compose["dispatcher"]["command"]
