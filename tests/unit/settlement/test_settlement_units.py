"""Units of the settlement feature: meter gaps, activations, the 5 %/300 s rule on a pool day's steps."""

from __future__ import annotations

import numpy as np
import pandas as pd

from vpp.algorithms.settlement import settle_afrr
from vpp.settlement.afrr import Activation, find_activations, isp_weights
from vpp.settlement.sessions import PoolSessions, meter_grid


def _sessions(start_s: list[float], end_s: list[float]) -> PoolSessions:
    n = len(start_s)
    return PoolSessions(tuple(f"s{k}" for k in range(n)), tuple(f"c{k}" for k in range(n)), np.array(start_s),
                        np.array(end_s), np.full(n, 10.0), np.full(n, 11.0), np.full(n, np.nan))


def _readings(rows: list[tuple[int, float, float | None, float | None]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["session", "start_s", "power_kw", "energy_kwh"]).astype(
        {"power_kw": np.float64, "energy_kwh": np.float64})


def test_a_missing_reading_is_a_gap_and_never_zero() -> None:
    sessions = _sessions([0.0], [3600.0])
    readings = _readings([(0, 0.0, 10.0, 2.5), (0, 900.0, None, None), (0, 1800.0, 10.0, 2.5),
                          (0, 2700.0, 10.0, 2.5)])
    meter = meter_grid(sessions, readings, 4)
    assert meter.gap[0].tolist() == [False, True, False, False]
    assert np.isnan(meter.energy_kwh[0, 1])
    assert meter.energy_kwh[0, [0, 2, 3]].tolist() == [2.5, 2.5, 2.5]
    assert meter.missing_periods[0] == 1


def test_a_long_period_spreads_over_the_isps_it_covers() -> None:
    sessions = _sessions([450.0], [2250.0])
    meter = meter_grid(sessions, _readings([(0, 450.0, None, 5.0)]), 3)
    assert not meter.gap.any()
    np.testing.assert_allclose(meter.energy_kwh[0], [1.25, 2.5, 1.25])
    np.testing.assert_allclose(meter.session_energy_kwh, [5.0])


def test_a_session_without_readings_is_all_gap() -> None:
    meter = meter_grid(_sessions([0.0], [1800.0]), _readings([]), 2)
    assert meter.gap[0].tolist() == [True, True]
    assert np.isnan(meter.energy_kwh).all()


def test_activations_are_runs_of_one_direction() -> None:
    ramped = np.array([0.0, 0.5, 1.0, 1.0, 0.0, -0.5, -0.5, 0.3])
    assert find_activations(ramped) == [Activation(1, 3, 1), Activation(5, 6, -1), Activation(7, 7, 1)]


def test_isp_weights_are_the_covered_share_of_each_isp() -> None:
    weights = isp_weights(Activation(225 - 45, 225 + 89, 1), 3)
    np.testing.assert_allclose(weights, [45 / 225, 90 / 225, 0.0])


def test_shortfall_counts_only_once_more_than_5_percent_of_300_s_is_flagged() -> None:
    # 2 ISPs of 4-s steps, 1 MW requested from the start (after the first 300 s ramp), 75 steps per 300 s.
    steps = 450
    setpoint = np.ones(steps)
    baseline = np.full(steps, 5.0)
    measured = baseline - setpoint
    measured[300:303] = 5.0  # 3 of 75 steps short: 4 % of the window, allowed
    measured[400:405] = 5.0  # 5 of 75 steps short: 6.7 %, counted
    result = settle_afrr(setpoint, measured, baseline, 100.0, 200.0)
    counted = result.steps.counted & result.steps.flagged
    assert not counted[300:303].any()
    assert counted[404]
    assert result.counted_shortfall_mwh[0] == 0.0
    assert result.counted_shortfall_mwh[1] > 0.0
    assert result.penalty_eur[1] == result.counted_shortfall_mwh[1] * 200.0
