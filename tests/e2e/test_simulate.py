"""A small scenario end to end: service, CPOs over OCPI, TSO, DSO and exchange on one simulated clock.

Runs on SQLite in-process by default; against PostgreSQL and Redis when VPP_TEST_DATABASE_URL /
VPP_TEST_REDIS_URL are set (a fresh database per run), and under CI=true those must be set.
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from sim.world import World
from tests.conftest import IN_CI, TEST_SECRET, _fresh_postgres_database
from vpp.config import Settings
from vpp.db import create_db_engine, create_session_factory, unit_of_work
from vpp.settlement import reports
from vpp.settlement import service as settlement
from vpp.simulation.kpis import SESSION_COLUMNS, build_series, compute_kpis, session_outcomes, sessions_csv
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
    # Like for like: every session of the window is followed until it leaves, so both twins deliver the same
    # energy, and the perfect-foresight optimum (the same energy) pays no more than either.
    assert abs(kpis["energy_delivered_kwh"] - kpis["energy_uncontrolled_kwh"]) <= 0.01 * kpis[
        "energy_uncontrolled_kwh"], kpis
    assert kpis["energy_perfect_foresight_kwh"] == pytest.approx(kpis["energy_uncontrolled_kwh"], rel=1e-3)
    assert kpis["price_paid_eur_per_mwh_perfect_foresight"] <= kpis["price_paid_eur_per_mwh"] + 1e-6, kpis
    assert kpis["price_paid_eur_per_mwh_perfect_foresight"] <= kpis["price_paid_eur_per_mwh_uncontrolled"], kpis
    assert kpis["follow_end"] > kpis["delivery_start"]
    # sessions.csv: one row per judged session, counted as needs_met_pct counts them.
    outcomes = session_outcomes(result)
    rows = list(csv.DictReader(io.StringIO(sessions_csv(outcomes))))
    assert len(rows) == kpis["sessions_judged"] and tuple(rows[0]) == SESSION_COLUMNS
    assert sum(int(r["feasible"]) for r in rows) == kpis["sessions_feasible"]
    assert 100.0 * sum(int(r["met"]) for r in rows) / kpis["sessions_feasible"] == kpis["needs_met_pct"]
    assert all(float(r["delivered_kwh"]) <= float(r["deliverable_kwh"]) + 0.5 for r in rows), rows
    # The service pulled every CPO's locations before the run (in production mode too: no background work lost).
    assert not [note for note in kpis["notes"] if "pulled" in note], kpis["notes"]
    html = render_report(kpis, series, result.timeline.zone, scenario.model_dump(mode="json"), cars=result.car_sample)
    # One file: the charts' containers and their data inline, nothing fetched (tests/e2e/test_web_report.py draws it).
    assert 'id="chart-pool"' in html and 'id="chart-car-0"' in html and not re.search(r"(src|href)=\S*//", html)
    _assert_the_day_is_settled(backend, tmp_path, kpis)


def _assert_the_day_is_settled(backend: dict[str, Any], data_dir: Path, kpis: dict[str, Any]) -> None:
    """The day settles from what the service recorded: every ISP of the delivery window with its metered energy
    (what the cars drew), every 4-s step of the aFRR window, and nothing paid for an activation not awarded."""
    settings = Settings(data_dir=data_dir, database_url=backend.get("database_url"), redis_url=None,
                        secret_key=TEST_SECRET)  # type: ignore[arg-type]
    engine = create_db_engine(settings.resolved_database_url, pool_size=1)
    day = date(2024, 6, 11)
    try:
        with unit_of_work(create_session_factory(engine)) as db:
            settlement.settle_day(db, day=day, pool="zone:NL", time_zone=settings.market_timezone)
            rows = {kind: reports.rows(db, kind, day, "zone:NL") for kind in ("isps", "activations", "sessions")}
    finally:
        engine.dispose()
    delivery = (datetime(2024, 6, 11, 15, 0, tzinfo=UTC), datetime(2024, 6, 11, 17, 0, tzinfo=UTC))
    isps = [row for row in rows["isps"] if delivery[0] <= row["isp_start"] < delivery[1]]
    assert len(isps) == 8, rows["isps"]
    metered_kwh = 1000.0 * sum(row["metered_mwh"] or 0.0 for row in isps)
    window_kwh = kpis["energy_delivered_kwh_window"]
    assert abs(metered_kwh - window_kwh) <= 0.05 * window_kwh, metered_kwh
    window = [row for row in isps if row["isp_start"] == datetime(2024, 6, 11, 16, 0, tzinfo=UTC)]
    assert window and window[0]["afrr_missing_steps"] == 0, window
    assert rows["sessions"], rows
    if not kpis["afrr_awarded_mw"]:
        # Too small a pool for the 1 MW minimum bid: its setpoints were clipped to 0 at the intake.
        assert all(row["requested_mwh"] == 0.0 for row in rows["activations"]), rows["activations"]


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


BEHIND_THE_METER = {
    "name": "e2e-sites",
    "start": "2024-06-11",
    "days": 1,
    "seed": 9,
    "timezone": "Europe/Paris",
    "delivery_window": ["16:00", "20:00"],
    "warmup_hours": 0,
    "warmup_step_seconds": 3600,
    "step_seconds": 900,
    "report_period_seconds": 900,
    "follow_hours": 4,
    "dayahead": False,
    "cpos": [{"party": "FR/CLM", "locations": 3, "evses_per_location": 1, "evse_max_kw": 7, "category": "home",
              "sessions_per_evse_per_day": 1.0, "arrival_window": ["16:00", "17:00"], "dwell_hours": [3, 4]}],
    "sites": [{"cpo": "FR/CLM", "pv_kwp": 4, "load": "flat", "load_kw": 4.5, "subscription_kva": 9,
               "battery": {"capacity_kwh": 5, "power_kw": 2.5, "soc_pct": 80},
               "tariff": {"timezone": "Europe/Paris", "periods": [
                   {"name": "peak", "start": "16:00", "end": "20:00", "price_eur_per_kwh": 0.40},
                   {"name": "off-peak", "start": "20:00", "end": "16:00", "price_eur_per_kwh": 0.15}]}}],
    "afrr": {"enabled": False},
}


def test_sites_behind_the_meter_keep_their_subscription_and_report_their_bill(
    backend: dict[str, Any], tmp_path: Path
) -> None:
    scenario = Scenario.model_validate(BEHIND_THE_METER)
    result = asyncio.run(run_scenario(scenario, progress=False, data_dir=tmp_path, settings_overrides=backend))
    kpis = compute_kpis(result)
    # 4.5 kW of house under 9 kVA leaves 4.5 kW of a 7 kW charger: uncontrolled the cars break the subscription,
    # controlled they share what the house leaves; the battery, charged at 0.15 overnight, feeds the house in the
    # 16:00-20:00 peak (0.40) and leaves the cars its room.
    assert kpis["subscription_exceeded_isps_uncontrolled"] > 0, kpis
    assert kpis["subscription_exceeded_isps"] == 0, kpis
    # The subscription outranks the needs (a breaker trips): what the cars got is what fitted under it.
    assert kpis["energy_delivered_kwh"] > 0, kpis
    assert kpis["battery_cycles"] is not None and kpis["battery_cycles"] > 0, kpis
    assert set(kpis["bill_eur"]) == {"energy", "export", "capacity", "battery_cycles", "v2g_cycles", "total"}
    assert kpis["bill_eur"]["total"] < kpis["bill_eur_uncontrolled"]["total"], kpis


TINY = {
    "name": "e2e-tiny",
    "start": "2024-06-11",
    "days": 1,
    "seed": 3,
    "delivery_window": ["17:00", "18:00"],
    "warmup_hours": 0,
    "warmup_step_seconds": 3600,
    "step_seconds": 300,
    "cpos": [{"party": "NL/CPT", "locations": 2, "evses_per_location": 4, "evse_max_kw": 11, "category": "public",
              "sessions_per_evse_per_day": 2.0}],
    "congestion": [{"congestion_point": "871687120000000010", "cpos": ["NL/CPT"], "start": "17:00",
                    "end": "18:00", "max_kw": 15}],
    "afrr": {"enabled": True, "activations": [["17:30", "17:32"]], "tail_seconds": 8, "telemetry_seconds": 8},
}


def test_a_run_gives_the_same_figures_however_slowly_the_machine_runs_it(
    backend: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The service's caches, leases and re-plans follow the simulated clock: a run whose parties take seconds of
    wall time between some of the dispatcher's steps (a slow, loaded machine) gives the same KPIs as a quick one."""
    scenario = Scenario.model_validate(TINY)
    quick = compute_kpis(asyncio.run(run_scenario(scenario, progress=False, data_dir=tmp_path / "quick",
                                                  settings_overrides=backend)))
    dispatch = World.dispatch
    steps = paused = 0

    async def slow_dispatch(self: World, now: datetime) -> None:
        nonlocal steps, paused
        steps += 1
        if steps % 5 == 0 and steps <= 30:
            # Longer than the fleet cache (2 s) and a third of the production lease TTL, in wall time.
            await asyncio.sleep(2.5)
            paused += 1
        await dispatch(self, now)

    monkeypatch.setattr(World, "dispatch", slow_dispatch)
    fresh = [backend] if not backend.get("database_url") else (
        {**backend, "database_url": url} for url in _fresh_postgres_database(os.environ["VPP_TEST_DATABASE_URL"]))
    for overrides in fresh:
        slow = compute_kpis(asyncio.run(run_scenario(scenario, progress=False, data_dir=tmp_path / "slow",
                                                     settings_overrides=overrides)))

    assert steps > 30 and paused == 6
    assert slow["sessions_in_delivery"] >= 4 and slow["afrr_setpoints_sent"] > 0
    different = {key: (quick[key], slow[key]) for key in quick
                 if key not in ("wall_seconds", "notes") and quick[key] != slow[key]}
    assert not different, different
