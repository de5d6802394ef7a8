"""The web view on a simulated scenario: every page in a real browser, compared with the API.

The small end-to-end scenario (tests/e2e/test_simulate.py) runs through ``vpp simulate --data-dir DIR`` into a
temporary data directory; then the service is started on that directory the way ``VPP_DATA_DIR=DIR vpp serve``
does (``Settings(data_dir=DIR)``: the SQLite database and the secret the simulation left there, the embedded
dispatcher running on the stale simulated sessions), and a trader signs in with a key made by
``VPP_DATA_DIR=DIR vpp apikey create``, as the command's hint says. Screenshots: test-artifacts/web/scenario-*.png.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
import yaml

from tests.e2e.test_simulate import SMALL
from tests.e2e.test_web_ui import (
    AMSTERDAM,
    _free_port,
    all_css,
    by_css,
    new_browser,
    number,
    present,
    require_browser,
    shot,
    sign_in,
    wait_for,
)
from vpp import migrate
from vpp.api.app import create_app
from vpp.apikeys import service as apikeys
from vpp.config import Settings
from vpp.db import create_db_engine, create_session_factory, unit_of_work

POOL = "zone:NL"
DAY = date.fromisoformat(str(SMALL["start"]))
REPO = Path(__file__).resolve().parents[2]
SETTLEMENT_KINDS = ("isps", "activations", "orders", "sessions")


@dataclass
class Scenario:
    """The service running on the kept data dir, the keys of its callers and what the command printed."""

    base: str
    data_dir: Path
    keys: dict[str, str]
    printed: str

    def api(self, role: str = "trader") -> httpx.Client:
        return httpx.Client(base_url=self.base, headers={"Authorization": f"Bearer {self.keys[role]}"}, timeout=30)


def _simulate_into(data_dir: Path, work: Path) -> str:
    """``vpp simulate --scenario small.yaml --data-dir DIR`` in-process (embedded mode); what it printed."""
    from vpp.commands.simulate import simulate

    scenario_file = work / "e2e-small.yaml"
    # Stop at the window's end: the page tests browse the sessions still plugged in then.
    scenario_file.write_text(yaml.safe_dump({**SMALL, "follow_hours": 0}))
    args = argparse.Namespace(scenario=str(scenario_file), out=str(work / "out"), quiet=True, list=False,
                              data_dir=str(data_dir))
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert simulate(args) == 0
    return printed.getvalue()


def _apikey_create(data_dir: Path, role: str) -> str:
    """A key made the way the command's hint says: ``VPP_DATA_DIR=DIR vpp apikey create``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VPP_")}
    env["VPP_DATA_DIR"] = str(data_dir)
    command = [sys.executable, "-c", "import sys; from vpp.cli import main; sys.exit(main())",
               "apikey", "create", "--role", role, "--name", "me"]
    done = subprocess.run(command,
                          env=env, cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    require_browser()
    work = tmp_path_factory.mktemp("web-scenario")
    data_dir = work / "data"
    with pytest.MonkeyPatch.context() as env:
        # the kept data dir is the embedded one, whatever the developer's shell selects
        for name in ("VPP_DATABASE_URL", "VPP_REDIS_URL", "VPP_SECRET_KEY", "VPP_DATA_DIR", "VPP_UFTP_SIGNING_KEY"):
            env.delenv(name, raising=False)
        printed = _simulate_into(data_dir, work)
        settings = Settings(data_dir=data_dir)  # what `VPP_DATA_DIR=DIR vpp serve` reads
    assert settings.embedded and (data_dir / "secret.key").exists() and (data_dir / "vpp.sqlite3").exists()
    trader = _apikey_create(data_dir, "trader")
    engine = create_db_engine(settings.resolved_database_url, pool_size=5)
    migrate.upgrade(engine)  # as `vpp serve` does: a no-op on the simulation's database
    factory = create_session_factory(engine)
    keys = {"trader": trader}
    with unit_of_work(factory) as db:
        for role in ("admin", "market"):
            _row, keys[role] = apikeys.create(db, name=f"web {role}", role=role, pepper=settings.secret)
    # the full app with its embedded dispatcher, which finds the run's sessions still 'active' in simulated time
    app = create_app(settings, engine=engine, session_factory=factory)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on",
                                           timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.1)
    try:
        yield Scenario(base=base, data_dir=data_dir, keys=keys, printed=printed)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        engine.dispose()


@pytest.fixture(scope="module")
def browser(scenario: Scenario) -> Iterator[Any]:
    driver = new_browser()
    try:
        yield driver
    finally:
        driver.quit()


