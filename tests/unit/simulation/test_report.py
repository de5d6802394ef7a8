"""The simulation report: its words come from the run, its money adds up, its data is valid JSON, it is one file."""

from __future__ import annotations

import dataclasses
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from vpp.simulation.kpis import Series
from vpp.simulation.report import describe, money_breakdown, render_report, report_data
from vpp.simulation.runner import CarTrace

AMSTERDAM = ZoneInfo("Europe/Amsterdam")
START = datetime(2024, 6, 11, 22, 0, tzinfo=UTC)  # 00:00 local on 12 June
ISPS = [START + timedelta(minutes=15 * k) for k in range(8)]
SCENARIO: dict[str, Any] = {
    "name": "t", "description": "runs an activation 21:00-21:15 (stale text)", "strategy": "smart",
    "prices": "nl-day-ahead", "history_days": 2, "dayahead": True,
    "cpos": [{"party": "NL/CPA", "locations": 2, "evses_per_location": 3, "evse_max_kw": 22, "category": "public",
              "sessions_per_evse_per_day": 1.5},
             {"party": "NL/CPC", "locations": 5, "evses_per_location": 1, "evse_max_kw": 11, "category": "home",
              "sessions_per_evse_per_day": 1.0, "v2g": True}],
    "congestion": [{"congestion_point": "8716", "cpos": ["NL/CPA"], "start": "00:30", "end": "01:30",
                    "max_kw": None, "max_share_of_peak": 0.6, "signal": "limit"}],
    "afrr": {"enabled": True, "direction": "down", "activations": [["00:30", "00:45"]], "setpoint_shape": "flat"},
}


def _series(**changes: Any) -> Series:
    n = len(ISPS)
    afrr_at = [START + timedelta(minutes=40, seconds=4 * k) for k in range(6)]
    setpoint = np.array([0.0, -0.8, -0.8, -0.8, -0.8, 0.0])
    values: dict[str, Any] = {
        "isp_starts": ISPS,
        "controlled_kw": np.array([100.0, 200.0, 300.0, 400.0, 0.0, 0.0, 0.0, 100.0]),
        "uncontrolled_kw": np.array([400.0, 400.0, 200.0, 100.0, 0.0, 0.0, 0.0, 0.0]),
        "prices_eur_per_mwh": np.array([200.0, 100.0, 50.0, 10.0, 10.0, 10.0, 10.0, 10.0]),
        "point_kw": {"8716": np.full(n, 30.0)},
        "point_uncontrolled_kw": {"8716": np.full(n, 50.0)},
        "point_limit_kw": {"8716": np.array([np.nan, np.nan, 36.0, 36.0, 36.0, 36.0, np.nan, np.nan])},
        "afrr_at": afrr_at, "afrr_setpoint_mw": setpoint, "afrr_supplied_mw": np.array([0, -0.5, np.nan, -.8, -.8, 0]),
        "afrr_ramped_mw": setpoint / 2, "afrr_flagged": np.zeros(6, dtype=bool),
        # Committed in the first four ISPs only: 150 kW each.
        "committed_kw": np.array([150.0, 150.0, 150.0, 150.0] + [np.nan] * 4),
    }
    values.update(changes)
    return Series(**values)


KPIS: dict[str, Any] = {"scenario": "t", "chargers": 11, "sessions_in_delivery": 14, "afrr_awarded_mw": 1.0,
                        "afrr_offered_mw": 2.0, "afrr_capacity_revenue_eur": 12.5, "cost_saving_pct": 10.0,
                        "notes": [], "wall_seconds": 3.0}


def test_the_saving_per_market_is_computed_by_hand_and_adds_up_to_the_cost_difference_and_the_afrr_revenue() -> None:
    money = dict(money_breakdown(KPIS, _series()))
    # Uncontrolled at the day-ahead price: (100*200 + 100*100 + 50*50 + 25*10) kWh*EUR/MWh / 1000 = 32.75 EUR.
    # The schedule: 37.5 kWh per ISP at 200, 100, 50, 10 -> 13.5 EUR; the last ISP (25 kWh, uncommitted) is
    # bought at its price: 0.25 EUR. Day-ahead: 32.75 - 13.75 = 19.0 EUR.
    assert money["day-ahead energy"] == pytest.approx(19.0)
    # Off the schedule: delivered - committed = -12.5, 12.5, 37.5, 62.5 kWh at 200, 100, 50, 10 EUR/MWh.
    assert money["imbalance"] == pytest.approx(-(-2.5 + 1.25 + 1.875 + 0.625))
    assert money["aFRR capacity"] == 12.5
    controlled_eur = (25 * 200 + 50 * 100 + 75 * 50 + 100 * 10 + 25 * 10) / 1000.0
    assert money["total"] == pytest.approx(32.75 - controlled_eur + 12.5)


def test_without_a_commitment_the_whole_energy_difference_is_the_day_ahead_market() -> None:
    money = dict(money_breakdown(KPIS, _series(committed_kw=np.zeros(0))))
    assert money["imbalance"] == 0.0
    assert money["day-ahead energy"] == pytest.approx(money["total"] - 12.5)


