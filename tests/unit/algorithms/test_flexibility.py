"""Hand-computed session envelopes, pool aggregation and disaggregation."""

from __future__ import annotations

from datetime import UTC, date, datetime

import numpy as np
import pandas as pd
import pytest

from vpp.algorithms.flexibility import (
    aggregate_pools,
    build_envelopes,
    disaggregate,
    discharge_kw,
    envelope_arrays,
    headroom,
    plan_lag_model,
    plugged_discharge_kw,
)
from vpp.benchmarks.flexibility import run_flexibility_bench
from vpp.domain.errors import InvalidInput
from vpp.domain.flexibility import SessionFlexInput, discharge_limit_kw
from vpp.domain.isp import IspHorizon, delivery_day_isps

T0 = pd.Timestamp("2025-01-06 00:00", tz="UTC")
HORIZON = IspHorizon(datetime(2025, 1, 6, tzinfo=UTC), 8)


def at(hours: float) -> pd.Timestamp:
    return T0 + pd.Timedelta(hours=hours)


def one_session(**fields: object) -> SessionFlexInput:
    base: dict[str, object] = {
        "plugged_in": pd.DatetimeIndex([at(0)]),
        "departure": pd.DatetimeIndex([at(1)]),
        "energy_kwh": np.array([4.0]),
        "max_kw": np.array([8.0]),
    }
    base.update(fields)
    return SessionFlexInput(**base)  # type: ignore[arg-type]


def test_charge_only_envelope_matches_hand_computation() -> None:
    env = build_envelopes(one_session(), HORIZON)
    dense = envelope_arrays(env, dtype=np.float64)
    np.testing.assert_allclose(dense.p_max_kw[0], [8, 8, 8, 8, 0, 0, 0, 0])
    np.testing.assert_allclose(dense.p_min_kw[0], 0)
    # need 4 kWh by 1 h at 8 kW: must start by 0.5 h
    np.testing.assert_allclose(dense.e_min_kwh[0], [0, 0, 2, 4, 4, 4, 4, 4])
    np.testing.assert_allclose(dense.e_max_kwh[0], [2, 4, 4, 4, 4, 4, 4, 4])
    np.testing.assert_allclose(dense.baseline_kw[0], [8, 8, 0, 0, 0, 0, 0, 0])
    assert env.energy_required_kwh[0] == 4 and env.energy_max_kwh[0] == 4 and not env.unmet[0]


def test_partial_first_isp_is_prorated() -> None:
    env = build_envelopes(one_session(plugged_in=pd.DatetimeIndex([at(0.125)])), HORIZON)
    dense = envelope_arrays(env, dtype=np.float64)
    np.testing.assert_allclose(dense.p_max_kw[0], [4, 8, 8, 8, 0, 0, 0, 0])
    np.testing.assert_allclose(dense.e_max_kwh[0], [1, 3, 4, 4, 4, 4, 4, 4])
    np.testing.assert_allclose(dense.baseline_kw[0], [4, 8, 4, 0, 0, 0, 0, 0])
    np.testing.assert_allclose(dense.e_min_kwh[0], [0, 0, 2, 4, 4, 4, 4, 4])


def test_unmet_need_is_flagged_with_the_deliverable_energy() -> None:
    env = build_envelopes(one_session(energy_kwh=np.array([10.0])), HORIZON)
    assert env.unmet[0]
    assert env.energy_max_kwh[0] == pytest.approx(8.0)
    assert env.energy_required_kwh[0] == pytest.approx(8.0)
    assert env.shortfall_kwh[0] == pytest.approx(2.0)
    dense = envelope_arrays(env, dtype=np.float64)
    np.testing.assert_allclose(dense.e_min_kwh[0], dense.e_max_kwh[0])


def test_v2g_envelope_respects_the_soc_floor_and_the_need() -> None:
    sessions = one_session(
        departure=pd.DatetimeIndex([at(2)]),
        energy_kwh=np.array([2.0]),
        min_kw=np.array([-8.0]),
        battery_kwh=np.array([50.0]),
        soc_kwh=np.array([13.0]),
        min_soc_kwh=np.array([10.0]),
    )
    env = build_envelopes(sessions, HORIZON)
    dense = envelope_arrays(env, dtype=np.float64)
    np.testing.assert_allclose(dense.p_min_kw[0], [-8, -8, -8, -8, -8, -8, -8, -8])
    # discharge at 8 kW until the 3 kWh above the floor are gone, and be able to return +2 kWh by 2 h
    np.testing.assert_allclose(dense.e_min_kwh[0], [-2, -3, -3, -3, -3, -2, 0, 2])
    np.testing.assert_allclose(dense.e_max_kwh[0], [2, 4, 6, 8, 10, 12, 14, 16])
    assert env.floor_kwh[0] == pytest.approx(-3.0)


