"""Forecast of future sessions and its backtest on simulated ElaadNL history."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pandas as pd
import pytest

from vpp.algorithms.forecast import backtest, forecast_sessions, isp_actuals
from vpp.data.elaad import simulate_history
from vpp.domain.errors import InvalidInput
from vpp.domain.isp import IspHorizon, delivery_day_isps


def test_simulated_history_is_reproducible() -> None:
    first = simulate_history(5, 20, "public", seed=9)
    second = simulate_history(5, 20, "public", seed=9)
    pd.testing.assert_frame_equal(first, second)
    assert (first["departure"] > first["arrival"]).all()
    dwell_h = (first["departure"] - first["arrival"]).dt.total_seconds() / 3600
    assert (first["energy_kwh"] <= 11.0 * dwell_h + 1e-9).all()


@pytest.mark.parametrize(("day", "hours"), [("2024-10-27", 25), ("2024-03-31", 23)])
def test_actuals_cover_a_clock_change_day_to_its_last_hour(day: str, hours: int) -> None:
    # A car arriving in the last hour of the local day (23:30 Amsterdam): the grid is the day's 100 or 92 ISPs,
    # not 24 hours from midnight (a 25-hour day's last hour fell outside it and the counts could not be shaped).
    late = pd.Timestamp(f"{day} 23:30", tz="Europe/Amsterdam").tz_convert("UTC")
    early = pd.Timestamp(f"{day} 08:00", tz="Europe/Amsterdam").tz_convert("UTC")
    history = pd.DataFrame({"arrival": [early, late], "departure": [early + pd.Timedelta(hours=2), late
                                                                    + pd.Timedelta(hours=2)],
                            "energy_kwh": [5.0, 6.0], "pool": ["p", "p"]})
    actual = isp_actuals(history, "Europe/Amsterdam").loc["p"]
    assert len(actual) == 4 * hours
    assert actual["arrivals"].sum() == 2
    assert actual.loc[late, "arrivals"] == 1


def test_actuals_count_arrivals_and_plugged_in_cars() -> None:
    t0 = pd.Timestamp("2025-01-06 10:00", tz="UTC")
    history = pd.DataFrame(
        {
            "arrival": [t0, t0 + pd.Timedelta(minutes=20)],
            "departure": [t0 + pd.Timedelta(hours=1), t0 + pd.Timedelta(minutes=40)],
            "energy_kwh": [5.0, 2.0],
            "pool": ["p", "p"],
        }
    )
    actual = isp_actuals(history).loc["p"]
    window = actual.loc[t0 : t0 + pd.Timedelta(minutes=45)]
    assert list(window["arrivals"]) == [1, 1, 0, 0]
    # counted at the ISP midpoints 10:07:30, 10:22:30, 10:37:30, 10:52:30
    assert list(window["plugged_in"]) == [1, 2, 2, 1]
    assert actual["energy_kwh"].sum() == pytest.approx(7.0)


def test_forecast_quantiles_are_ordered_and_cover_the_horizon() -> None:
    history = simulate_history(28, 30, "home", seed=2)
    horizon = IspHorizon(datetime(2024, 1, 29, 23, tzinfo=UTC), 96)
    forecast = forecast_sessions(history, horizon)
    assert len(forecast) == 96
    assert (forecast["arrivals_p10"] <= forecast["arrivals_p50"]).all()
    assert (forecast["arrivals_p50"] <= forecast["arrivals_p90"]).all()
    assert (forecast["p_max_kw_p90"] == forecast["plugged_in_p90"] * 11.0).all()
    assert forecast["arrivals_mean"].sum() == pytest.approx(30, rel=0.3)


def test_backtest_runs_on_simulated_history() -> None:
    report = backtest(simulate_history(42, 40, "public", seed=3), "sim", days=7)
    assert report["isps"] == 7 * 96
    for key in ("arrivals_mae", "arrivals_rmse", "plugged_kw_mae", "plugged_kw_rmse"):
        assert float(report[key]) >= 0
    assert 0.5 <= float(report["arrivals_coverage_p10_p90"]) <= 1.0
    assert abs(float(report["arrivals_bias"])) < 0.5


def test_backtest_needs_training_days() -> None:
    with pytest.raises(InvalidInput, match="days"):
        backtest(simulate_history(3, 10, "public", seed=1), "sim", days=5)


def test_forecast_over_the_autumn_dst_day_has_100_isps_per_pool() -> None:
    history = simulate_history(21, 20, "workplace", seed=4, start=date(2025, 10, 1))
    isps = delivery_day_isps(date(2025, 10, 26))
    forecast = forecast_sessions(history, IspHorizon(isps[0].to_pydatetime(), len(isps)))
    assert len(forecast.loc["sim"]) == 100