def test_the_description_is_written_from_the_run_not_from_the_yaml_text() -> None:
    text = " ".join(describe(KPIS, _series(), AMSTERDAM, SCENARIO))
    assert "stale text" not in text and "21:00" not in text
    assert "NL/CPA" in text and "NL/CPC" in text and "11 chargers" in text and "V2G" in text
    assert "Wednesday 12 June 2024 00:00 to 02:00" in text
    # The activation as the TSO asked for it: first and last non-zero 4-s step, local time.
    assert "1 MW awarded" in text and "from 00:40:04 to 00:40:20" in text
    assert "36.0 kW" in text and "60 % of its expected uncontrolled peak" in text
    assert "150.0 kWh" in text  # the schedule bought: 4 ISPs of 150 kW
    quiet = " ".join(describe(KPIS, _series(), AMSTERDAM, {**SCENARIO, "afrr": {"enabled": False}, "congestion": [],
                                                         "dayahead": False}))
    assert "No aFRR" in quiet and "No congestion" in quiet and "No day-ahead schedule" in quiet


def test_a_run_that_follows_the_sessions_past_the_period_marks_where_the_period_ended() -> None:
    @dataclasses.dataclass(frozen=True)
    class Followed(Series):
        window_isps: int = 0

    # Where Series has window_isps (the runs that follow the sessions), the report reads it from there.
    kind = Series if "window_isps" in {f.name for f in dataclasses.fields(Series)} else Followed
    fields = {f.name: getattr(_series(), f.name) for f in dataclasses.fields(Series)}
    followed = kind(**{**fields, "window_isps": 4})
    text = " ".join(describe(KPIS, followed, AMSTERDAM, SCENARIO))
    assert "00:00 to 01:00" in text and "followed until they left, to Wednesday 12 June 02:00" in text
    assert report_data(KPIS, followed, AMSTERDAM)["window_end"] == ISPS[4].timestamp()
    assert report_data(KPIS, _series(), AMSTERDAM)["window_end"] is None


def test_the_chart_data_is_json_without_nan_and_the_afrr_band_is_five_percent_around_the_ramped_request() -> None:
    trace = CarTrace(party="NL/CPA", session_id="S1", location_id="LOC1", evse_max_kw=22.0, start=START,
                     departure=START + timedelta(hours=2), need_kwh=20.0, at=[START, START + timedelta(minutes=15)],
                     seconds=[900.0, 900.0], limit_kw=[None, 7.5], power_kw=[0.0, 7.4], soc_pct=[40.0, 41.2])
    data = report_data(KPIS, _series(), AMSTERDAM, [trace])
    json.dumps(data, allow_nan=False)
    assert data["isp_t"][-1] - data["isp_t"][-2] == 900  # the last ISP's end, so its step is drawn
    assert data["pool"]["unit"] == "kW" and len(data["pool"]["committed"]) == len(data["isp_t"])
    assert data["points"][0]["limit"][:3] == [None, None, 36.0]
    assert data["afrr"]["low"][1] == pytest.approx(-0.42) and data["afrr"]["high"][1] == pytest.approx(-0.38)
    assert data["afrr"]["supplied"][2] is None
    # Two activation windows an hour apart are drawn with a gap between them, not a line across the hour.
    later = [*_series().afrr_at[:3], *(t + timedelta(hours=1) for t in _series().afrr_at[3:])]
    gapped = report_data(KPIS, _series(afrr_at=later), AMSTERDAM)["afrr"]
    assert len(gapped["t"]) == 7 and gapped["request"][3] is None and gapped["t"][3] == later[2].timestamp() + 4
    assert data["cars"][0]["limit"] == [None, 7.5, 7.5] and data["cars"][0]["t"][-1] == (START.timestamp() + 1800)
    # The energy saving summed ISP by ISP ends where the bars say (the bars add the aFRR capacity revenue).
    money = dict(money_breakdown(KPIS, _series()))
    assert data["money"]["cumulative"]["energy"][0] == 0.0
    assert data["money"]["cumulative"]["energy"][-1] == pytest.approx(money["total"] - 12.5, abs=0.01)
    big = report_data(KPIS, _series(uncontrolled_kw=np.full(8, 2500.0)), AMSTERDAM)
    assert big["pool"]["unit"] == "MW" and big["pool"]["uncontrolled"][0] == 2.5


def test_the_report_is_one_file_that_loads_nothing_from_outside() -> None:
    page = render_report(KPIS, _series(), AMSTERDAM, SCENARIO)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "<link" not in page and "@import" not in page
    assert "var uPlot=" in page and "MIT" in page
    assert all(f'id="{chart}"' in page for chart in ("chart-pool", "chart-price", "chart-afrr", "chart-point-0",
                                                      "chart-money"))
    data = page.split('<script id="report-data" type="application/json">', 1)[1].split("</script>", 1)[0]
    assert json.loads(data)["zone"] == "Europe/Amsterdam"
