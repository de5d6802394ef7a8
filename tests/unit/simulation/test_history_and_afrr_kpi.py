"""The reported history, the warm-up start, the TSO's setpoint shape and how aFRR tracking is scored."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from vpp.simulation.kpis import _after_full_activation
from vpp.simulation.plan import plan_cpo, plan_history, timeline_of
from vpp.simulation.runner import setpoint_share
from vpp.simulation.scenario import Scenario

BASE = {"name": "t", "start": "2024-06-12", "cpos": [
    {"party": "NL/CPA", "locations": 3, "evses_per_location": 2, "category": "home", "sessions_per_evse_per_day": 1.0}]}


def test_history_ends_when_the_simulation_begins_and_leaves_the_simulated_sessions_as_they_were() -> None:
    plain = Scenario.model_validate(BASE)
    with_history = Scenario.model_validate({**BASE, "history_days": 2, "warmup_from": "06:00"})
    timeline = timeline_of(with_history)
    assert timeline.begin == datetime(2024, 6, 11, 6, 0, tzinfo=timeline.zone)
    history = plan_history(with_history.cpos[0], timeline, with_history.seed, with_history.history_days)
    assert history
    assert all(timeline.begin - timedelta(days=2) <= s.arrival < s.departure <= timeline.begin for s in history)
    # The simulated sessions come from their own stream: the history does not change them.
    assert plan_cpo(plain.cpos[0], timeline, plain.seed) == plan_cpo(with_history.cpos[0], timeline, plain.seed)


def test_the_warm_up_never_begins_after_the_trading_moment() -> None:
    timeline = timeline_of(Scenario.model_validate({**BASE, "warmup_from": "10:00"}))
    assert timeline.begin == timeline.trading_at


def test_the_varying_setpoint_ramps_over_the_full_activation_time_then_moves_between_full_and_half() -> None:
    assert setpoint_share("flat", 10.0) == 1.0
    assert [setpoint_share("varying", s) for s in (0.0, 150.0, 300.0, 479.0)] == pytest.approx([0.0, 0.5, 1.0, 1.0])
    assert [setpoint_share("varying", s) for s in (510.0, 540.0, 700.0, 750.0, 780.0)] == pytest.approx(
        [0.75, 0.5, 0.5, 0.75, 1.0])


def test_tracking_is_scored_once_the_setpoint_has_been_active_for_the_full_activation_time() -> None:
    start = datetime(2024, 6, 11, 22, 30, tzinfo=UTC)
    at = [start + timedelta(seconds=4 * k) for k in range(100)]
    setpoint = np.array([0.0] * 5 + [-0.8] * 90 + [0.0] * 5)
    scored = _after_full_activation(at, setpoint)
    # Non-zero from step 5 on: scored from 300 s later (step 80) while it stays non-zero (until step 94).
    assert np.flatnonzero(scored).tolist() == list(range(80, 95))
