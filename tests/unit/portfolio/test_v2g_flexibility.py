"""A pool's flexibility counts what its V2G cars can discharge, present and forecast, within SoC floors and needs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from vpp.domain.isp import IspHorizon
from vpp.portfolio.fleet import Fleet
from vpp.portfolio.service import ForecastFlex, PortfolioConfig, combined_flexibility

DAY = IspHorizon(datetime(2024, 6, 11, 22, tzinfo=UTC), 96)
TRADED_AT = datetime(2024, 6, 11, 6, 45, tzinfo=UTC)
POOL = "zone:NL"


def _fleet() -> Fleet:
    # Two cars plugged in since 06:00 until 8 h into the delivery day, 10 kWh each at 11 kW; the first may
    # discharge 11 kW and has 30 - 12 = 18 kWh above its floor.
    n = 2
    pools = np.array([POOL] * n, dtype=object)
    nothing = np.array([None] * n, dtype=object)
    return Fleet(
        at=TRADED_AT, session_ids=("v2g", "car"), cpo_pool=nothing, site_pool=nothing, congestion_pool=nothing,
        zone_pool=pools, plugged_in=pd.DatetimeIndex([datetime(2024, 6, 11, 6, tzinfo=UTC)] * n),
        departure=pd.DatetimeIndex([DAY.start + timedelta(hours=8)] * n), delivered_kwh=np.zeros(n),
        energy_needed_kwh=np.array([10.0, 10.0]), max_kw=np.full(n, 11.0), discharge_kw=np.array([11.0, 0.0]),
        current_kw=np.zeros(n), soc_kwh=np.array([30.0, np.nan]), battery_kwh=np.array([60.0, np.nan]),
        min_soc_kwh=np.array([12.0, 0.0]), need_source=np.array(["explicit"] * n, dtype=object),
        need_confidence=np.ones(n), site_capacity_kw={}, congestion_max_kw={},
    )


def _forecast(plugged_p50: float, plugged_p10: float) -> ForecastFlex:
    plugged = {"p10": np.full(DAY.count, plugged_p10), "p50": np.full(DAY.count, plugged_p50),
               "p90": np.full(DAY.count, plugged_p50), "mean": np.full(DAY.count, plugged_p50)}
    return ForecastFlex(arrivals={q: np.zeros(DAY.count) for q in plugged}, plugged=plugged,
                        energy_per_arrival_kwh=10.0, dwell_hours=10.0, days_of_history=5)


def test_present_and_forecast_v2g_cars_lower_the_pool_minimum() -> None:
    flex = combined_flexibility(POOL, _fleet(), np.arange(2), DAY, _forecast(4.0, 2.0), PortfolioConfig())
    # The V2G car holds 11 kW for an hour (18 kWh above its floor) while 11 * (left - 1) >= 10 + 11, i.e. with
    # at least 2.91 h left (ISPs 0-20); then 11 * (left - 1) - 10: 9.25, 6.5, 3.75, 1 kW; then nothing.
    present = np.zeros(DAY.count)
    present[:21] = 11.0
    present[21:25] = [9.25, 6.5, 3.75, 1.0]
    # Forecast cars: half of the pool's cars are V2G, each holding 11 kW for an hour (10 kWh in 10 h leaves room):
    # 5.5 kW per car beyond the two present ones (p50: 2 more while they are here, then 4; p10: 0, then 2).
    extra_p50 = np.where(np.arange(DAY.count) < 32, 2.0, 4.0)
    extra_p10 = np.where(np.arange(DAY.count) < 32, 0.0, 2.0)
    np.testing.assert_allclose(flex.min_kw, -present - 5.5 * extra_p50)
    np.testing.assert_allclose(flex.min_kw_p90, -present - 5.5 * extra_p10)
    up, _ = flex.headroom_kw(np.zeros(DAY.count))
    assert up[0] == pytest.approx(11.0) and up[40] == pytest.approx(11.0)


def test_a_pool_without_v2g_cars_offers_no_discharge() -> None:
    fleet = _fleet()
    fleet = Fleet(**{**fleet.__dict__, "discharge_kw": np.zeros(2)})
    flex = combined_flexibility(POOL, fleet, np.arange(2), DAY, _forecast(4.0, 2.0), PortfolioConfig())
    np.testing.assert_allclose(flex.min_kw, 0.0)
    np.testing.assert_allclose(flex.min_kw_p90, 0.0)