def test_the_command_says_how_to_browse_the_kept_data_dir(scenario: Scenario) -> None:
    assert f"VPP_DATA_DIR={scenario.data_dir} vpp serve" in scenario.printed
    assert f"VPP_DATA_DIR={scenario.data_dir} vpp apikey create --role trader" in scenario.printed
    # the key made by that command (with the data dir's secret) is accepted by the service on that data dir
    me = scenario.api().get("/api/v1/ui/me")
    assert me.status_code == 200 and me.json()["role"] == "trader", me.text
    health = httpx.get(f"{scenario.base}/health", timeout=5).json()
    assert health["status"] == "ok" and health["mode"] == "embedded", health


def test_the_portfolio_shows_the_scenarios_pools_and_sessions(scenario: Scenario, browser: Any) -> None:
    sign_in(browser, scenario.base, scenario.keys["trader"])
    api = scenario.api()
    pools = {p["pool"]: p for p in api.get("/api/v1/portfolio/pools").json()}
    assert POOL in pools and pools[POOL]["sessions"] >= 1, pools
    wait_for(browser, present(f"#pools-table tr[data-pool='{POOL}']"), what="pools table")
    shown_pools = {r.get_attribute("data-pool") for r in all_css(browser, "#pools-table tr[data-pool]")}
    assert shown_pools == set(pools)
    for pool, read in pools.items():
        shown = by_css(browser, f"#pools-table tr[data-pool='{pool}'] td[data-col=sessions]").text
        assert int(shown) == read["sessions"], pool
    by_css(browser, f"#pools-table tr[data-pool='{POOL}'] button").click()
    wait_for(browser, present("#sessions-table"), timeout=15, what="sessions table")
    page = api.get(f"/api/v1/ui/pools/{POOL}/sessions", params={"limit": 50}).json()
    assert int(by_css(browser, "#sessions-total").text) == page["total"] == pools[POOL]["sessions"]
    shown_ids = [r.get_attribute("data-session") for r in all_css(browser, "#sessions-table tbody tr")]
    assert shown_ids == [item["session_id"] for item in page["items"]]
    assert by_css(browser, "#chart-power").tag_name == "svg"
    shot(browser, "scenario-portfolio")


def _shows_status(status: str) -> Callable[[Any], bool]:
    def check(driver: Any) -> bool:
        return bool(by_css(driver, "#bid-status").text == status)
    return check


def test_the_bids_page_lists_the_scenarios_bids_with_their_status(scenario: Scenario, browser: Any) -> None:
    sign_in(browser, scenario.base, scenario.keys["trader"])
    api = scenario.api()
    bids = api.get("/api/v1/bids", params={"limit": 200}).json()
    markets = {b["market"] for b in bids}
    assert {"day-ahead", "afrr"} <= markets, bids  # the day-ahead curve (awarded) and the aFRR capacity bid
    browser.get(f"{scenario.base}/ui#/bids")
    for bid in bids:
        row = wait_for(browser, present(f"tr[data-bid='{bid['id']}']"), what=f"bid {bid['id']} in the list")
        assert row.find_element("css selector", "td[data-col=status]").text == bid["status"]
        assert number(row.find_element("css selector", "td[data-col=version]").text) == bid["version"]
    assert len(all_css(browser, "tr[data-bid]")) == len(bids)
    shot(browser, "scenario-bids")
    for bid in bids:
        browser.get(f"{scenario.base}/ui#/bids/{bid['id']}")
        wait_for(browser, _shows_status(str(bid["status"])), what=f"bid {bid['id']} status")
        stored = api.get(f"/api/v1/bids/{bid['id']}").json()
        assert by_css(browser, "#bid-version").text == str(stored["version"])
        content = stored["content"]
        if bid["market"] == "day-ahead":
            assert len(all_css(browser, "#mtu-table tbody tr")) == len(content["mtus"]) == 96
            shot(browser, "scenario-bid-dayahead")
        elif content.get("capacity"):
            assert len(all_css(browser, "#capacity-table tbody tr")) == len(content["capacity"])
            shot(browser, "scenario-bid-afrr")
        else:
            assert "No capacity bids" in by_css(browser, "#page").text
            shot(browser, "scenario-bid-afrr")


