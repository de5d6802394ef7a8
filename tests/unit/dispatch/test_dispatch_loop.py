"""The closed aFRR loop: step response, non-followers, telemetry loss, and the faults of fast telemetry."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from vpp.algorithms.dispatch import PoolLimits, integral_step, window_average_kw
from vpp.benchmarks.afrr_tracking import scored_steps
from vpp.dispatch.car_limits import CarLimits
from vpp.dispatch.cycle import DispatchParams, PoolDispatch, Setpoint
from vpp.dispatch.loop import ClosedLoop
from vpp.dispatch.sim import TelemetryFleet
from vpp.ports import LimitOutcome, LimitStatus

AT = datetime(2025, 6, 2, 17, 30, tzinfo=UTC)
STEP_S = 4.0
# As workers.dispatcher configures it for OCPI: without reading periods a limit is judged after 15 minutes.
PRODUCTION = DispatchParams(settle_s=900.0)


def _run(fleet: TelemetryFleet, state: PoolDispatch, setpoint_mw: list[float], *, silent_cpo: int | None = None,
         silent_from: int = 10**9, snapshot_periods: bool = True) -> tuple[np.ndarray, list[dict[str, int]]]:
    """Dispatch the fleet through a setpoint series; the supplied MW per step and each cycle's flags."""
    supplied = []
    flags = []
    kept: dict[str, np.ndarray] = {}
    for k, mw in enumerate(setpoint_mw):
        at = AT + timedelta(seconds=k * STEP_S)
        if silent_cpo is not None and k >= silent_from:
            # A CPO stopped pushing: its sessions' latest readings stay what they were.
            a = fleet.arrays
            if not kept:
                kept = {c: a[c].copy() for c in ("reading_kw", "reading_start_s", "reading_end_s")}
            silent = np.flatnonzero(a["cpo"][: kept["reading_kw"].size] == silent_cpo)
            for column, values in kept.items():
                a[column][silent] = values[silent]
        snapshot = fleet.snapshot(at)
        if not snapshot_periods:
            snapshot = replace(snapshot, reading_start_s=None, reading_end_s=None)
        plan = state.plan(snapshot, Setpoint(k, mw, at), PoolLimits())
        for sid, kw in zip(plan.send_ids, plan.send_kw, strict=True):
            fleet.set_limit(sid, kw)
        state.outcomes_arrived(at.timestamp(), [LimitOutcome(s, LimitStatus.ACCEPTED) for s in plan.send_ids],
                               plan.send_kw)
        flags.append(plan.flags)
        supplied.append((fleet.schedule_kw - fleet.step()) / 1000.0)
    return np.array(supplied), flags


def _fleet(n: int = 150, **kwargs: object) -> TelemetryFleet:
    fleet = TelemetryFleet.build(n, start_s=AT.timestamp(), arrivals_per_h=n / 10.0, **kwargs)  # type: ignore[arg-type]
    fleet.schedule_kw = 0.5 * float(fleet.drawable_kw().sum())
    return fleet


def _within(supplied: np.ndarray, requested: np.ndarray) -> float:
    scored = scored_steps(requested)
    return float(np.mean(np.abs(supplied[scored] - requested[scored]) <= 0.05 * np.abs(requested[scored])))


def _step(fleet: TelemetryFleet, minutes: float = 12.0, share: float = 0.25) -> np.ndarray:
    """Rest a minute, then a down step (more consumption) of ``share`` of the schedule."""
    steps = int(minutes * 60 / STEP_S)
    mw = -share * fleet.schedule_kw / 1000.0
    return np.array([0.0] * 15 + [round(mw, 3)] * (steps - 15))


def test_step_response_lands_within_5_pct_before_the_full_activation_time_and_open_loop_does_not() -> None:
    fleet = _fleet()
    requested = _step(fleet)
    supplied, flags = _run(fleet, PoolDispatch(pool=fleet.pool, params=PRODUCTION), requested.tolist())
    assert _within(supplied, requested) >= 0.95
    assert any("loop_correction_kw" in f for f in flags)
    # The same fleet without reading periods (as with 15-minute telemetry): no loop, no learned car limits.
    fleet = _fleet()
    supplied, flags = _run(fleet, PoolDispatch(pool=fleet.pool, params=PRODUCTION), requested.tolist(),
                           snapshot_periods=False)
    assert _within(supplied, requested) < 0.5
    assert all(f.get("loop_open") == 1 for f in flags)


def test_non_followers_are_covered_by_the_others() -> None:
    fleet = _fleet(non_followers=0.2)
    requested = _step(fleet)
    supplied, _ = _run(fleet, PoolDispatch(pool=fleet.pool, params=PRODUCTION), requested.tolist())
    assert _within(supplied, requested) >= 0.95


