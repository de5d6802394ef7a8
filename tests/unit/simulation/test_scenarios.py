"""Scenario files and the session plan drawn from them."""

from __future__ import annotations

from datetime import timedelta
from itertools import pairwise

import pytest
from pydantic import ValidationError

from vpp.simulation.plan import plan_car_sharing, plan_cpo, timeline_of
from vpp.simulation.scenario import Scenario, bundled_scenarios, load_scenario

BASE = {"name": "t", "start": "2024-06-11", "cpos": [
    {"party": "NL/CPA", "locations": 2, "evses_per_location": 3, "sessions_per_evse_per_day": 2.0}]}


def test_every_bundled_scenario_loads() -> None:
    names = bundled_scenarios()
    assert {"demo", "utrecht", "toulouse", "home-14a"} <= set(names)
    for name in names:
        assert load_scenario(name).name


def test_a_congestion_event_on_an_unknown_cpo_is_refused() -> None:
    with pytest.raises(ValidationError):
        Scenario.model_validate({**BASE, "congestion": [
            {"congestion_point": "X", "cpos": ["NL/ZZZ"], "start": "17:00", "end": "20:00", "max_kw": 10}]})


def test_a_uftp_congestion_signal_is_refused_until_it_is_simulated() -> None:
    with pytest.raises(ValidationError, match="not simulated yet"):
        Scenario.model_validate({**BASE, "congestion": [
            {"congestion_point": "X", "cpos": [BASE["cpos"][0]["party"]], "start": "17:00", "end": "20:00",
             "signal": "uftp"}]})


def test_the_timeline_trades_before_the_gates_of_the_day_before() -> None:
    timeline = timeline_of(Scenario.model_validate(BASE))
    local = timeline.trading_at.astimezone(timeline.zone)
    assert (local.date().isoformat(), local.hour) == ("2024-06-10", 8)
    assert timeline.begin <= timeline.trading_at < timeline.delivery_start < timeline.end


def test_planned_sessions_never_overlap_on_an_evse_and_are_reproducible() -> None:
    scenario = Scenario.model_validate(BASE)
    timeline = timeline_of(scenario)
    first = plan_cpo(scenario.cpos[0], timeline, seed=5)
    assert first == plan_cpo(scenario.cpos[0], timeline, seed=5)
    by_evse: dict[str, list[tuple[object, object]]] = {}
    for session in first:
        assert session.departure > session.arrival
        by_evse.setdefault(session.evse_uid, []).append((session.arrival, session.departure))
    for spans in by_evse.values():
        spans.sort()
        for (_, end), (start, _) in pairwise(spans):
            assert start >= end


def test_shared_cars_are_away_exactly_during_their_bookings() -> None:
    scenario = Scenario.model_validate({**BASE, "car_sharing": {"cars": 3, "bookings_per_car_per_day": 1.0}})
    timeline = timeline_of(scenario)
    _cpo, sessions, bookings = plan_car_sharing(scenario, timeline)
    assert bookings
    for booking in bookings:
        plugged = [s for s in sessions if s.vehicle_id == booking.vehicle_id]
        assert all(s.departure <= booking.start or s.arrival >= booking.end for s in plugged)
        if timeline.begin + timedelta(hours=1) < booking.start < timeline.end:
            assert any(abs(s.departure - booking.start) < timedelta(seconds=1) for s in plugged)
        before = [s for s in plugged if s.booking_id == booking.booking_id]
        # The stay before a booking ends when the booking starts, also past the period (the service plans to it).
        assert all(s.departure == booking.start for s in before)
    assert any(s.booking_id is not None and s.departure > timeline.end + timedelta(hours=12) for s in sessions)


def test_down_direction_setpoints_ask_for_more_consumption() -> None:
    from pathlib import Path

    from vpp.simulation.runner import Simulation

    scenario = Scenario.model_validate({**BASE, "afrr": {"enabled": True, "direction": "down"}})
    simulation = Simulation(scenario, data_dir=Path("."), progress=False)
    simulation.afrr_awarded_mw = 2.0
    day = scenario.start
    windows = simulation._afrr_windows(day)
    assert simulation._setpoint_mw(windows[0][0], windows) == -1.6
    assert simulation._setpoint_mw(windows[0][1], windows) == 0.0
    assert Scenario.model_validate(BASE).afrr.direction == "up"
