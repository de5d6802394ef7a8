"""The simulation report in a real browser (headless Debian Chromium through Selenium), opened from disk offline.

The small end-to-end scenario (tests/e2e/test_simulate.py) runs through ``vpp simulate`` in-process; its
report.html is opened as a file. Every chart must have drawn something (a canvas with non-blank pixels), hovering
must show values in the scenario's local time, and nothing may be fetched. Screenshot: test-artifacts/web/report.png.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.test_simulate import SMALL
from tests.e2e.test_web_ui import ARTIFACTS, all_css, by_css, new_browser, require_browser, shot, wait_for

# Counts the pixels of a canvas that are not transparent.
INKED = """
const canvas = arguments[0];
const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
let inked = 0;
for (let k = 3; k < pixels.length; k += 4) if (pixels[k] > 0) inked++;
return [canvas.width, canvas.height, inked];
"""


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``vpp simulate --scenario small.yaml --out DIR`` (embedded mode); the report it wrote."""
    require_browser()
    from vpp.commands.simulate import simulate

    work = tmp_path_factory.mktemp("web-report")
    scenario_file = work / "e2e-small.yaml"
    scenario_file.write_text(yaml.safe_dump(SMALL))
    args = argparse.Namespace(scenario=str(scenario_file), out=str(work / "out"), quiet=True, list=False,
                              data_dir=None)
    with pytest.MonkeyPatch.context() as env:
        for name in ("VPP_DATABASE_URL", "VPP_REDIS_URL", "VPP_DATA_DIR"):
            env.delenv(name, raising=False)
        with contextlib.redirect_stdout(io.StringIO()):
            assert simulate(args) == 0
    return work / "out" / "report.html"


@pytest.fixture(scope="module")
def page(report: Path) -> Iterator[Any]:
    driver = new_browser(1280, 900)
    try:
        driver.get(report.as_uri())
        yield driver
    finally:
        driver.quit()


def test_every_chart_of_the_report_draws_and_the_page_is_shot(page: Any, report: Path) -> None:
    charts = wait_for(page, lambda d: all_css(d, ".chart[data-rendered]"), what="charts drawn")
    expected = all_css(page, ".chart")
    ids = [c.get_attribute("id") for c in expected]
    assert len(charts) == len(expected), f"drawn {len(charts)} of {ids}"
    assert {"chart-pool", "chart-price", "chart-afrr", "chart-point-0", "chart-money"} <= set(ids)
    # The small run follows at least one car.
    assert any(i.startswith("chart-car-") for i in ids), ids
    for chart in expected:
        canvas = chart.find_element("css selector", "canvas")
        width, height, inked = page.execute_script(INKED, canvas)
        assert width > 200 and height > 80, (chart.get_attribute("id"), width, height)
        # Axes alone ink a few thousand pixels; lines and bars more: a chart with no data would still pass
        # this, hence the data check below.
        assert inked > 2000, (chart.get_attribute("id"), inked)
        assert int(chart.get_attribute("data-rendered")) >= 2
    page.set_window_size(1280, page.execute_script("return document.body.scrollHeight") + 80)
    assert (ARTIFACTS / shot(page, "report")).stat().st_size > 50_000
    # No console errors (a failed script would leave the charts empty).
    severe = [e for e in page.get_log("browser") if e.get("level") == "SEVERE"]
    assert not severe, severe


def test_hovering_the_pool_chart_shows_the_power_at_the_local_time(page: Any) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    wait_for(page, lambda d: all_css(d, "#chart-pool[data-rendered]"), what="pool chart")
    over = by_css(page, "#chart-pool .u-over")
    page.execute_script("arguments[0].scrollIntoView({block: 'center'})", over)
    # Just inside the plot's left edge: the delivery window's first ISPs, 17:00 local time (Europe/Amsterdam).
    width = over.size["width"]
    ActionChains(page).move_to_element_with_offset(over, int(-width * 0.49), 0).perform()
    values = wait_for(page, lambda d: [v.text for v in all_css(d, "#chart-pool .u-legend .u-value")
                                       if v.text and v.text != "\u2013"], what="legend values on hover")
    assert values[0].startswith("2024-06-11 17:"), values  # in UTC it would read 15:
    assert any(v.endswith(" kW") for v in values[1:]), values


def test_the_charts_draw_what_the_run_recorded(page: Any, report: Path) -> None:
    html = report.read_text(encoding="utf-8")
    data = json.loads(html.split('<script id="report-data" type="application/json">', 1)[1].split("</script>", 1)[0])
    # The 8 ISPs of the two-hour window (and those the run followed its sessions for) plus the end of the last;
    # the delivered power drawn is what kpis.json says.
    assert len(data["isp_t"]) >= 9 and data["isp_t"][8] - data["isp_t"][0] == 2 * 3600
    assert data["window_end"] in (None, data["isp_t"][8])
    kpis = json.loads((report.parent / "kpis.json").read_text())
    delivered_kwh = sum(v for v in data["pool"]["delivered"][:-1]) / 4 * (1000 if data["pool"]["unit"] == "MW" else 1)
    assert delivered_kwh == pytest.approx(kpis["energy_delivered_kwh"], rel=0.01)
    drawn = page.execute_script("return document.querySelectorAll('.chart canvas').length")
    assert drawn == len(all_css(page, ".chart"))