def test_a_cpo_whose_pushes_stop_mid_activation_keeps_the_last_estimates_then_the_loop_opens() -> None:
    fleet = _fleet()
    requested = _step(fleet, minutes=20.0)
    state = PoolDispatch(pool=fleet.pool, params=PRODUCTION)
    supplied, flags = _run(fleet, state, requested.tolist(), silent_cpo=0, silent_from=150)
    # While the estimates are kept the pool still follows ...
    kept = slice(150 + 20, 150 + int(300 / STEP_S) - 5)
    assert any(f.get("readings_stale", 0) > 0 for f in flags[kept])
    error = np.abs(supplied[kept] - requested[kept]) / np.abs(requested[kept])
    assert float(np.mean(error <= 0.05)) >= 0.9
    # ... and the other CPOs' readings keep the loop closed after the silent ones are forgotten.
    assert not any(f.get("loop_open") for f in flags[-10:])


def test_without_any_fresh_reading_the_correction_decays_back_to_the_plan() -> None:
    loop = ClosedLoop()
    ids = ("a", "b")
    loop.record(ids, np.array([10.0, 10.0]), 20.0, 0.0, 0)
    reading = loop.read(ids, np.array([5.0, 5.0]), np.array([0.0, 0.0]), np.array([10.0, 10.0]),
                        np.full(2, 22.0), 12.0, -100.0, 100.0)
    assert reading.deviation_kw == pytest.approx(10.0) and loop.correction_kw > 0
    loop.record(ids, np.array([12.0, 12.0]), 20.0 + loop.correction_kw, 12.0, 0)
    before = loop.correction_kw
    # Nothing new for longer than a car's estimate is kept: open loop, the correction decays.
    for t in range(400, 440, 4):
        reading = loop.read(ids, np.array([5.0, 5.0]), np.array([0.0, 0.0]), np.array([10.0, 10.0]),
                            np.full(2, 22.0), float(t), -100.0, 100.0)
    assert reading.flags.get("loop_open") == 1
    assert abs(loop.correction_kw) < 0.01 * abs(before)


def test_a_car_without_a_new_reading_keeps_its_last_estimate() -> None:
    loop = ClosedLoop()
    ids = ("a", "b")
    loop.record(ids, np.array([10.0, 10.0]), 20.0, 0.0, 0)
    loop.read(ids, np.array([6.0, 10.0]), np.array([0.0, 0.0]), np.array([10.0, 10.0]), np.full(2, 22.0),
              12.0, -100.0, 100.0)
    assert loop.deviation_kw.tolist() == pytest.approx([4.0, 0.0])
    # 'a' reports nothing new for a while: still counted 4 kW short, flagged stale once its reading is old.
    reading = loop.read(ids, np.array([6.0, 10.0]), np.array([0.0, 70.0]), np.array([10.0, 80.0]),
                        np.full(2, 22.0), 84.0, -100.0, 100.0)
    assert reading.deviation_kw == pytest.approx(4.0)
    assert reading.flags.get("readings_stale") == 1


def test_a_silent_car_limited_car_gets_a_wider_margin() -> None:
    limits = CarLimits()
    limits.record_sent(["a"], [22.0], 0.0, 0)
    args = dict(settle_s=0.0, settle_cycles=0, tolerance_kw=1.0, opened_s=np.array([1.0]))
    fresh = limits.plan_max_kw(["a"], np.array([7.0]), np.array([22.0]), np.array([math.nan]), np.array([True]),
                               np.array([22.0]), 20.0, 5, **args)  # type: ignore[arg-type]
    silent = limits.plan_max_kw(["a"], np.array([7.0]), np.array([22.0]), np.array([math.nan]), np.array([True]),
                                np.array([22.0]), 200.0, 6, margin_scale=np.array([3.0]), **args)  # type: ignore[arg-type]
    assert fresh[0] == pytest.approx(7.5)
    assert silent[0] == pytest.approx(7.0 + 3 * 0.5)


def test_out_of_order_and_stale_readings_do_not_move_the_estimate() -> None:
    loop = ClosedLoop()
    ids = ("a",)
    loop.record(ids, np.array([10.0]), 10.0, 0.0, 0)
    loop.read(ids, np.array([8.0]), np.array([10.0]), np.array([20.0]), np.array([22.0]), 24.0, -50.0, 50.0)
    assert loop.deviation_kw[0] == pytest.approx(2.0)
    # An older period arrives after the newer one (a retried PATCH): ignored.
    reading = loop.read(ids, np.array([1.0]), np.array([0.0]), np.array([10.0]), np.array([22.0]), 28.0, -50.0, 50.0)
    assert reading.flags.get("readings_out_of_order") == 1
    assert loop.deviation_kw[0] == pytest.approx(2.0)


