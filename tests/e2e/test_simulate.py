"""A small scenario end to end: service, CPOs over OCPI, TSO, DSO and exchange on one simulated clock.

Runs on SQLite in-process by default; against PostgreSQL and Redis when VPP_TEST_DATABASE_URL /
VPP_TEST_REDIS_URL are set (a fresh database per run), and under CI=true those must be set.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import IN_CI, _fresh_postgres_database
from vpp.simulation.kpis import build_series, compute_kpis
from vpp.simulation.report import render_report
from vpp.simulation.runner import run_scenario
from vpp.simulation.scenario import Scenario

SMALL = {
    "name": "e2e-small",
    "start": "2024-06-11",
    "days": 1,
    "seed": 7,
    "delivery_window": ["17:00", "19:00"],
    "warmup_hours": 0,
    "warmup_step_seconds": 3600,
    "step_seconds": 300,
    "cpos": [
        {"party": "NL/CPA", "locations": 3, "evses_per_location": 4, "evse_max_kw": 11, "category": "public",
         "sessions_per_evse_per_day": 1.5},
        {"party": "NL/CPB", "locations": 6, "evses_per_location": 1, "evse_max_kw": 11, "category": "home",
         "sessions_per_evse_per_day": 1.0},
    ],
    "congestion": [{"congestion_point": "871687120000000009", "cpos": ["NL/CPA"], "start": "17:00",
                    "end": "19:00", "max_kw": 25}],
    "afrr": {"enabled": True, "activations": [["18:00", "18:03"]], "tail_seconds": 20},
}


@pytest.fixture
def backend() -> Iterator[dict[str, Any]]:
    """Settings overrides: PostgreSQL/Redis when configured (required in CI), else embedded SQLite."""
    overrides: dict[str, Any] = {}
    redis_url = os.environ.get("VPP_TEST_REDIS_URL")
    if IN_CI and not (os.environ.get("VPP_TEST_DATABASE_URL") and redis_url):
        pytest.fail("VPP_TEST_DATABASE_URL and VPP_TEST_REDIS_URL must be set in CI")
    if redis_url:
        overrides["redis_url"] = redis_url
    if os.environ.get("VPP_TEST_DATABASE_URL"):
        for url in _fresh_postgres_database(os.environ["VPP_TEST_DATABASE_URL"]):
            overrides["database_url"] = url
            yield overrides
        return
    yield overrides


def test_a_small_scenario_meets_needs_respects_the_limit_and_records_every_activation(
    backend: dict[str, Any], tmp_path: Path
) -> None:
    scenario = Scenario.model_validate(SMALL)
    result = asyncio.run(run_scenario(scenario, progress=False, data_dir=tmp_path, settings_overrides=backend))
    series = build_series(result)
    kpis = compute_kpis(result, series)

    assert kpis["sessions_in_delivery"] >= 5
    assert kpis["sessions_feasible"] >= 1
    assert kpis["needs_met_pct"] == 100.0, kpis
    assert kpis["congestion_violation_isps"] == 0, kpis
    # Every 4-s setpoint step is stored and has a pool response recorded by the dispatcher.
    assert kpis["afrr_setpoints_sent"] == (180 + 20) // 4
    assert kpis["afrr_steps_recorded"] >= kpis["afrr_setpoints_sent"] - 1, kpis
    assert kpis["energy_delivered_kwh"] > 0
    # The service pulled every CPO's locations before the run (in production mode too: no background work lost).
    assert not [note for note in kpis["notes"] if "pulled" in note], kpis["notes"]
    html = render_report(kpis, series, result.timeline.zone, scenario.model_dump(mode="json"))
    assert "<svg" in html and "http://" not in html.replace("http://www.w3.org/2000/svg", "")


CURTAILED = {
    "name": "e2e-14a",
    "start": "2024-06-11",
    "days": 1,
    "seed": 14,
    "delivery_window": ["17:00", "19:00"],
    "warmup_hours": 2,
    "warmup_step_seconds": 3600,
    "step_seconds": 300,
    "cpos": [{"party": "DE/LEW", "locations": 12, "evses_per_location": 1, "evse_max_kw": 11, "category": "home",
              "sessions_per_evse_per_day": 1.5}],
    "congestion": [{"congestion_point": "DE-LEW-1", "cpos": ["DE/LEW"], "start": "17:00", "end": "19:00",
                    "signal": "curtailment", "max_kw_per_device": 4.2}],
    "afrr": {"enabled": False},
}


def test_every_curtailed_device_stays_within_its_curtailed_power(backend: dict[str, Any], tmp_path: Path) -> None:
    scenario = Scenario.model_validate(CURTAILED)
    result = asyncio.run(run_scenario(scenario, progress=False, data_dir=tmp_path, settings_overrides=backend))
    kpis = compute_kpis(result)

    # §14a is judged per device (each home), not on the point's sum: uncontrolled, the homes charging at 11 kW
    # break their 4.2 kW; controlled, every one of them stays within it in every ISP it charges.
    assert kpis["curtailment_device_isps_uncontrolled"] > 0, kpis
    assert kpis["curtailment_compliance_pct_uncontrolled"] < 100.0, kpis
    assert kpis["curtailment_device_isps"] > 0, kpis
    assert kpis["curtailment_compliance_pct"] == 100.0, kpis
    assert not [note for note in kpis["notes"] if "pulled" in note], kpis["notes"]
