"""The bid workflow over HTTP on SQLite and PostgreSQL: build, adjust, submit, export, awards, commitments, audit.

Until the lead's Alembic revision for ``bids``/``bid_audit`` lands, the database comes from
``metadata.create_all``: a SQLite file, and on PostgreSQL a schema of its own (``vpp_bids_test``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from lxml import etree
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from adapters.markets.entsoe import validate
from sim.exchange import clear_curve_order
from tests.conftest import TEST_SECRET, make_key
from tests.unit.bids.fakes import FakePortfolioView
from vpp.api.app import create_app
from vpp.bids.tables import Bid
from vpp.config import Settings
from vpp.db import unit_of_work
from vpp.jobs.tables import JobRun
from workers.runtime import Runtime, set_runtime
from workers.tasks import bids as bid_tasks

POOL = "zone:NL"
DAY = date(2030, 6, 3)  # gate closure 2030-06-02 10:00 UTC, still ahead


@pytest.fixture
def bids_engine(engine: Engine) -> Engine:
    """The shared migrated database of the backend under test."""
    return engine


@pytest.fixture
def factory(session_factory: sessionmaker[Session]) -> sessionmaker[Session]:
    """Sessions on the shared database, emptied after the test."""
    return session_factory


@pytest.fixture
def portfolio() -> FakePortfolioView:
    return FakePortfolioView()


@pytest.fixture
def bids_app(bids_engine: Engine, factory: sessionmaker[Session], tmp_path: Path,
             portfolio: FakePortfolioView) -> FastAPI:
    settings = Settings(data_dir=tmp_path, secret_key=TEST_SECRET)
    app = create_app(settings, engine=bids_engine, session_factory=factory, background=False)
    app.state.portfolio_view = portfolio
    return app


@pytest.fixture
def api(bids_app: FastAPI, factory: sessionmaker[Session]) -> Iterator[tuple[TestClient, dict[str, str]]]:
    headers = {"Authorization": f"Bearer {make_key(factory, 'trader')}"}
    with TestClient(bids_app) as client:
        yield client, headers


def _build(api: tuple[TestClient, dict[str, str]], market: str, **body: Any) -> Any:
    client, headers = api
    return client.post(f"/api/v1/bids/{market}/build", json={"pool": POOL, **body}, headers=headers)


def test_day_ahead_draft_is_built_adjusted_submitted_exported_and_cleared_into_commitments(
        api: tuple[TestClient, dict[str, str]]) -> None:
    client, headers = api
    first = _build(api, "day-ahead", delivery_day=DAY.isoformat())
    assert first.status_code == 201, first.text
    bid = first.json()
    assert bid["status"] == "draft" and len(bid["content"]["mtus"]) == 96
    assert bid["gate_closure_at"].startswith("2030-06-02T10:00:00")
    again = _build(api, "day-ahead", delivery_day=DAY.isoformat()).json()
    assert again["id"] == bid["id"] and again["version"] == 2

    mtu = bid["content"]["mtus"][40]["mtu_start"]
    rising = {"mtus": [{"mtu_start": mtu, "points": [{"price_eur_per_mwh": 10, "demand_kw": 100},
                                                       {"price_eur_per_mwh": 20, "demand_kw": 900}]}]}
    refused = client.patch(f"/api/v1/bids/{bid['id']}", json=rising, headers=headers)
    assert refused.status_code == 422 and "non-increasing" in refused.json()["error"]["message"]
    too_dear = {"mtus": [{"mtu_start": mtu, "points": [{"price_eur_per_mwh": 4500, "demand_kw": 100}]}]}
    refused = client.patch(f"/api/v1/bids/{bid['id']}", json=too_dear, headers=headers)
    assert refused.status_code == 422 and "outside the limits" in refused.json()["error"]["message"]
    good = {"expected_version": 2, "mtus": [{"mtu_start": mtu, "points": [
        {"price_eur_per_mwh": 0, "demand_kw": 1500}, {"price_eur_per_mwh": 100, "demand_kw": 500}]}]}
    patched = client.patch(f"/api/v1/bids/{bid['id']}", json=good, headers=headers)
    assert patched.status_code == 200, patched.text
    assert patched.json()["version"] == 3 and patched.json()["edited"]

    csv_text = client.get(f"/api/v1/bids/{bid['id']}/document?format=csv", headers=headers)
    assert csv_text.status_code == 200 and csv_text.text.startswith("delivery_start_utc,")
    assert client.get(f"/api/v1/bids/{bid['id']}/document?format=xml", headers=headers).status_code == 422
    submitted = client.post(f"/api/v1/bids/{bid['id']}/submit", headers=headers)
    assert submitted.status_code == 200 and submitted.json()["status"] == "submitted"
    assert client.patch(f"/api/v1/bids/{bid['id']}", json=good, headers=headers).status_code == 409
    assert _build(api, "day-ahead", delivery_day=DAY.isoformat()).status_code == 409

    order = client.get(f"/api/v1/bids/{bid['id']}/document?format=json", headers=headers).json()
    prices = {datetime.fromisoformat(c["deliveryStart"].replace("Z", "+00:00")): 50.0 for c in order["curves"]}
    results = clear_curve_order(order, prices)
    awarded = client.post(f"/api/v1/bids/{bid['id']}/awards",
                          json={"format": "json", "content": json.dumps(results)}, headers=headers)
    assert awarded.status_code == 200, awarded.text
    assert awarded.json()["commitments"] == 96 and awarded.json()["bid"]["status"] == "awarded"
    start, end = bid["period_start"], bid["period_end"]
    listed = client.get("/api/v1/commitments", params={"pool": POOL, "start": start, "end": end}, headers=headers)
    assert listed.status_code == 200
    rows = listed.json()
    assert len(rows) == 96 and {r["kind"] for r in rows} == {"day_ahead_schedule"}
    cleared = next(r for r in rows if r["isp_start"].startswith(mtu.replace("Z", "")[:16]))
    assert cleared["power_kw"] == pytest.approx(1000.0) and cleared["price_eur_per_mwh"] == 50.0

    audit = client.get(f"/api/v1/bids/{bid['id']}/audit", headers=headers).json()
    assert [a["action"] for a in audit] == ["build", "rebuild", "update", "export", "submit", "export",
                                            "import_awards"]
    assert {a["actor_name"] for a in audit} == {"test trader"}
    update = audit[2]
    assert update["before"][mtu] != update["after"][mtu]
    drafts = client.get("/api/v1/bids", params={"market": "day-ahead", "pool": POOL, "status": "awarded"},
                        headers=headers).json()
    assert [d["id"] for d in drafts] == [bid["id"]]


def test_a_dst_day_has_92_mtus_and_prices_of_the_wrong_length_are_refused(
        api: tuple[TestClient, dict[str, str]]) -> None:
    built = _build(api, "day-ahead", delivery_day="2030-03-31", prices_eur_per_mwh=[60.0] * 92)
    assert built.status_code == 201, built.text
    assert len(built.json()["content"]["mtus"]) == 92
    wrong = _build(api, "day-ahead", delivery_day="2030-03-31", prices_eur_per_mwh=[60.0] * 96)
    assert wrong.status_code == 422 and "92 MTUs" in wrong.json()["error"]["message"]


def test_inconsistent_build_requests_are_refused_with_the_reason(api: tuple[TestClient, dict[str, str]]) -> None:
    client, headers = api
    unknown = client.post("/api/v1/bids/day-ahead/build", json={"pool": "zone:BE", "delivery_day": "2030-06-03"},
                          headers=headers)
    assert unknown.status_code == 404 and "zone:BE" in unknown.json()["error"]["message"]
    backwards = _build(api, "afrr", start="2030-06-03T10:00:00Z", end="2030-06-03T08:00:00Z")
    assert backwards.status_code == 422 and "not before" in backwards.json()["error"]["message"]
    assert _build(api, "day-ahead").status_code == 422
    assert client.post("/api/v1/bids/intraday/build", json={"pool": POOL}, headers=headers).status_code == 422


def test_submission_after_the_gate_closure_is_refused_with_409(api: tuple[TestClient, dict[str, str]]) -> None:
    client, headers = api
    past = _build(api, "day-ahead", delivery_day="2024-06-19").json()
    answer = client.post(f"/api/v1/bids/{past['id']}/submit", headers=headers)
    assert answer.status_code == 409 and "gate closed at 2024-06-18T10:00:00Z" in answer.json()["error"]["message"]


def test_afrr_bids_export_a_valid_reserve_bid_and_capacity_awards_become_commitments(
        api: tuple[TestClient, dict[str, str]], portfolio: FakePortfolioView) -> None:
    client, headers = api
    portfolio.sessions[POOL] = 2000  # enough for whole-MW capacity over 4-hour products
    start, end = datetime(2030, 6, 2, 22, tzinfo=UTC), datetime(2030, 6, 3, 22, tzinfo=UTC)
    built = _build(api, "afrr", start=start.isoformat(), end=end.isoformat(), margin_eur_per_mwh=12.5)
    assert built.status_code == 201, built.text
    bid = built.json()
    content = bid["content"]
    assert content["energy"] and content["capacity"]
    assert all(e["volume_kw"] >= 1000 and e["volume_kw"] % 1000 == 0 for e in content["energy"])
    assert all(e["price_eur_per_mwh"] >= 12.5 for e in content["energy"])
    assert bid["gate_closure_at"].startswith("2030-06-02T07:00:00")  # capacity: 09:00 CEST on D-1
    energy_id = content["energy"][0]["bid_id"]
    small = client.patch(f"/api/v1/bids/{bid['id']}", json={"energy": [{"bid_id": energy_id, "volume_kw": 500}]},
                         headers=headers)
    assert small.status_code == 422 and "below the minimum" in small.json()["error"]["message"]
    dear = client.patch(f"/api/v1/bids/{bid['id']}",
                        json={"energy": [{"bid_id": energy_id, "price_eur_per_mwh": 20000}]}, headers=headers)
    assert dear.status_code == 422 and "outside the limits" in dear.json()["error"]["message"]
    xml = client.get(f"/api/v1/bids/{bid['id']}/document?format=xml", headers=headers)
    assert xml.status_code == 200
    validate(xml.content, "reserve_bid")
    series = etree.fromstring(xml.content).findall("{*}Bid_TimeSeries")
    assert len(series) == len(content["energy"]) + len(content["capacity"])

    assert client.post(f"/api/v1/bids/{bid['id']}/submit", headers=headers).status_code == 200
    capacity = content["capacity"][0]
    awards = f"bid_id,awarded_mw\n{capacity['bid_id']},1\n"
    awarded = client.post(f"/api/v1/bids/{bid['id']}/awards", json={"format": "csv", "content": awards},
                          headers=headers)
    assert awarded.status_code == 200, awarded.text
    assert awarded.json()["commitments"] == 16
    too_much = f"bid_id,awarded_mw\n{capacity['bid_id']},{capacity['capacity_kw'] / 1000 + 1:g}\n"
    assert client.post(f"/api/v1/bids/{bid['id']}/awards", json={"format": "csv", "content": too_much},
                       headers=headers).status_code == 422
    rows = client.get("/api/v1/commitments", params={"pool": POOL, "start": start.isoformat(),
                                                     "end": end.isoformat()}, headers=headers).json()
    kind = f"afrr_capacity_{capacity['direction']}"
    assert len(rows) == 16 and {r["kind"] for r in rows} == {kind} and rows[0]["power_kw"] == 1000.0


def test_a_congestion_draft_offers_the_reliable_reduction_per_isp(api: tuple[TestClient, dict[str, str]]) -> None:
    client, headers = api
    built = _build(api, "congestion", start="2030-06-03T16:00:00Z", end="2030-06-03T18:00:00Z")
    assert built.status_code == 201, built.text
    isps = built.json()["content"]["isps"]
    assert len(isps) == 8 and all(i["reduction_kw"] >= 0 for i in isps)
    bid_id = built.json()["id"]
    assert client.get(f"/api/v1/bids/{bid_id}/document?format=xml", headers=headers).status_code == 422


def test_without_a_portfolio_view_a_build_is_refused_with_503(api: tuple[TestClient, dict[str, str]],
                                                              bids_app: FastAPI) -> None:
    bids_app.state.portfolio_view = None
    assert _build(api, "day-ahead", delivery_day=DAY.isoformat()).status_code == 503


def test_beat_tasks_build_once_per_pool_and_period_and_keep_edited_drafts(
        bids_app: FastAPI, factory: sessionmaker[Session], portfolio: FakePortfolioView) -> None:
    set_runtime(Runtime(settings=bids_app.state.settings, session_factory=factory))
    bid_tasks.configure_portfolio_view(lambda: portfolio)
    try:
        first = bid_tasks.build_day_ahead.apply(kwargs={"delivery_day": DAY.isoformat()}).get()
        second = bid_tasks.build_day_ahead.apply(kwargs={"delivery_day": DAY.isoformat()}).get()
        assert first["status"] == "ok" and first["built"] == second["built"]
        with unit_of_work(factory) as session:
            bid = session.scalars(select(Bid)).one()
            bid.edited = True
        third = bid_tasks.build_day_ahead.apply(kwargs={"delivery_day": DAY.isoformat()}).get()
        assert third["kept"] == first["built"] and not third["built"]
        energy = bid_tasks.build_afrr_energy.apply(kwargs={"start": "2030-06-03T10:00:00Z"}).get()
        assert energy["status"] == "ok" and len(energy["built"]) == 1
        with unit_of_work(factory) as session:
            runs = session.scalars(select(JobRun).order_by(JobRun.started_at)).all()
            assert [r.name for r in runs].count("bids.build_day_ahead") == 3
            built = session.get(Bid, energy["built"][0])
            assert built is not None and built.period_end - built.period_start == timedelta(hours=1)
    finally:
        bid_tasks.configure_portfolio_view(lambda: None)
