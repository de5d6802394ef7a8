from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vpp.algorithms.settlement import (
    FlexOrderSettlement,
    attribute_to_sessions,
    check_afrr_steps,
    compare_flex_settlement,
    day_ahead_imbalance,
    flexibility_value_per_charger_month,
    ramp_limited_setpoint,
    reconcile_cdrs,
    session_contributions_kwh,
    settle_afrr,
    settle_flex_order,
    settle_flex_order_instance,
    split_pro_rata,
)
from vpp.benchmarks.settle import run_settle_bench
from vpp.domain.errors import InvalidInput

# --- USEF FlexOrder ------------------------------------------------------------------------------------------


def test_usef_settle_phase_example_is_reproduced_exactly() -> None:
    out = settle_flex_order_instance(
        {
            "price_eur_per_mw": 7,
            "penalty_eur_per_mw": 11,
            "isps": [{"baseline_mw": 10, "ordered_mw": 2, "actual_mw": a} for a in (7, 8, 9, 10, 11)],
        }
    )
    assert [isp["net_eur"] for isp in out["isps"]] == [14, 14, -4, -22, -33]
    assert [isp["delivered_mw"] for isp in out["isps"]] == [2, 2, 1, 0, 0]
    assert [isp["deficiency_mw"] for isp in out["isps"]] == [0, 0, 1, 2, 3]
    assert out["net_eur"] == -31


def test_flex_settlement_comparison_disputes_the_differing_isps() -> None:
    ours = settle_flex_order([10, 10, 10], 2, [7, 9, 11], 7, 11)
    theirs = FlexOrderSettlement(
        ours.delivered_mw, ours.deficiency_mw, ours.net_eur + np.array([0, 0, 1.0]), ours.total_net_eur + 1
    )
    assert compare_flex_settlement(ours, ours).disposition == "Accepted"
    disputed = compare_flex_settlement(ours, theirs, tolerance=0.01)
    assert disputed.disposition == "Disputed"
    assert disputed.differing_isps == (2,)


def test_flex_order_instance_refuses_missing_fields() -> None:
    with pytest.raises(InvalidInput, match="flex order"):
        settle_flex_order_instance({"price_eur_per_mw": 7, "isps": []})


# --- aFRR ----------------------------------------------------------------------------------------------------


def test_ramp_limited_setpoint_reaches_a_step_change_linearly_in_300_seconds() -> None:
    setpoint = np.r_[np.zeros(10), np.full(100, 10.0)]
    ramped = ramp_limited_setpoint(setpoint, step_s=4, ramp_s=300)
    np.testing.assert_allclose(ramped[10], 10 / 75)
    np.testing.assert_allclose(ramped[10 + 74], 10.0)
    assert (np.diff(ramped) >= 0).all()


def test_steps_inside_the_5_percent_band_are_not_flagged_and_below_it_are() -> None:
    setpoint = np.full(10, 10.0)
    baseline = np.full(10, 50.0)
    supplied = np.array([10, 9.6, 9.5, 9.49, 12, 10, 0, 10, 10, 10])
    steps = check_afrr_steps(setpoint, baseline - supplied, baseline)
    assert steps.flagged.tolist() == [False, False, False, True, False, False, True, False, False, False]
    np.testing.assert_allclose(steps.shortfall_mw[3], 0.01)
    np.testing.assert_allclose(steps.accepted_mw[4], 10.5)  # over-delivery paid up to the band edge