def test_v2g_needs_evse_connection_and_consent() -> None:
    limits = discharge_limit_kw(
        np.array([11.0, 11.0, 11.0]), np.array([1, 1, 0]), np.array([1, 1, 1]), np.array([1, 0, 1])
    )
    np.testing.assert_allclose(limits, [-11.0, 0.0, 0.0])


def test_departure_before_plug_in_is_rejected() -> None:
    with pytest.raises(InvalidInput, match="departure"):
        one_session(departure=pd.DatetimeIndex([T0 - pd.Timedelta(hours=1)]))


def test_naive_times_are_rejected() -> None:
    with pytest.raises(InvalidInput, match="plugged_in"):
        one_session(plugged_in=pd.DatetimeIndex([datetime(2025, 1, 6)]))


def two_site_sessions() -> SessionFlexInput:
    return SessionFlexInput(
        plugged_in=pd.DatetimeIndex([at(0)] * 4),
        departure=pd.DatetimeIndex([at(2)] * 4),
        energy_kwh=np.array([2.0, 2.0, 2.0, 2.0]),
        max_kw=np.array([8.0, 8.0, 8.0, 8.0]),
    )


def test_pool_bounds_are_deliverable_and_contain_the_nominal_schedule() -> None:
    env = build_envelopes(two_site_sessions(), HORIZON)
    model = plan_lag_model(env, max_lag_hours=0.5, catch_up=3)
    assert model.flexible.all()
    pools = aggregate_pools(model, np.zeros(4, dtype=np.int64))
    assert pools.feasible[0]
    np.testing.assert_allclose(pools.baseline_kw[0], [32, 0, 0, 0, 0, 0, 0, 0])
    assert pools.e_min_kwh[0, -1] == pytest.approx(8.0)
    assert pools.e_max_kwh[0, -1] == pytest.approx(8.0)
    # nominal ramp: each car spreads 2 kWh over 1.5 h
    nominal_kw = 4 * 2.0 / 1.5
    schedule = np.array([nominal_kw] * 6 + [0.0, 0.0])
    _, power = disaggregate(model, np.zeros(4, dtype=np.int64), 0, schedule)
    np.testing.assert_allclose(power.sum(axis=0), schedule, atol=1e-9)
    np.testing.assert_allclose(power.sum(axis=1) * 0.25, 2.0, atol=1e-9)
    # deferring costs nothing as long as the pool catches up within the lag
    deferred = np.array([0.0, 0.0] + [nominal_kw] * 6)
    _, power = disaggregate(model, np.zeros(4, dtype=np.int64), 0, deferred)
    np.testing.assert_allclose(power.sum(axis=1) * 0.25, 2.0, atol=1e-9)
    assert power.max() <= 8.0 + 1e-9


def test_schedule_outside_the_bounds_is_rejected() -> None:
    env = build_envelopes(two_site_sessions(), HORIZON)
    model = plan_lag_model(env, max_lag_hours=0.5, catch_up=3)
    with pytest.raises(InvalidInput, match="schedule_kw"):
        disaggregate(model, np.zeros(4, dtype=np.int64), 0, np.zeros(8))


def test_site_cap_limits_pool_power_and_keeps_sites_within_their_cap() -> None:
    env = build_envelopes(two_site_sessions(), HORIZON)
    sites = np.array([0, 0, 1, 1])
    # site 0 may draw 6 kW: too little for its baseline (16 kW) but enough for a 3x nominal ramp (2 x 4 kW)?
    caps = np.array([12.0, np.inf])
    model = plan_lag_model(env, max_lag_hours=0.5, catch_up=3, site_codes=sites, site_cap_kw=caps)
    site_pools = aggregate_pools(model, sites, 2, pool_cap_kw=caps)
    assert np.all(site_pools.p_max_kw[0] <= 12.0 + 1e-9)
    zone = aggregate_pools(model, np.zeros(4, dtype=np.int64))
    assert zone.feasible[0]
    upper = zone.p_max_kw[0].copy()
    cumulative = np.minimum(np.cumsum(upper) * 0.25, zone.e_max_kwh[0])
    schedule = np.diff(np.concatenate([[0.0], cumulative])) / 0.25
    members, power = disaggregate(model, np.zeros(4, dtype=np.int64), 0, schedule)
    assert np.all(power[sites[members] == 0].sum(axis=0) <= 12.0 + 1e-9)


