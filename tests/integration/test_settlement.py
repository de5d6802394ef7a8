"""Settlement on a real database (SQLite and PostgreSQL): persistence, re-runs, shares, reconciliation, API, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from tests.conftest import TEST_SECRET, make_key
from tests.integration.settlement_support import DAY, NOW, POOL, TZ, add_cdr, build_day
from vpp.config import Settings
from vpp.db import unit_of_work
from vpp.domain.errors import NotFound
from vpp.settlement import service
from vpp.settlement.tables import (
    SettlementActivationResult,
    SettlementIspResult,
    SettlementRun,
    SettlementSessionResult,
)


def _settle(factory: sessionmaker[Session]) -> dict[str, object]:
    with unit_of_work(factory) as db:
        return dict(service.settle(db, day=DAY, pool=POOL, time_zone=TZ, now=NOW).summary)


def _counts(factory: sessionmaker[Session]) -> list[int]:
    with factory() as db:
        return [int(db.scalar(select(func.count()).select_from(t)) or 0)
                for t in (SettlementRun, SettlementIspResult, SettlementActivationResult, SettlementSessionResult)]


def _sessions(factory: sessionmaker[Session]) -> list[SettlementSessionResult]:
    with factory() as db:
        return list(db.scalars(select(SettlementSessionResult).order_by(SettlementSessionResult.session_id)))


def test_a_settlement_run_twice_gives_the_same_result_and_no_duplicate_rows(
        session_factory: sessionmaker[Session]) -> None:
    build_day(session_factory)
    first = _settle(session_factory)
    counts = _counts(session_factory)
    rows = [(r.session_id, r.revenue_eur, r.flags) for r in _sessions(session_factory)]
    second = _settle(session_factory)
    assert first == second
    assert _counts(session_factory) == counts == [1, 96, 1, 3]
    assert [(r.session_id, r.revenue_eur, r.flags) for r in _sessions(session_factory)] == rows


def test_afrr_energy_payment_and_baseline_method_are_recorded(session_factory: sessionmaker[Session]) -> None:
    build_day(session_factory)
    summary = _settle(session_factory)
    afrr = summary["afrr"]
    assert isinstance(afrr, dict)
    assert afrr["activations"] == 1
    assert afrr["requested_mwh"] == pytest.approx(0.0165)
    assert afrr["counted_shortfall_mwh"] == 0.0
    assert summary["baseline_methods"] == {"afrr": "dispatch_baseline", "sessions": "uncontrolled_counterfactual",
                                           "orders": []}
    with session_factory() as db:
        isps = {r.isp: r for r in db.scalars(select(SettlementIspResult))}
    assert isps[41].afrr_price_source == "award" and isps[41].afrr_price_eur_per_mwh == 150.0
    # The responses stop when the request does; the ramp's tail has no measurement: a counted gap, not zero.
    assert isps[45].afrr_missing_steps > 0


def test_session_shares_sum_exactly_to_the_pool_totals(session_factory: sessionmaker[Session]) -> None:
    build_day(session_factory, with_gap=False)
    summary = _settle(session_factory)
    sessions = _sessions(session_factory)
    assert round(sum(r.revenue_eur for r in sessions), 2) == summary["attributed_revenue_eur"]
    assert summary["attributed_revenue_eur"] == summary["revenue_eur"]
    assert isinstance(summary["revenue_eur"], float) and summary["revenue_eur"] > 0
    assert summary["unattributed_eur"] == 0.0
    assert all(r.activation_kwh[0] is not None and r.activation_kwh[0] > 5.0 for r in sessions)
    assert all(r.baseline_method == "uncontrolled_counterfactual" for r in sessions)


def test_reconciliation_flags_injected_mismatches_and_gaps_and_excludes_them(
        session_factory: sessionmaker[Session]) -> None:
    day = build_day(session_factory)
    summary = _settle(session_factory)
    by_id = {r.session_id: r for r in _sessions(session_factory)}
    clean, mismatch, gap = (by_id[i] for i in day.session_ids)
    assert clean.flags == [] and not clean.excluded and clean.revenue_eur > 0
    assert "cdr_mismatch" in mismatch.flags and mismatch.excluded and mismatch.revenue_eur == 0.0
    assert mismatch.cdr_difference_kwh == pytest.approx(5.0)
    assert {"missing_period", "meter_gap_in_day"} <= set(gap.flags) and gap.excluded
    assert gap.metered_kwh is None and gap.activation_kwh == [None]
    day_ahead = summary["day_ahead"]
    assert isinstance(day_ahead, dict) and day_ahead["metered_gap_isps"] == 1


def test_an_unknown_pool_or_a_day_without_data_is_a_clear_not_found(session_factory: sessionmaker[Session]) -> None:
    with unit_of_work(session_factory) as db, pytest.raises(NotFound, match="nothing to settle"):
        service.settle(db, day=DAY, pool="zone:XX", time_zone=TZ, now=NOW)
    with unit_of_work(session_factory) as db:
        assert service.settle_day(db, day=DAY, time_zone=TZ, now=NOW) == []


def test_a_late_cdr_recomputes_the_settled_day_in_place(session_factory: sessionmaker[Session],
                                                         database_url: str, tmp_path: Path) -> None:
    from workers.runtime import Runtime, set_runtime
    from workers.tasks.settlement import recompute_for_cdr, settle_day

    day = build_day(session_factory, with_cdrs=False)
    settings = Settings(data_dir=tmp_path, database_url=database_url, secret_key=TEST_SECRET)
    set_runtime(Runtime(settings=settings, session_factory=session_factory))
    assert settle_day(day=DAY.isoformat())["settled"] == [POOL]
    assert all(r.cdr_energy_kwh is None for r in _sessions(session_factory))
    cdr_id = add_cdr(session_factory, day.connection_id, "S1", 50.0, NOW.replace(day=4, hour=8), 4)
    result = recompute_for_cdr(cdr_id=cdr_id)
    assert result["recomputed"] == [f"{DAY.isoformat()}/{POOL}"]
    assert _counts(session_factory)[0] == 1
    first = next(r for r in _sessions(session_factory) if r.session_id == day.session_ids[0])
    assert first.cdr_energy_kwh == 50.0 and "cdr_mismatch" in first.flags


def test_the_api_serves_summaries_reports_csv_and_the_plot(client: TestClient,
                                                          session_factory: sessionmaker[Session]) -> None:
    build_day(session_factory)
    trader = {"Authorization": f"Bearer {make_key(session_factory, 'trader')}"}
    base = f"/api/v1/settlement/days/{DAY.isoformat()}"
    missing = client.get(base, params={"pool": POOL}, headers=trader)
    assert missing.status_code == 404 and "vpp settle" in missing.json()["error"]["message"]
    run = client.post(f"{base}/run", json={"pool": POOL}, headers=trader)
    assert run.status_code == 200, run.text
    assert run.json()[0]["pool"] == POOL
    summary = client.get(base, params={"pool": POOL}, headers=trader).json()
    assert summary[0]["summary"]["sessions"]["count"] == 3
    isps = client.get(f"{base}/isps", params={"pool": POOL}, headers=trader).json()
    assert len(isps) == 96 and isps[40]["afrr_price_source"] == "award"
    assert "T" in isps[0]["isp_start"], "times are ISO 8601"
    sessions_csv = client.get(f"{base}/sessions", params={"pool": POOL, "format": "csv"}, headers=trader)
    assert sessions_csv.headers["content-type"].startswith("text/csv")
    assert sessions_csv.text.splitlines()[0].startswith("pool,session_id,charger")
    assert len(sessions_csv.text.splitlines()) == 4
    assert client.get(f"{base}/activations", params={"pool": POOL}, headers=trader).json()[0]["direction"] == "up"
    assert client.get(f"{base}/orders", params={"pool": POOL}, headers=trader).json() == []
    plot = client.get(f"{base}/plot.png", params={"pool": POOL}, headers=trader)
    assert plot.status_code == 200 and plot.content.startswith(b"\x89PNG")
    assert client.get(base, params={"pool": "zone:XX"}, headers=trader).status_code == 404
    dso = {"Authorization": f"Bearer {make_key(session_factory, 'dso')}"}
    refused = client.post("/api/v1/settlement/orders/NOPE/counterparty", headers=dso, json={
        "dso_domain": "dso.example", "congestion_point": "ean.871685900000000001", "period": DAY.isoformat(),
        "price_eur": "1", "penalty_eur": "0", "net_eur": "1", "isps": []})
    assert refused.status_code == 404 and "Unknown Reference" in refused.json()["error"]["message"]
    assert client.get(base, headers=dso).status_code == 403


def test_the_cli_prints_a_summary_and_writes_csv_and_png(session_factory: sessionmaker[Session], database_url: str,
                                                        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from vpp.cli import main

    build_day(session_factory)
    monkeypatch.setenv("VPP_DATABASE_URL", database_url)
    monkeypatch.setenv("VPP_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("VPP_SECRET_KEY", TEST_SECRET)
    assert main(["settle", "--day", DAY.isoformat(), "--out", str(tmp_path / "out")]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert [p["pool"] for p in printed["pools"]] == [POOL]
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert "settlement-2025-03-04-sessions.csv" in files and "settlement-2025-03-04-cpo_NL-CPA.png" in files
    assert main(["settle", "--day", "2025-01-01"]) == 0
    assert json.loads(capsys.readouterr().out)["pools"] == []
