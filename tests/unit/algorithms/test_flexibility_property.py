"""Property: any pool trajectory inside the published bounds is split exactly over the members."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from vpp.algorithms.flexibility import aggregate_pools, build_envelopes, disaggregate, envelope_arrays, plan_lag_model
from vpp.domain.flexibility import SessionFlexInput
from vpp.domain.isp import IspHorizon

DT = 0.25
TOL = 1e-6

session_strategy = st.tuples(
    st.floats(-2.0, 4.0),  # plug-in, hours from the horizon start
    st.floats(0.25, 9.0),  # dwell hours
    st.sampled_from([3.7, 7.4, 11.0, 22.0]),  # max kW
    st.floats(0.0, 1.2),  # need as a share of what the window allows (> 1: unmet)
    st.integers(0, 2),  # site
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sessions=st.lists(session_strategy, min_size=1, max_size=7),
    isps=st.integers(4, 28),
    lag_isps=st.integers(0, 10),
    catch_up=st.integers(2, 5),
    caps=st.tuples(st.floats(5.0, 60.0), st.floats(5.0, 60.0), st.just(np.inf)),
    draws=st.lists(st.floats(0.0, 1.0), min_size=28, max_size=28),
)
def test_any_trajectory_within_published_bounds_is_disaggregated_exactly(
    sessions: list[tuple[float, float, float, float, int]],
    isps: int,
    lag_isps: int,
    catch_up: int,
    caps: tuple[float, float, float],
    draws: list[float],
) -> None:
    t0 = pd.Timestamp("2025-03-30 00:00", tz="UTC")
    horizon = IspHorizon(datetime(2025, 3, 30, tzinfo=UTC), isps)
    plug = np.array([s[0] for s in sessions])
    dwell = np.array([s[1] for s in sessions])
    max_kw = np.array([s[2] for s in sessions])
    window = np.maximum(plug + dwell - np.maximum(plug, 0.0), 0.0)
    energy = np.array([s[3] for s in sessions]) * max_kw * window
    sites = np.array([s[4] for s in sessions], dtype=np.int64)
    inputs = SessionFlexInput(
        plugged_in=pd.DatetimeIndex(t0 + pd.to_timedelta(plug, unit="h")),
        departure=pd.DatetimeIndex(t0 + pd.to_timedelta(plug + dwell, unit="h")),
        energy_kwh=energy,
        max_kw=max_kw,
    )
    env = build_envelopes(inputs, horizon)
    cap_array = np.array(caps)
    model = plan_lag_model(env, max_lag_hours=lag_isps * DT, catch_up=catch_up, site_codes=sites, site_cap_kw=cap_array)
    codes = np.zeros(len(sessions), dtype=np.int64)
    pools = aggregate_pools(model, codes)
    assume(bool(pools.feasible[0]))

    # a random trajectory inside the published bounds, drawn forward through the feasible tube
    p_min, p_max = pools.p_min_kw[0], pools.p_max_kw[0]
    e_min, e_max = pools.e_min_kwh[0], pools.e_max_kwh[0]
    cumulative, previous = np.zeros(isps), 0.0
    for j in range(isps):
        low = max(e_min[j], previous + p_min[j] * DT)
        high = min(e_max[j], previous + p_max[j] * DT)
        assert low <= high + TOL
        previous = low + draws[j] * max(high - low, 0.0)
        cumulative[j] = previous
    schedule = np.diff(np.concatenate([[0.0], cumulative])) / DT

    members, power = disaggregate(model, codes, 0, schedule)
    dense = envelope_arrays(env, members, dtype=np.float64)
    np.testing.assert_allclose(power.sum(axis=0), schedule, atol=TOL)
    assert np.all(power >= dense.p_min_kw - TOL)
    assert np.all(power <= dense.p_max_kw + TOL)
    energy_so_far = np.cumsum(power, axis=1) * DT
    assert np.all(energy_so_far >= dense.e_min_kwh - TOL)
    assert np.all(energy_so_far <= dense.e_max_kwh + TOL)
    # every need that falls inside the horizon is met
    departs_inside = env.departure_h[members] <= isps * DT
    delivered = energy_so_far[:, -1]
    assert np.all(delivered[departs_inside] >= env.energy_required_kwh[members][departs_inside] - TOL)
    for site, cap in enumerate(caps):
        assert np.all(power[sites[members] == site].sum(axis=0) <= cap + TOL)
