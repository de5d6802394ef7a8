"""The day-ahead instance carries only the energy a stay is due to charge inside the delivery day."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest

from vpp.algorithms.scheduling.problem import problem_from_instance
from vpp.domain.isp import IspHorizon
from vpp.portfolio.fleet import Fleet
from vpp.portfolio.service import (
    ForecastFlex,
    PortfolioConfig,
    dayahead_instance,
    forecast_flexibility,
    forecast_v2g,
)

DAY = IspHorizon(datetime(2024, 6, 11, 22, tzinfo=UTC), 96)
TRADED_AT = datetime(2024, 6, 11, 6, 45, tzinfo=UTC)
POOL = "zone:NL"


def _fleet(stays: list[tuple[datetime, datetime, float]]) -> Fleet:
    n = len(stays)
    pools = np.array([POOL] * n, dtype=object)
    nothing = np.array([None] * n, dtype=object)
    return Fleet(
        at=TRADED_AT, session_ids=tuple(f"s{k}" for k in range(n)), cpo_pool=nothing, site_pool=nothing,
        congestion_pool=nothing, zone_pool=pools,
        plugged_in=pd.DatetimeIndex([a for a, _, _ in stays], tz="UTC"),
        departure=pd.DatetimeIndex([d for _, d, _ in stays], tz="UTC"),
        delivered_kwh=np.zeros(n), energy_needed_kwh=np.array([e for _, _, e in stays]),
        max_kw=np.full(n, 11.0), discharge_kw=np.zeros(n), current_kw=np.zeros(n), soc_kwh=np.full(n, np.nan),
        battery_kwh=np.full(n, np.nan), min_soc_kwh=np.zeros(n), need_source=np.array(["explicit"] * n, dtype=object),
        need_confidence=np.ones(n), site_capacity_kw={}, congestion_max_kw={},
    )


def _forecast(arrivals_at: dict[int, float], dwell_hours: float, energy_kwh: float) -> ForecastFlex:
    counts = np.zeros(DAY.count)
    for t, count in arrivals_at.items():
        counts[t] = count
    quantiles = {q: counts.copy() for q in ("p10", "p50", "p90", "mean")}
    return ForecastFlex(arrivals=quantiles, plugged={q: np.zeros(DAY.count) for q in quantiles},
                        energy_per_arrival_kwh=energy_kwh, dwell_hours=dwell_hours, days_of_history=5)


def _sessions(fleet: Fleet, forecast: ForecastFlex | None) -> list[dict[str, Any]]:
    sessions: list[dict[str, Any]] = dayahead_instance(fleet, POOL, DAY, forecast, [50.0] * DAY.count, 0.9)["sessions"]
    return sessions


def test_a_forecast_arrival_staying_past_midnight_carries_only_the_share_of_its_energy_before_midnight() -> None:
    # 22:00 local = ISP 88; a 12-hour stay of which 2 hours lie inside the day
    (session,) = _sessions(_fleet([]), _forecast({88: 1}, dwell_hours=12.0, energy_kwh=24.0))
    assert (session["arrival"], session["departure"]) == (88, 96)
    assert session["energy_kwh"] == pytest.approx(24.0 * 8 / 48)


def test_a_forecast_arrival_leaving_inside_the_day_carries_its_whole_energy() -> None:
    sessions = _sessions(_fleet([]), _forecast({40: 2}, dwell_hours=4.0, energy_kwh=15.0))
    assert [s["energy_kwh"] for s in sessions] == [15.0, 15.0]
    assert [s["departure"] for s in sessions] == [56, 56]


def test_late_arrivals_no_longer_make_the_schedule_buy_their_whole_night_before_midnight() -> None:
    forecast = _forecast({84: 40, 88: 40}, dwell_hours=12.0, energy_kwh=20.0)
    problem = problem_from_instance(dayahead_instance(_fleet([]), POOL, DAY, forecast, [50.0] * DAY.count, 0.9))
    # 80 cars with 20 kWh each would need 1,600 kWh in the last 3 hours; they are due a quarter or less of it
    assert problem.energy_kwh.sum() == pytest.approx(40 * 20.0 * 12 / 48 + 40 * 20.0 * 8 / 48)
    assert (problem.energy_kwh <= problem.max_kw * (problem.departure - problem.arrival) * 0.25 + 1e-9).all()


def test_a_present_session_leaving_before_the_delivery_day_is_not_in_it() -> None:
    stays = [(TRADED_AT - timedelta(hours=1), TRADED_AT + timedelta(hours=8), 20.0)]
    assert _sessions(_fleet(stays), None) == []


def test_a_present_session_staying_into_the_delivery_day_carries_the_share_of_its_remaining_need_there() -> None:
    # plugged in now (08:45 local), leaves at 02:00 local: 15.25 h of its stay before midnight, 2 h after
    stays = [(TRADED_AT, DAY.start + timedelta(hours=2), 17.25)]
    (session,) = _sessions(_fleet(stays), None)
    assert (session["arrival"], session["departure"]) == (0, 8)
    assert session["energy_kwh"] == pytest.approx(2.0)


def test_the_forecast_counts_cars_still_plugged_in_when_it_was_made_and_not_the_hours_after() -> None:
    local = "Europe/Amsterdam"
    days = ("2024-06-10", "2024-06-11")
    history = pd.DataFrame({  # a Monday car 18:00-23:00 and five Tuesday-morning stays
        "pool": POOL,
        "arrival": [pd.Timestamp(f"{days[0]} 18:00", tz=local).tz_convert("UTC")]
        + [pd.Timestamp(f"{days[1]} 0{h}:00", tz=local).tz_convert("UTC") for h in range(1, 6)],
        "departure": [pd.Timestamp(f"{days[0]} 23:00", tz=local).tz_convert("UTC")]
        + [pd.Timestamp(f"{days[1]} 0{h}:30", tz=local).tz_convert("UTC") for h in range(1, 6)],
        "energy_kwh": 5.0,
    })
    plugged_now = pd.DataFrame({"arrival": pd.DatetimeIndex([pd.Timestamp(f"{days[1]} 07:00", tz=local)]),
                                "energy_kwh": [3.0]})
    wednesday = IspHorizon(datetime(2024, 6, 11, 22, tzinfo=UTC), 96)
    forecast = forecast_flexibility(history, wednesday, PortfolioConfig(), observed_until=TRADED_AT,
                                    plugged_now=plugged_now)
    assert forecast is not None
    # 19:00 local: observed on Monday only (one car), not on Tuesday evening, which had not happened yet
    assert forecast.plugged["p10"][76] == pytest.approx(1.0)
    # 08:00 local: the car plugged in since 07:00 on Tuesday counts, Monday had none
    assert forecast.plugged["mean"][32] == pytest.approx(0.5)
    assert forecast.energy_per_arrival_kwh == pytest.approx(5.0)


def test_charge_only_sessions_have_no_pace_floor_so_the_schedule_keeps_its_price_response() -> None:
    stays = [(DAY.start + timedelta(hours=1), DAY.start + timedelta(hours=5), 22.0)]
    sessions = _sessions(_fleet(stays), _forecast({40: 1}, dwell_hours=4.0, energy_kwh=8.0))
    assert [s["min_kw"] for s in sessions] == [0.0, 0.0]
    # The present car's 22 kWh over four hours start in its cheap hour at full power, not at 5.5 kW throughout.
    from vpp.algorithms.scheduling import solve_schedule

    prices = [100.0] * DAY.count
    prices[6:10] = [20.0] * 4
    instance = dayahead_instance(_fleet(stays), POOL, DAY, None, prices, 0.5)
    result = solve_schedule(problem_from_instance(instance))
    assert result.schedule_kw[0, 6:8] == pytest.approx([11.0, 11.0])
    assert result.schedule_kw[0].sum() * 0.25 == pytest.approx(22.0)


def test_forecast_arrivals_below_one_per_isp_add_up_to_the_cars_that_come() -> None:
    sessions = _sessions(_fleet([]), _forecast({40: 0.5, 41: 0.5, 42: 0.5, 43: 0.5}, dwell_hours=2.0,
                                               energy_kwh=5.0))
    assert [s["arrival"] for s in sessions] == [41, 43]


def test_forecast_arrivals_take_the_stays_of_past_arrivals_at_their_hour_in_turn() -> None:
    forecast = _forecast({40: 4}, dwell_hours=3.0, energy_kwh=10.0)
    short_and_long = (np.array([1.0, 12.0]), np.array([5.0, 20.0]))
    forecast = ForecastFlex(arrivals=forecast.arrivals, plugged=forecast.plugged, energy_per_arrival_kwh=10.0,
                            dwell_hours=3.0, days_of_history=5, stays_by_isp=(short_and_long,) * DAY.count)
    sessions = _sessions(_fleet([]), forecast)
    assert sorted(s["departure"] - s["arrival"] for s in sessions) == [4, 4, 48, 48]


def test_the_uncontrolled_baseline_counts_the_hours_since_plug_in() -> None:
    from vpp.portfolio.service import dispatch_snapshot

    # Plugged in 1 h and 3 h before, each needing 22 kWh at 11 kW: the first still charges uncontrolled, the
    # second would be done. With the index in µs and the clock in ns both looked done (baseline 0).
    at = TRADED_AT
    fleet = _fleet([(at - timedelta(hours=1), at + timedelta(hours=8), 22.0),
                    (at - timedelta(hours=3), at + timedelta(hours=8), 22.0)])
    fleet = Fleet(**{**fleet.__dict__, "plugged_in": fleet.plugged_in.as_unit("us")})
    snapshot = dispatch_snapshot(fleet, POOL, at, {})
    assert list(snapshot.baseline_kw) == [11.0, 0.0]


def test_cars_to_come_are_v2g_like_the_pools_v2g_cars_before_their_first_reading() -> None:
    # At the trading moment two cars have just arrived: one may discharge (60 kWh battery, floor 18 kWh) but has
    # sent no reading yet (no state of charge), the other is charge-only. Half the cars to come are V2G, taken to
    # arrive full less their need: a forecast car with 15 kWh to charge arrives with 60 - 15 = 45 kWh.
    fleet = _fleet([(TRADED_AT, TRADED_AT + timedelta(hours=2), 10.0)] * 2)
    fleet = Fleet(**{**fleet.__dict__, "battery_kwh": np.array([60.0, np.nan]), "min_soc_kwh": np.array([18.0, 0.0]),
                     "v2g_able": np.array([True, False])})
    assert forecast_v2g(fleet, np.arange(2)) == pytest.approx((0.5, 60.0, 60.0, 18.0))
    arriving = [s for s in _sessions(fleet, _forecast({72: 4}, dwell_hours=4.0, energy_kwh=15.0))
                if str(s["id"]).startswith("forecast")]
    v2g = [s for s in arriving if s["min_kw"] < 0]
    assert len(arriving) == 4 and len(v2g) == 2
    for car in v2g:
        assert (car["battery_kwh"], car["soc_kwh"], car["min_soc_kwh"], car["min_kw"]) == \
            pytest.approx((60.0, 45.0, 18.0, -11.0))


def test_a_read_state_of_charge_sets_the_arrival_of_the_cars_to_come_and_no_v2g_car_none() -> None:
    # The V2G car read 40 kWh after taking 10 kWh: it arrived with 30 kWh.
    fleet = _fleet([(TRADED_AT, TRADED_AT + timedelta(hours=2), 10.0)])
    fleet = Fleet(**{**fleet.__dict__, "battery_kwh": np.array([60.0]), "soc_kwh": np.array([40.0]),
                     "delivered_kwh": np.array([10.0]), "min_soc_kwh": np.array([18.0]),
                     "discharge_kw": np.array([11.0]), "v2g_able": np.array([True])})
    assert forecast_v2g(fleet, np.arange(1)) == pytest.approx((1.0, 60.0, 30.0, 18.0))
    assert forecast_v2g(_fleet([(TRADED_AT, TRADED_AT + timedelta(hours=2), 10.0)]), np.arange(1)) is None