def test_a_reading_above_the_chargers_maximum_is_ignored_and_one_above_its_limit_counts_as_overdraw() -> None:
    loop = ClosedLoop()
    ids = ("a", "b")
    loop.record(ids, np.array([5.0, 5.0]), 10.0, 0.0, 0)
    reading = loop.read(ids, np.array([60.0, 9.0]), np.array([0.0, 0.0]), np.array([10.0, 10.0]),
                        np.array([11.0, 11.0]), 12.0, -50.0, 50.0)
    assert reading.flags.get("readings_implausible") == 1
    assert math.isnan(loop.deviation_kw[0])
    # 'b' draws 4 kW above the 5 kW it was counted at: the pool correction goes down to make up for it.
    assert loop.deviation_kw[1] == pytest.approx(-4.0) and loop.correction_kw < 0


def test_a_car_that_draws_more_than_its_limit_is_pinned_at_what_it_draws() -> None:
    fleet = _fleet(40, non_followers=0.0)
    fleet.arrays["follows"][:5] = 0.0
    # Upward: less consumption, so limits fall below what the cars that ignore them draw.
    requested = _step(fleet, minutes=6.0, share=-0.25)
    state = PoolDispatch(pool=fleet.pool, params=replace(PRODUCTION, follow_cycles=2))
    _run(fleet, state, requested.tolist())
    drawable = fleet.drawable_kw()
    ignoring = {fleet.ids[i] for i in range(5) if drawable[i] > state.last_kw.get(fleet.ids[i], math.inf) + 1.0}
    assert ignoring and ignoring <= set(state.discounted_until)


def test_when_the_setpoint_stream_stops_the_pool_goes_back_to_its_plan() -> None:
    fleet = _fleet(60)
    state = PoolDispatch(pool=fleet.pool, params=replace(PRODUCTION, setpoint_max_age_s=60.0))
    last_setpoint = Setpoint(1, -0.05, AT)
    plans = []
    for k in range(40):
        at = AT + timedelta(seconds=k * STEP_S)
        plan = state.plan(fleet.snapshot(at), last_setpoint, PoolLimits())
        for sid, kw in zip(plan.send_ids, plan.send_kw, strict=True):
            fleet.set_limit(sid, kw)
        state.outcomes_arrived(at.timestamp(), [LimitOutcome(s, LimitStatus.ACCEPTED) for s in plan.send_ids],
                               plan.send_kw)
        fleet.step()
        plans.append(plan)
    assert plans[5].target_kw == pytest.approx(fleet.schedule_kw + 50.0)
    assert plans[-1].target_kw == pytest.approx(fleet.schedule_kw)
    assert plans[-1].flags.get("setpoint_expired") == 1 and plans[-1].setpoint.setpoint_mw == 0.0


def test_the_integral_stops_in_a_direction_the_allocation_could_not_follow() -> None:
    assert integral_step(10.0, 20.0, 0.5, -100.0, 100.0, saturated=1) == 10.0
    assert integral_step(10.0, -20.0, 0.5, -100.0, 100.0, saturated=1) == 0.0
    assert integral_step(10.0, 400.0, 0.5, -100.0, 100.0, saturated=0) == 100.0


def test_window_average_weights_the_history_over_each_reading_period() -> None:
    times = np.array([0.0, 4.0, 8.0])
    values = np.array([[10.0, 0.0], [20.0, math.nan], [30.0, 5.0]])
    average, covered = window_average_kw(times, values, np.array([2.0, 2.0]), np.array([10.0, 10.0]))
    assert average[0] == pytest.approx((2 * 10 + 4 * 20 + 2 * 30) / 8)
    assert covered.tolist() == pytest.approx([1.0, 0.5])


def test_with_per_car_plans_the_pool_baseline_is_the_sum_of_the_plans_where_there_are_plans() -> None:
    from vpp.algorithms.dispatch import planned_baseline_kw, pool_baseline_kw

    fleet = _fleet(4)
    snapshot = replace(fleet.snapshot(AT), schedule_kw=100.0)
    assert pool_baseline_kw(snapshot, PoolLimits()) == 100.0
    planned = replace(snapshot, planned_kw=np.array([3.0, math.nan, 0.0, -2.0]))
    # The car without a plan counts at its even pace (over its hours less the finish margin and the taper's extra
    # time), at most its baseline.
    from vpp.algorithms.dispatch import taper_hours

    hours = taper_hours(snapshot, np.asarray(snapshot.hours_to_departure) - 0.25, None)
    unplanned = min(float(snapshot.baseline_kw[1]), float(snapshot.energy_needed_kwh[1] / hours[1]))
    assert planned_baseline_kw(planned).tolist() == pytest.approx([3.0, unplanned, 0.0, -2.0])
    assert pool_baseline_kw(planned, PoolLimits()) == pytest.approx(1.0 + unplanned)
