"""The day-ahead instance caps its schedule at the uncontrolled peak of its own sessions."""

from __future__ import annotations

import pytest

from vpp.portfolio.service import uncontrolled_peak_kw


def test_the_uncontrolled_peak_charges_each_car_at_full_power_from_arrival() -> None:
    sessions = [
        # 5.5 kWh at 11 kW: two whole ISPs (t 0-1), nothing after.
        {"arrival": 0, "departure": 8, "energy_kwh": 5.5, "max_kw": 11.0},
        # 4 kWh at 8 kW: two ISPs (t 1-2).
        {"arrival": 1, "departure": 4, "energy_kwh": 4.0, "max_kw": 8.0},
        # 1 kWh at 8 kW: half an ISP at t 2, i.e. 4 kW on average.
        {"arrival": 2, "departure": 3, "energy_kwh": 1.0, "max_kw": 8.0},
    ]
    # t 0: 11, t 1: 11 + 8, t 2: 8 + 4.
    assert uncontrolled_peak_kw(sessions, 8) == pytest.approx(19.0)


def test_a_stay_too_short_for_its_energy_draws_full_power_only_while_plugged_in() -> None:
    sessions = [{"arrival": 3, "departure": 4, "energy_kwh": 50.0, "max_kw": 11.0}]
    assert uncontrolled_peak_kw(sessions, 8) == pytest.approx(11.0)
    assert uncontrolled_peak_kw([], 8) == 0.0
