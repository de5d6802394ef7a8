"""The taper near full: hand cases for the time a need takes and what a car can still take."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vpp.algorithms.planning import taper_departure
from vpp.algorithms.taper import deliverable_kwh, extra_hours, need_hours, taken_kwh


def test_a_need_below_80_pct_takes_its_energy_at_full_power() -> None:
    # 20 kWh of a 60 kWh battery ending at 70 %: no taper.
    hours = need_hours(np.array([20.0]), np.array([10.0]), battery_kwh=60.0, target_soc=0.7)
    assert hours[0] == pytest.approx(2.0)


def test_a_need_that_ends_full_takes_the_taper_and_its_floor() -> None:
    # 44 kWh of a 46.3 kWh battery to full at 7.4 kW: to 80 % at full power, to 98 % on the linear taper
    # (0.2 x 46.3 / 7.4 x ln(0.2 / 0.02) h), the last 2 % at 10 % power. The simulated car takes 8.82 h too.
    battery, power = 46.3, 7.4
    start = 1.0 - 44.0 / battery
    expected = ((0.8 - start) * battery / power + 0.2 * battery / power * math.log(10.0)
                + 0.02 * battery / (0.1 * power))
    hours = need_hours(np.array([44.0]), np.array([power]), battery_kwh=battery, target_soc=1.0)
    assert hours[0] == pytest.approx(expected)
    assert hours[0] == pytest.approx(8.83, abs=0.01)


def test_unknown_battery_is_taken_as_60_kwh_ending_full_and_a_larger_need_gets_its_own_size() -> None:
    # 15 kWh at 11 kW ending full of 60 kWh: 2.51 h more than 15 / 11 h; ending at 90 %: 0.21 h more.
    np.testing.assert_allclose(extra_hours(np.array([15.0]), np.array([11.0])), [2.5119], atol=1e-3)
    np.testing.assert_allclose(extra_hours(np.array([15.0]), np.array([11.0]), target_soc=0.9), [0.2107],
                               atol=1e-3)
    # A 70 kWh need: its battery is taken as 70 kWh (it cannot be more than the battery holds).
    assert need_hours(np.array([70.0]), np.array([11.0]))[0] == pytest.approx(
        need_hours(np.array([70.0]), np.array([11.0]), battery_kwh=70.0)[0])
    # A car that cannot charge adds nothing; one with no need takes no time.
    np.testing.assert_allclose(extra_hours(np.array([5.0, 0.0]), np.array([0.0, 11.0])), [0.0, 0.0])


def test_what_a_car_can_take_in_its_last_hours_is_the_inverse_of_the_time_a_need_takes() -> None:
    power = np.full(5, 11.0)
    hours = np.array([0.5, 1.0, 2.0, 4.0, 6.0])
    energy = deliverable_kwh(hours, power, np.full(5, 59.0), battery_kwh=60.0)
    assert energy[-1] < 59.0
    np.testing.assert_allclose(need_hours(energy, power, battery_kwh=60.0), hours, rtol=1e-9)
    # The first 1.09 h before full are the floor's 10 % power; never more than the need.
    assert energy[0] == pytest.approx(0.55)
    assert deliverable_kwh(np.array([8.0]), np.array([11.0]), np.array([5.0]))[0] == pytest.approx(5.0)


def test_a_car_is_planned_to_leave_the_tapers_extra_time_early_but_never_later_than_full_power_allows() -> None:
    # 15 kWh at 11 kW ending full: 2.51 h more, 11 ISPs earlier. 40 kWh in 16 ISPs: 15 ISPs at full power, so
    # planned to 15, not 5. Never before the end of the first ISP.
    departure = taper_departure(np.array([40, 16, 1]), np.array([15.0, 40.0, 3.0]), np.full(3, 11.0), 0.25)
    np.testing.assert_array_equal(departure, [29, 15, 1])


def test_a_car_whose_soc_and_battery_are_known_is_planned_to_its_own_target() -> None:
    # 15 kWh at 11 kW from 20 % of 60 kWh ends at 45 %: no taper, the departure stays. Unknown (NaN): taken to
    # end full, 11 ISPs earlier.
    departure = taper_departure(np.array([40, 40]), np.array([15.0, 15.0]), np.full(2, 11.0), 0.25,
                                soc_kwh=np.array([12.0, np.nan]), battery_kwh=np.array([60.0, np.nan]))
    np.testing.assert_array_equal(departure, [40, 29])


def test_what_a_car_takes_in_its_first_hours_is_full_power_then_the_taper() -> None:
    # 15 kWh at 11 kW ending full of 60 kWh: 3 kWh to 80 % in 3/11 h, then 1 - soc falls as exp(-t / tau), tau =
    # 0.2 x 60 / 11 h. In 0.2 h: 2.2 kWh; in 1 h: 3 + 12 (1 - exp(-(1 - 3/11) / tau)); in 10 h: all 15. A car that
    # cannot charge takes nothing.
    tau = 0.2 * 60.0 / 11.0
    taken = taken_kwh(np.array([0.2, 1.0, 10.0, 1.0]), np.array([11.0, 11.0, 11.0, 0.0]), np.array([15.0] * 4))
    np.testing.assert_allclose(taken, [2.2, 3.0 + 12.0 * (1.0 - math.exp(-(1.0 - 3.0 / 11.0) / tau)), 15.0, 0.0],
                               rtol=1e-9)
    # Ending at 45 % of a known 60 kWh battery: no taper, 11 kWh in the first hour.
    assert taken_kwh(np.array([1.0]), np.array([11.0]), np.array([15.0]), battery_kwh=60.0,
                     target_soc=0.45)[0] == pytest.approx(11.0)


def test_a_car_to_come_is_planned_from_its_own_arrival() -> None:
    # Arriving at ISP 20: 15 kWh at 11 kW, 11 ISPs early (49, not 60); 40 kWh in 16 ISPs from 10: done by 10 + 15.
    departure = taper_departure(np.array([60, 26]), np.array([15.0, 40.0]), np.full(2, 11.0), 0.25,
                                arrival=np.array([20, 10]))
    np.testing.assert_array_equal(departure, [49, 25])
    # A tiny need is never planned to end before its arrival's ISP is over.
    assert taper_departure(np.array([30]), np.array([0.5]), np.array([11.0]), 0.25, arrival=np.array([29]))[0] == 30
