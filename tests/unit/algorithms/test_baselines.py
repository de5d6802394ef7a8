from __future__ import annotations

import numpy as np
import pytest

from vpp.algorithms.baselines import (
    d_prognosis_baseline,
    meter_before_baseline,
    nominated_baseline,
    uncontrolled_baseline,
)
from vpp.domain.errors import InvalidInput


def test_nominated_and_d_prognosis_baselines_pass_values_through_with_their_method() -> None:
    assert nominated_baseline([1.0, 2.0]).method == "nominated"
    np.testing.assert_array_equal(d_prognosis_baseline([3.0]).values_kw, [3.0])
    assert d_prognosis_baseline([3.0]).method == "d_prognosis"


def test_meter_before_averages_the_window_before_the_activation() -> None:
    measured = np.array([10.0, 10.0, 12.0, 14.0, 3.0, 3.0])
    result = meter_before_baseline(measured, step_s=60, activation_start=4, activation_steps=2, window_s=180)
    np.testing.assert_allclose(result.values_kw, [12.0, 12.0])
    assert result.method == "meter_before"


def test_meter_before_is_unknown_when_the_window_lacks_data() -> None:
    measured = np.array([np.nan, np.nan, 5.0, 1.0])
    result = meter_before_baseline(measured, step_s=60, activation_start=3, activation_steps=1, window_s=180)
    assert np.isnan(result.values_kw).all()


def test_uncontrolled_counterfactual_charges_at_full_power_until_the_need_is_met() -> None:
    # Session 0: plugs in at 0:10, needs 5.5 kWh at 11 kW -> charges 0:10-0:40.
    # Session 1: plugs in at 0:00 but leaves at 0:15 before its need is met.
    result = uncontrolled_baseline([1 / 6, 0.0], [5.0, 0.25], [5.5, 100.0], [11.0, 7.4], intervals=4)
    expected = np.array([[11 * (5 / 15), 11.0, 11 * (10 / 15), 0.0], [7.4, 0.0, 0.0, 0.0]])
    np.testing.assert_allclose(result.values_kw, expected)
    assert result.method == "uncontrolled_counterfactual"
    np.testing.assert_allclose(result.values_kw[0].sum() * 0.25, 5.5)


def test_uncontrolled_counterfactual_refuses_departure_before_arrival() -> None:
    with pytest.raises(InvalidInput, match="departure_h"):
        uncontrolled_baseline([2.0], [1.0], [5.0], [11.0], intervals=4)
