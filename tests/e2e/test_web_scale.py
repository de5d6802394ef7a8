"""The portfolio page for a pool of 10,000 sessions: how long until the page shows its charts and sessions table.

Opt-in (``VPP_WEB_SCALE=1``): seeding 10,000 sessions through the services takes a while on two cores. The times
are printed and written to ``test-artifacts/web/scale.json``.
"""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.e2e.test_web_ui import (
    ARTIFACTS,
    POOL,
    all_css,
    by_css,
    new_browser,
    present,
    require_browser,
    seed_fleet,
    shot,
    sign_in,
    start_service,
    wait_for,
)

SESSIONS = 10_000


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("VPP_WEB_SCALE") != "1", reason="set VPP_WEB_SCALE=1 to measure 10,000 sessions")
def test_the_portfolio_page_of_a_10000_session_pool_loads_and_is_measured(tmp_path: Path) -> None:
    require_browser()
    service, stop = start_service(tmp_path, dispatch_interval_s=30.0)
    browser = None
    try:
        began = time.monotonic()
        seed_fleet(service, sessions=SESSIONS, now=datetime.now(UTC), batch=True)
        seeded_s = time.monotonic() - began
        api = service.api()
        timings: dict[str, float] = {"seed_s": round(seeded_s, 1)}
        for name, path in (("api_pools_s", "/api/v1/portfolio/pools"),
                           ("api_flexibility_s", f"/api/v1/portfolio/pools/{POOL}/flexibility"),
                           ("api_sessions_page_s", f"/api/v1/ui/pools/{POOL}/sessions?limit=50")):
            started = time.monotonic()
            assert api.get(path).status_code == 200
            timings[name] = round(time.monotonic() - started, 3)
        browser = new_browser()
        sign_in(browser, service.base, service.keys["trader"])
        runs = []
        for _ in range(3):
            browser.get(f"{service.base}/ui#/settlement")
            started = time.monotonic()
            browser.get(f"{service.base}/ui#/portfolio?pool={POOL}")
            wait_for(browser, present("#sessions-table"), timeout=120, what="sessions table")
            runs.append(round(time.monotonic() - started, 3))
        timings["page_portfolio_s"] = runs  # type: ignore[assignment]
        assert by_css(browser, "#sessions-total").text == str(SESSIONS)
        assert len(all_css(browser, "#sessions-table tbody tr")) == 50
        shot(browser, "portfolio-10000-sessions")
        (ARTIFACTS / "scale.json").write_text(json.dumps(timings, indent=1))
        print(json.dumps(timings))
    finally:
        if browser is not None:
            browser.quit()
        stop()
