"""The web view in a real browser (headless Debian Chromium through Selenium) against the running service.

The service is ``create_app`` on a temporary SQLite database served by uvicorn on a free localhost port, with the
embedded dispatcher running; data comes in through the services and the API. Every check compares what the page
shows with what the API answers. Screenshots land in ``test-artifacts/web/``.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import uvicorn
from sqlalchemy.orm import Session, sessionmaker

from tests.conftest import IN_CI, TEST_SECRET, make_key
from tests.integration.portfolio_support import add_cpo, add_location, add_session
from vpp import migrate
from vpp.api.app import create_app
from vpp.commitments import service as commitments
from vpp.config import Settings
from vpp.db import create_db_engine, create_session_factory, unit_of_work
from vpp.domain.commitments import CommitmentKind, CommitmentValue

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "web"
AMSTERDAM = ZoneInfo("Europe/Amsterdam")
POOL = "zone:NL"
SITE = "depot-1"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def require_browser() -> None:
    """Skip (fail under CI) when Chromium, chromedriver or selenium are missing."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package")
    if missing:
        reason = f"browser tests need {', '.join(missing)} (apt-get install chromium chromium-driver)"
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)


@dataclass
class Service:
    """The running service and the keys of its callers."""

    base: str
    factory: sessionmaker[Session]
    keys: dict[str, str]
    connection_id: str

    def api(self, role: str = "trader") -> httpx.Client:
        return httpx.Client(base_url=self.base, headers={"Authorization": f"Bearer {self.keys[role]}"}, timeout=30)


def start_service(tmp: Path, *, dispatch_interval_s: float = 2.0) -> tuple[Service, Callable[[], None]]:
    """Migrate a SQLite database, start uvicorn with the full app (embedded dispatcher) and return it."""
    settings = Settings(data_dir=tmp, database_url=f"sqlite:///{tmp / 'web.sqlite3'}",  # type: ignore[arg-type]
                        secret_key=TEST_SECRET, dispatch_interval_seconds=dispatch_interval_s,
                        dispatch_send_timeout_seconds=0.5)
    engine = create_db_engine(settings.resolved_database_url, pool_size=5)
    migrate.upgrade(engine)
    factory = create_session_factory(engine)
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
            if httpx.get(f"{base}/health", timeout=1).status_code in (200, 503):
                break
        except httpx.TransportError:
            time.sleep(0.1)
    keys = {role: make_key(factory, role) for role in ("admin", "trader", "market", "dso")}

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=10)
        engine.dispose()

    return Service(base=base, factory=factory, keys=keys, connection_id=""), stop


def seed_fleet(service: Service, *, sessions: int, now: datetime, batch: bool = False) -> None:
    """A CPO connection with one location per 20 EVSEs, ``sessions`` active sessions with a reading, a site."""
    factory = service.factory
    connection_id = add_cpo(factory, name="GreenCharge", discharge_profiles=True)
    service.connection_id = connection_id
    start = now - timedelta(hours=1)
    per_location = 20
    locations = (sessions + per_location - 1) // per_location
    if not batch:
        for loc in range(locations):
            add_location(factory, connection_id, location_id=f"LOC{loc:04d}", evses=per_location, v2g=loc % 2 == 1,
                         at=start)
        for k in range(sessions):
            add_session(factory, connection_id, session_id=f"S{k:05d}", location_id=f"LOC{k // per_location:04d}",
                        evse=k % per_location, start=start + timedelta(minutes=k % 50), delivered_kwh=2.0 + k % 7,
                        power_kw=3.0 + (k % 8), soc_pct=40.0, token_uid=f"TOK{k}")
    else:
        _seed_batched(factory, connection_id, sessions, per_location, start)
    trader = service.api()
    v2g_location = trader.get("/api/v1/sessions", params={"location": "LOC0001", "limit": 1000}).json()["items"]
    for item in v2g_location:  # the drivers at the V2G location consent to discharging, with a known battery
        need = {"departure": (now + timedelta(hours=8)).isoformat(), "energy_kwh": 30.0, "battery_kwh": 60.0,
                "discharge_allowed": True, "min_soc_pct": 20.0}
        assert trader.put(f"/api/v1/sessions/{item['id']}/charging-need", json=need).status_code == 200
    admin = service.api("admin")
    assert admin.put(f"/api/v1/portfolio/sites/{SITE}", json={"capacity_kw": 150.0}).status_code == 200
    answer = admin.post(f"/api/v1/portfolio/sites/{SITE}/locations", json={"party": "NL/CPA", "location_id": "LOC0000"})
    assert answer.status_code == 200, answer.text