def test_the_activations_page_shows_the_scenarios_last_setpoint(scenario: Scenario, browser: Any) -> None:
    api = scenario.api()
    window = [f"{DAY.isoformat()}T15:55:00Z", f"{DAY.isoformat()}T16:10:00Z"]  # 18:00-18:03 local, with margin
    responses = scenario.api("market").get("/api/v1/market/afrr/response", params={
        "pool": POOL, "start": window[0], "end": window[1]})
    assert responses.status_code == 200, responses.text
    steps = responses.json()
    assert steps, "the scenario's aFRR window left no pool response"
    sign_in(browser, scenario.base, scenario.keys["trader"])
    browser.get(f"{scenario.base}/ui#/activations?pool={POOL}")
    wait_for(browser, present("#live-seq"), timeout=10, what="first live event")
    snapshot = api.get("/api/v1/live/activations/snapshot", params={"pool": POOL}).json()
    # the latest setpoint is the scenario's last one (simulated time); the live window (now) has no steps
    assert snapshot["setpoint"] is not None
    assert by_css(browser, "#live-seq").text == str(snapshot["setpoint"]["seq"])
    assert by_css(browser, "#live-setpoint").text == f"{snapshot['setpoint']['setpoint_mw']:.3f}"
    if not snapshot["steps"]:
        assert by_css(browser, "#live-empty").is_displayed()
    shot(browser, "scenario-activations")


def test_the_settlement_page_shows_the_settled_simulated_day(scenario: Scenario, browser: Any) -> None:
    from vpp.settlement import service as settlement

    settings = Settings(data_dir=scenario.data_dir, database_url=None, redis_url=None)
    engine = create_db_engine(settings.resolved_database_url, pool_size=1)
    try:
        with unit_of_work(create_session_factory(engine)) as db:
            runs = settlement.settle_day(db, day=DAY, time_zone=settings.market_timezone, only_missing=True)
            settled = {run.pool for run in runs}
    finally:
        engine.dispose()
    api = scenario.api()
    summary = api.get(f"/api/v1/settlement/days/{DAY.isoformat()}").json()
    assert POOL in {s["pool"] for s in summary} | settled, summary
    rows = {kind: api.get(f"/api/v1/settlement/days/{DAY.isoformat()}/{kind}").json() for kind in SETTLEMENT_KINDS}
    assert rows["isps"] and rows["sessions"], {k: len(v) for k, v in rows.items()}
    sign_in(browser, scenario.base, scenario.keys["trader"])
    browser.get(f"{scenario.base}/ui#/settlement?day={DAY.isoformat()}")
    wait_for(browser, present("#settlement-out .settlement-part"), timeout=15, what="settlement parts")
    for kind, expected in rows.items():
        part = by_css(browser, f".settlement-part[data-url='/api/v1/settlement/days/{DAY.isoformat()}/{kind}']")
        assert len(part.find_elements("css selector", "tbody tr")) == len(expected), kind
        if not expected:
            assert "No rows" in part.text
            continue
        # each column is told apart by its title (not only the unit), and times are shown in the market zone
        titles = [th.get_attribute("textContent") for th in part.find_elements("css selector", "thead th")]
        assert len(set(titles)) == len(titles), (kind, titles)
    first = rows["isps"][0]
    local = datetime.fromisoformat(str(first["isp_start"])).astimezone(AMSTERDAM)
    part = by_css(browser, f".settlement-part[data-url='/api/v1/settlement/days/{DAY.isoformat()}/isps']")
    shown = part.find_element("css selector", "tbody tr td[data-col=isp_start]").get_attribute("textContent")
    assert shown.startswith(local.strftime("%Y-%m-%d %H:%M")), (shown, first["isp_start"])
    shot(browser, "scenario-settlement")


def test_an_admin_sees_the_simulated_cpo_connections(scenario: Scenario, browser: Any) -> None:
    sign_in(browser, scenario.base, scenario.keys["admin"])
    by_css(browser, "nav a[data-page=connections]").click()
    admin = scenario.api("admin")
    listed = admin.get("/api/v1/ocpi/connections").json()
    activity = {a["connection_id"]: a for a in admin.get("/api/v1/ui/connections/activity").json()}
    assert len(listed) == len(SMALL["cpos"])  # type: ignore[arg-type]
    for connection in listed:
        row = wait_for(browser, present(f"tr[data-connection='{connection['id']}']"), what="connections")
        assert row.find_element("css selector", "td[data-col=status]").text == connection["status"]
        shown = row.find_element("css selector", "td[data-col=active]").text
        assert int(shown) == activity[connection["id"]]["active_sessions"], connection["name"]
    assert sum(a["active_sessions"] for a in activity.values()) >= 1
    shot(browser, "scenario-connections")