def _one_second_series(flagged_steps: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    setpoint = np.full(900, 10.0)
    baseline = np.zeros(900)
    supplied = np.full(900, 10.0)
    supplied[600 : 600 + flagged_steps] = 0.0  # consecutive flagged seconds inside one 300-s window
    return setpoint, baseline - supplied, baseline


def test_exactly_5_percent_flagged_in_300_seconds_is_not_counted() -> None:
    result = settle_afrr(*_one_second_series(15), 100.0, 1000.0, step_s=1.0)
    assert result.steps.flagged.sum() == 15
    assert not result.steps.counted.any()
    assert result.counted_shortfall_mwh[0] == 0
    assert result.penalty_eur[0] == 0
    assert result.shortfall_mwh[0] == pytest.approx(15 * 9.5 / 3600)


def test_more_than_5_percent_flagged_in_300_seconds_is_counted() -> None:
    result = settle_afrr(*_one_second_series(16), 100.0, 1000.0, step_s=1.0)
    assert result.steps.counted.sum() > 0
    # Only the 16th flagged second tips the window over 5 %: its shortfall is the one counted.
    assert result.counted_shortfall_mwh[0] == pytest.approx(9.5 / 3600)
    assert result.penalty_eur[0] == pytest.approx(1000 * 9.5 / 3600)


def test_afrr_per_isp_energy_payment_and_missing_steps() -> None:
    steps = 450  # two ISPs of 4-s steps
    setpoint = np.full(steps, 3.6)
    baseline = np.full(steps, 20.0)
    measured = baseline - setpoint
    measured[5] = np.nan
    result = settle_afrr(setpoint, measured, baseline, [100.0, 50.0], 500.0, ramp_s=4)
    np.testing.assert_allclose(result.requested_mwh, [0.9, 0.9])
    np.testing.assert_allclose(result.delivered_mwh, [0.9 - 3.6 * 4 / 3600, 0.9])
    assert result.missing_steps.tolist() == [1, 0]
    np.testing.assert_allclose(result.payment_eur, result.delivered_mwh * [100, 50])
    assert result.penalty_eur.sum() == 0


def test_downward_setpoints_count_more_consumption_as_delivery() -> None:
    setpoint = np.full(225, -2.0)
    baseline = np.full(225, 5.0)
    result = settle_afrr(setpoint, baseline + 2.0, baseline, 10.0, 0.0, ramp_s=4)
    np.testing.assert_allclose(result.delivered_mwh, [0.5])
    assert not result.steps.flagged.any()


def test_partial_isps_are_refused() -> None:
    with pytest.raises(InvalidInput, match="whole number of ISPs"):
        settle_afrr(np.ones(10), np.zeros(10), np.zeros(10), 1.0, 1.0)


# --- day-ahead, attribution ----------------------------------------------------------------------------------


def test_day_ahead_imbalance_is_metered_minus_scheduled_and_short_pays() -> None:
    result = day_ahead_imbalance([1.0, 0.5, np.nan], [0.8, 0.7, 1.0], [100.0, 100.0, 100.0], [40.0] * 3)
    np.testing.assert_allclose(result.imbalance_mwh[:2], [0.2, -0.2])
    np.testing.assert_allclose(result.cost_eur[:2], [20.0, -8.0])
    assert result.missing.tolist() == [False, False, True]
    assert result.total_cost_eur == pytest.approx(12.0)


@settings(max_examples=200, deadline=None)
@given(
    st.floats(-1e6, 1e6, allow_nan=False),
    st.lists(st.floats(-10, 100, allow_nan=False), min_size=1, max_size=30),
)
def test_pro_rata_split_adds_up_to_the_total_in_cents(total: float, weights: list[float]) -> None:
    shares = split_pro_rata(total, weights)
    if max(weights) > 0:
        assert int(np.round(shares * 100).sum()) == round(total * 100)
    assert (shares[np.asarray(weights) <= 0] == 0).all()


def test_attribution_follows_contribution_and_skips_flagged_sessions() -> None:
    counterfactual = np.array([[11.0, 11.0], [7.4, 7.4], [11.0, 0.0], [3.7, 3.7]])
    measured = np.array([[5.5, 5.5], [7.4, 7.4], [0.0, 0.0], [np.nan, 0.0]])
    contribution = session_contributions_kwh(counterfactual, measured)
    np.testing.assert_allclose(np.nansum(contribution, axis=1), [2.75, 0.0, 2.75, 0.925])
    shares = attribute_to_sessions(contribution, 100.0, 33.33, excluded=[False, False, False, True])
    assert shares.revenue_eur.tolist() == [50.0, 0.0, 50.0, 0.0]
    assert round(shares.penalty_eur.sum() * 100) == 3333
    assert shares.penalty_eur[3] == 0


def test_flexibility_value_per_charger_month_scales_to_a_month() -> None:
    value = flexibility_value_per_charger_month([10.0, 5.0, 1.0], [0, 0, 1], 3, period_days=365.25 / 12)
    np.testing.assert_allclose(value, [15.0, 1.0, 0.0])


# --- reconciliation ------------------------------------------------------------------------------------------


def test_reconciliation_flags_mismatches_gaps_and_missing_readings() -> None:
    # Session 0: clean. 1: CDR 20 % off. 2: a NaN reading leaves a 1-hour gap. 3: no readings at all.
    session = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 3])
    time_h = np.array([0.0, 0.25, 0.5, 0.0, 0.25, 0.5, 0.0, 0.25, 0.75, 1.25, 0.1])
    energy = np.array([100, 102, 104, 50, 55, 60, 10, 11, np.nan, 15, np.nan])
    result = reconcile_cdrs([4.0, 12.0, 5.0, 3.0], session, time_h, energy, abs_tolerance_kwh=0.5, rel_tolerance=0.02)
    np.testing.assert_allclose(result.metered_kwh[:3], [4.0, 10.0, 5.0])
    assert np.isnan(result.metered_kwh[3])
    assert result.mismatch.tolist() == [False, True, False, False]
    assert result.gap.tolist() == [False, False, True, False]
    assert result.no_readings.tolist() == [False, False, False, True]
    assert result.flagged.tolist() == [False, True, True, True]


def test_reconciliation_flags_a_late_first_reading_against_the_session_start() -> None:
    result = reconcile_cdrs([1.0], [0, 0], [2.0, 2.25], [0.0, 1.0], session_start_h=[1.0], session_end_h=[2.3])
    assert result.gap.tolist() == [True]


def test_settle_bench_runs_a_day() -> None:
    out = run_settle_bench(500)
    assert out["name"] == "settle"
    assert out["sessions"] == 500
    assert out["seconds"] > 0