def test_site_whose_must_run_load_exceeds_its_cap_is_infeasible() -> None:
    sessions = one_session(energy_kwh=np.array([8.0]))
    env = build_envelopes(sessions, HORIZON)
    model = plan_lag_model(env, site_codes=np.array([0]), site_cap_kw=np.array([4.0]))
    pools = aggregate_pools(model, np.array([0]))
    assert model.site_overloaded is not None and model.site_overloaded[0]
    assert not pools.feasible[0]


def test_headroom_around_a_schedule() -> None:
    env = build_envelopes(two_site_sessions(), HORIZON)
    model = plan_lag_model(env, max_lag_hours=0.5, catch_up=3)
    pools = aggregate_pools(model, np.zeros(4, dtype=np.int64))
    nominal_kw = 4 * 2.0 / 1.5
    schedule = np.array([[nominal_kw] * 6 + [0.0, 0.0]])
    up, down = headroom(pools, schedule)
    assert up[0, 0] == pytest.approx(nominal_kw)
    assert down[0, 0] == pytest.approx(0.0)
    assert np.all(up >= 0) and np.all(down >= 0)


def test_envelopes_on_the_autumn_dst_delivery_day_have_100_isps() -> None:
    isps = delivery_day_isps(date(2025, 10, 26))
    horizon = IspHorizon(isps[0].to_pydatetime(), len(isps))
    sessions = SessionFlexInput(
        plugged_in=pd.DatetimeIndex([isps[0]]),
        departure=pd.DatetimeIndex([isps[-1]]),
        energy_kwh=np.array([20.0]),
        max_kw=np.array([11.0]),
    )
    env = build_envelopes(sessions, horizon)
    dense = envelope_arrays(env)
    assert dense.p_max_kw.shape == (1, 100)
    pools = aggregate_pools(plan_lag_model(env), np.array([0]))
    assert pools.p_max_kw.shape == (1, 100) and pools.feasible[0]


def test_bench_runs_on_a_small_fleet() -> None:
    result = run_flexibility_bench(sessions=2000, hours=24, seed=3)
    assert result["name"] == "flexibility" and result["isps"] == 96 and result["sessions"] == 2000
    assert float(str(result["seconds"])) > 0


def test_v2g_discharge_is_held_above_the_soc_floor_and_within_the_need() -> None:
    # 3 kWh above the floor held for 0.5 h: 6 kW. Need 2 kWh by 2 h at 8 kW: after giving back p * 0.5 h with
    # `left` hours to go, 8 * (left - 0.5) >= 2 + 0.5 p, so p <= 16 * left - 12: 4 kW at 1 h left, 0 at 0.75 h.
    sessions = one_session(departure=pd.DatetimeIndex([at(2)]), energy_kwh=np.array([2.0]), min_kw=np.array([-8.0]),
                           battery_kwh=np.array([50.0]), soc_kwh=np.array([13.0]), min_soc_kwh=np.array([10.0]))
    env = build_envelopes(sessions, HORIZON)
    np.testing.assert_allclose(discharge_kw(env, 0.5)[0], [6, 6, 6, 6, 4, 0, 0, 0])
    # Without a known state of charge nothing is offered; a charge-only car offers nothing either.
    unknown = build_envelopes(one_session(departure=pd.DatetimeIndex([at(2)]), min_kw=np.array([-8.0])), HORIZON)
    np.testing.assert_allclose(discharge_kw(unknown, 0.5), 0)
    np.testing.assert_allclose(discharge_kw(build_envelopes(one_session(), HORIZON), 0.5), 0)
    with pytest.raises(InvalidInput, match="hold_h"):
        discharge_kw(env, 0.0)


def test_a_plugged_v2g_car_still_to_come_offers_what_its_need_leaves_on_average() -> None:
    # Stays of 4 h / 10 kWh and 2 h / 10 kWh, met halfway: 11 * (2 - 1) - 5 = 6 kW, capped at 5 kW by the car;
    # 11 * (1 - 1) - 5 < 0: nothing. Weighted by stay length: (4 * 5 + 2 * 0) / 6.
    assert plugged_discharge_kw(5.0, np.array([4.0, 2.0]), np.array([10.0, 10.0]), 11.0, 1.0) == pytest.approx(20 / 6)
    assert plugged_discharge_kw(5.0, np.array([0.0]), np.array([0.0]), 11.0, 1.0) == 0.0
    with pytest.raises(InvalidInput, match="hold_h"):
        plugged_discharge_kw(5.0, np.array([4.0]), np.array([1.0]), 11.0, 0.0)