def _seed_batched(factory: sessionmaker[Session], connection_id: str, sessions: int, per_location: int,
                  start: datetime) -> None:
    """The same services as OCPI intake, many records per transaction (for the 10,000-session measurement)."""
    from vpp.locations import service as locations
    from vpp.locations.values import ConnectorRecord, EvseRecord, LocationRecord
    from vpp.sessions import service as session_service
    from vpp.sessions.values import Reading, SessionRecord

    with unit_of_work(factory) as db:
        for loc in range((sessions + per_location - 1) // per_location):
            caps = ("CHARGING_PROFILE_CAPABLE", "V2G_CAPABLE") if loc % 2 else ("CHARGING_PROFILE_CAPABLE",)
            locations.put_location(db, connection_id, LocationRecord(
                country_code="NL", party_id="CPA", external_id=f"LOC{loc:04d}", publish=True, address="Street 1",
                city="Utrecht", country="NLD", latitude="52.09", longitude="5.12", time_zone="Europe/Amsterdam",
                last_updated=start, evses=tuple(EvseRecord(
                    uid=f"LOC{loc:04d}-E{k}", status="AVAILABLE", capabilities=caps, charging_profile_capable=True,
                    last_updated=start, connectors=(ConnectorRecord(
                        external_id="1", power_type="AC_3_PHASE", phases=3, max_voltage_v=230, max_current_a=16,
                        rated_power_kw=None, standard="IEC_62196_T2", format="SOCKET", last_updated=start),))
                    for k in range(per_location))))
        for k in range(sessions):
            at = start + timedelta(minutes=k % 50)
            session_service.replace(db, connection_id, SessionRecord(
                country_code="NL", party_id="CPA", external_id=f"S{k:05d}", status="active", start=at,
                energy_kwh=2.0 + k % 7, location_id=f"LOC{k // per_location:04d}",
                evse_uid=f"LOC{k // per_location:04d}-E{k % per_location}", connector_id="1", currency="EUR",
                last_updated=at + timedelta(minutes=1), end=None, driver_token={"uid": f"TOK{k}", "type": "RFID"},
                readings=(Reading(start=at, power_kw=3.0 + k % 8, energy_kwh=2.0 + k % 7, soc_pct=40.0),)))


def award_afrr(service: Service, now: datetime, hours: int = 2) -> None:
    """aFRR capacity awarded to the zone pool around now, so setpoints are applied rather than clipped to zero."""
    first = now.replace(minute=now.minute - now.minute % 15, second=0, microsecond=0) - timedelta(minutes=15)
    values = []
    for k in range(hours * 4 + 1):
        isp = first + timedelta(minutes=15 * k)
        values += [CommitmentValue(pool=POOL, isp_start=isp, kind=CommitmentKind.AFRR_CAPACITY_UP, power_kw=100.0,
                                   source="test", reference="award-web"),
                   CommitmentValue(pool=POOL, isp_start=isp, kind=CommitmentKind.AFRR_CAPACITY_DOWN, power_kw=50.0,
                                   source="test", reference="award-web")]
    with unit_of_work(service.factory) as db:
        commitments.record(db, values)


def delivery_day_after_tomorrow() -> date:
    return (datetime.now(AMSTERDAM) + timedelta(days=2)).date()


def isps_of_local_day(day: date) -> int:
    start = datetime(day.year, day.month, day.day, tzinfo=AMSTERDAM)
    end = datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=AMSTERDAM)
    return int((end.astimezone(UTC) - start.astimezone(UTC)).total_seconds() // 900)


def new_browser(width: int = 1366, height: int = 768) -> Any:
    """Headless Debian Chromium through its chromedriver; never anything but localhost."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as DriverService

    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager fetch a driver or browser
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = Path(os.environ.get("TMPDIR", "/tmp")) / f"vpp-web-chromium-{os.getpid()}-{time.monotonic_ns()}"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", f"--user-data-dir={profile}", f"--window-size={width},{height}"):
        options.add_argument(arg)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    options.add_experimental_option("prefs", {"download.default_directory": str(ARTIFACTS / "downloads"),
                                              "download.prompt_for_download": False})
    driver = webdriver.Chrome(options=options, service=DriverService(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    return driver


def wait_for(driver: Any, condition: Callable[[Any], Any], timeout: float = 10.0,
             what: str | Callable[[], str] = "") -> Any:
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException, TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.1,
                             ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)
                             ).until(condition)
    except TimeoutException:
        shot(driver, "failure-" + str(int(time.time())))
        raise AssertionError(f"timed out after {timeout} s waiting for {what() if callable(what) else what}") from None


def by_css(driver: Any, css: str) -> Any:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, css)


def all_css(driver: Any, css: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return list(driver.find_elements(By.CSS_SELECTOR, css))


def present(css: str) -> Callable[[Any], Any]:
    def check(driver: Any) -> Any:
        found = all_css(driver, css)
        return found[0] if found and found[0].is_displayed() else False
    return check


def sign_in(driver: Any, base: str, key: str) -> None:
    driver.get(f"{base}/ui#/portfolio")
    driver.execute_script("sessionStorage.clear()")
    driver.refresh()
    field = wait_for(driver, present("#api-key"), what="sign-in form")
    field.send_keys(key)
    by_css(driver, "#signin-form button[type=submit]").click()
    wait_for(driver, present("#who-name"), what="signed in")


def shot(driver: Any, name: str) -> str:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path.name


def number(text: str) -> float:
    return float(text.replace(",", "").replace("—", "nan").split()[0])


# ------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    require_browser()
    running, stop = start_service(tmp_path_factory.mktemp("web"))
    now = datetime.now(UTC)
    try:
        seed_fleet(running, sessions=60, now=now)
        award_afrr(running, now)
        yield running
    finally:
        stop()


@pytest.fixture(scope="module")
def browser(service: Service) -> Iterator[Any]:
    driver = new_browser()
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def draft(service: Service) -> dict[str, Any]:
    day = delivery_day_after_tomorrow()
    prices = [40.0 + 30.0 * ((k // 4) % 24 in range(17, 21)) for k in range(isps_of_local_day(day))]
    answer = service.api().post("/api/v1/bids/day-ahead/build",
                                json={"pool": POOL, "delivery_day": day.isoformat(), "prices_eur_per_mwh": prices})
    assert answer.status_code == 201, answer.text
    bid: dict[str, Any] = answer.json()
    return bid


def test_a_trader_signs_in_and_the_portfolio_shows_what_the_api_answers(service: Service, browser: Any) -> None:
    sign_in(browser, service.base, service.keys["trader"])
    assert not by_css(browser, "nav a[data-page=connections]").is_displayed()
    assert browser.execute_script("return sessionStorage.getItem('vpp.apiKey')") == service.keys["trader"]
    api = service.api()
    pools = {p["pool"]: p for p in api.get("/api/v1/portfolio/pools").json()}
    wait_for(browser, present(f"#pools-table tr[data-pool='{POOL}']"), what="pools table")
    for pool, read in pools.items():
        shown = by_css(browser, f"#pools-table tr[data-pool='{pool}'] td[data-col=sessions]").text
        assert int(shown) == read["sessions"], pool
    by_css(browser, f"#pools-table tr[data-pool='{POOL}'] button").click()
    wait_for(browser, present("#sessions-table"), timeout=15, what="sessions table")
    detail = by_css(browser, "#pool-detail")
    start, end = detail.get_attribute("data-start"), detail.get_attribute("data-end")
    flex = api.get(f"/api/v1/portfolio/pools/{POOL}/flexibility", params={"start": start, "end": end}).json()
    assert len(all_css(browser, "#flex-table tbody tr")) == len(flex["isp_starts"]) == 192
    browser.execute_script("document.getElementById('flex-details').open = true")
    for k in (0, 4, 40):
        row = by_css(browser, f"#flex-table tr[data-isp='{flex['isp_starts'][k]}']")
        for column in ("baseline_kw", "min_kw", "max_kw", "energy_max_kwh"):
            shown = number(row.find_element("css selector", f"td[data-col={column}]").get_attribute("textContent"))
            assert shown == pytest.approx(flex[column][k], abs=0.06, rel=0.01), (k, column)
    assert "UTC+0" in by_css(browser, "#flex-table thead").text
    assert by_css(browser, "#chart-power").tag_name == "svg"
    page = api.get(f"/api/v1/ui/pools/{POOL}/sessions", params={"limit": 50}).json()
    assert int(by_css(browser, "#sessions-total").text) == page["total"] == 60
    shown_ids = [r.get_attribute("data-session") for r in all_css(browser, "#sessions-table tbody tr")]
    assert shown_ids == [item["session_id"] for item in page["items"]]
    shot(browser, "portfolio-1366x768")
    # the filters narrow the table the same way the API does
    by_css(browser, "#f-location").send_keys("LOC0001")
    by_css(browser, "#f-v2g").send_keys("V2G only")
    by_css(browser, "#session-filters button[type=submit]").click()
    filtered = api.get(f"/api/v1/ui/pools/{POOL}/sessions", params={"location": "LOC0001", "v2g": "true"}).json()
    wait_for(browser, lambda d: by_css(d, "#sessions-total").text == str(filtered["total"]), what="filtered total")
    assert filtered["total"] == 20 and all(item["v2g"] for item in filtered["items"])


def test_a_bid_draft_is_edited_refused_with_the_api_reason_saved_exported_and_submitted(
        service: Service, browser: Any, draft: dict[str, Any]) -> None:
    sign_in(browser, service.base, service.keys["trader"])
    browser.get(f"{service.base}/ui#/bids")
    row = wait_for(browser, present(f"tr[data-bid='{draft['id']}']"), what="bid in list")
    countdown = row.find_element("css selector", "td[data-col=left] .countdown")
    first = countdown.text
    wait_for(browser, lambda _d: countdown.text != first, timeout=3, what="countdown ticks")
    row.find_element("css selector", "a").click()
    wait_for(browser, present("#mtu-table"), what="bid editor")
    assert by_css(browser, "#bid-version").text == str(draft["version"])
    inputs = all_css(browser, "#mtu-table tbody tr:nth-child(41) input[data-field=demand]")
    assert len(inputs) >= 2
    # a rising curve is refused, and the page shows the API's reason
    inputs[0].clear()
    inputs[0].send_keys("0")
    inputs[-1].clear()
    inputs[-1].send_keys("999999")
    by_css(browser, "#bid-save").click()
    error = wait_for(browser, present("#bid-msg .error"), what="validation error")
    assert "non-increasing" in error.text
    shot(browser, "bid-refused")
    inputs = all_css(browser, "#mtu-table tbody tr:nth-child(41) input[data-field=demand]")
    inputs[0].clear()
    inputs[0].send_keys("1234.5")
    inputs[-1].clear()
    inputs[-1].send_keys("10")
    by_css(browser, "#bid-save").click()
    wait_for(browser, present("#bid-saved"), what="saved")
    stored = service.api().get(f"/api/v1/bids/{draft['id']}").json()
    assert stored["version"] == draft["version"] + 1
    assert by_css(browser, "#bid-version").text == str(stored["version"])
    points = stored["content"]["mtus"][40]["points"]
    assert points[0]["demand_kw"] == 1234.5 and points[-1]["demand_kw"] == 10
    shown = [float(i.get_attribute("value"))
             for i in all_css(browser, "#mtu-table tbody tr:nth-child(41) input[data-field=demand]")]
    assert shown == [p["demand_kw"] for p in points]
    by_css(browser, "#export-csv").click()
    wait_for(browser, lambda d: "Downloaded" in by_css(d, "#bid-msg").text, what="export")
    browser.execute_script("window.confirm = () => true")
    by_css(browser, "#bid-submit").click()
    wait_for(browser, lambda d: by_css(d, "#bid-status").text == "submitted", what="submitted")
    assert service.api().get(f"/api/v1/bids/{draft['id']}").json()["status"] == "submitted"
    audit = service.api().get(f"/api/v1/bids/{draft['id']}/audit").json()
    assert len(all_css(browser, "#audit-table tbody tr")) == len(audit) >= 3
    assert by_css(browser, "#bid-submit").get_attribute("disabled") is not None
    shot(browser, "bid-submitted")


def test_the_activations_page_follows_a_setpoint_posted_during_the_test_within_5_s(
        service: Service, browser: Any) -> None:
    sign_in(browser, service.base, service.keys["trader"])
    browser.get(f"{service.base}/ui#/activations?pool={POOL}")
    wait_for(browser, present("#live-seq"), timeout=10,
             what=lambda: f"first event; state {by_css(browser, '#page').text[:300]!r}")
    assert by_css(browser, "#live-state").text == "live"
    seq = int(time.time())
    answer = service.api("market").post("/api/v1/market/afrr/setpoints", json={
        "pool": POOL, "seq": seq, "timestamp": datetime.now(UTC).isoformat(), "setpoint_mw": 0.075})
    assert answer.status_code == 200 and not answer.json()["clipped"], answer.text
    posted = time.monotonic()
    wait_for(browser, lambda d: by_css(d, "#live-seq").text == str(seq), timeout=5, what="setpoint on the page")
    assert time.monotonic() - posted <= 5.0
    assert by_css(browser, "#live-setpoint").text == "0.075"
    # the response chart follows too: the dispatcher records steps that the stream carries
    wait_for(browser, present("#chart-afrr"), timeout=8, what="response chart")
    snapshot = service.api().get("/api/v1/live/activations/snapshot", params={"pool": POOL}).json()
    assert snapshot["setpoint"]["seq"] == seq and snapshot["steps"]
    before = by_css(browser, "#live-updated").text
    wait_for(browser, lambda d: by_css(d, "#live-updated").text != before, timeout=4.5, what="next update")
    shown_measured = number(by_css(browser, "#live-measured").text)
    recent = [s["measured_kw"] for s in service.api().get("/api/v1/live/activations/snapshot",
                                                          params={"pool": POOL}).json()["steps"][-3:]]
    assert any(abs(shown_measured - m) < 0.06 for m in [*recent, snapshot["steps"][-1]["measured_kw"]])
    wait_for(browser, present("#outcomes-table"), timeout=10, what="profile outcomes")
    assert by_css(browser, "#outcomes-table tr[data-cpo='GreenCharge']")
    shot(browser, "activations-live")


def test_the_settlement_page_fills_in_from_the_api_or_says_what_to_do(service: Service, browser: Any) -> None:
    sign_in(browser, service.base, service.keys["trader"])
    browser.get(f"{service.base}/ui#/settlement")
    paths = [p for p in httpx.get(f"{service.base}/openapi.json").json()["paths"] if p.startswith("/api/v1/settlement")]
    if not paths:
        empty = wait_for(browser, present("#settlement-empty"), what="empty state")
        assert "not available" in empty.text and "reload" in empty.text
    else:
        wait_for(browser, present("#settlement-out .settlement-part"), timeout=15, what="settlement parts")
        day = (datetime.now(AMSTERDAM) - timedelta(days=1)).date().isoformat()
        for kind in ("isps", "activations", "orders", "sessions"):
            rows = service.api().get(f"/api/v1/settlement/days/{day}/{kind}").json()
            part = by_css(browser, f".settlement-part[data-url='/api/v1/settlement/days/{day}/{kind}']")
            shown = part.find_elements("css selector", "tbody tr")
            assert len(shown) == len(rows), kind
            if not rows:
                assert "No rows" in part.text
        buttons = all_css(browser, ".settlement-csv")
        assert len(buttons) == 4
        buttons[0].click()
    shot(browser, "settlement")


def test_an_admin_sees_the_cpo_connections_with_their_activity(service: Service, browser: Any) -> None:
    sign_in(browser, service.base, service.keys["admin"])
    assert by_css(browser, "nav a[data-page=connections]").is_displayed()
    by_css(browser, "nav a[data-page=connections]").click()
    row = wait_for(browser, present(f"tr[data-connection='{service.connection_id}']"), what="connections")
    listed = {c["id"]: c for c in service.api("admin").get("/api/v1/ocpi/connections").json()}
    assert row.find_element("css selector", "td[data-col=status]").text == listed[service.connection_id]["status"]
    assert row.find_element("css selector", "td[data-col=active]").text == "60"
    assert "rotate" in by_css(browser, "#rotation-note").text
    browser.set_window_size(1920, 1080)
    shot(browser, "connections-1920x1080")
    browser.get(f"{service.base}/ui#/portfolio")
    wait_for(browser, present("#sessions-table"), timeout=15, what="portfolio on a large screen")
    shot(browser, "portfolio-1920x1080")
    browser.set_window_size(1366, 768)


def test_a_refused_key_keeps_the_view_closed_and_says_why(service: Service, browser: Any) -> None:
    sign_in(browser, service.base, service.keys["trader"])
    by_css(browser, "#sign-out").click()
    assert browser.execute_script("return sessionStorage.getItem('vpp.apiKey')") is None
    browser.refresh()
    wait_for(browser, present("#api-key"), what="sign-in form")
    from selenium.webdriver.common.keys import Keys

    # keyboard only: the key field has the focus, Enter submits
    assert browser.switch_to.active_element.get_attribute("id") == "api-key"
    browser.switch_to.active_element.send_keys("vpp_not-a-key" + Keys.ENTER)
    error = wait_for(browser, present("#signin-error"), what="refusal")
    assert "unknown or revoked" in error.text
    assert not by_css(browser, "#nav").is_displayed()
    shot(browser, "signin-refused")
