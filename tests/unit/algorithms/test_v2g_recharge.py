"""A V2G car sells only what it can recharge by departure at its own power with the taper: the dispatcher's
discharge laxity, the planner's per-ISP state-of-charge floor, and what a car feeding back less than asked is known
to draw (afrr-v2g-4h's 7.4-kW Peugeot 208s on 11-kW wallboxes); hand-computed cases."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pytest

from vpp.algorithms.dispatch import discharge_laxity_kw
from vpp.algorithms.planning import car_limited_kw, drawn_kw, recharge_soc_floor_kwh
from vpp.algorithms.scheduling import SchedulingProblem, solve_schedule
from vpp.algorithms.taper import need_hours
from vpp.domain.dispatch import DispatchSnapshot, GroupCaps

AT = datetime(2024, 6, 12, 20, 0, tzinfo=UTC)
BATTERY = 46.3  # a Peugeot 208: 7.4 kW on AC both ways
SOC = 0.8 * BATTERY
NEED = 0.1 * BATTERY  # to 90 %: all of it in the taper (80-100 %, down to 10 % of full power at 98 %)


def _car(hours: float, *, soc: float | None = SOC) -> DispatchSnapshot:
    empty = np.zeros(0, dtype=np.int64)
    return DispatchSnapshot(
        pool="zone:NL", at=AT, session_ids=("peugeot",), min_kw=np.array([-11.0]), max_kw=np.array([11.0]),
        energy_needed_kwh=np.array([NEED]), hours_to_departure=np.array([hours]), current_kw=np.zeros(1),
        baseline_kw=np.array([11.0]),
        groups=GroupCaps(group_ids=(), max_kw=np.zeros(0), member_session=empty, member_group=empty),
        schedule_kw=math.nan, planned_kw=np.array([-11.0]), discharge_kwh=np.array([20.0]),
        soc_kwh=None if soc is None else np.array([soc]), battery_kwh=None if soc is None else np.array([BATTERY]))


def _in_taper_kwh(hours: float, power_kw: float) -> float:
    # Within the taper (80-98 %) a car ending at 90 % takes, in its last ``hours``, battery * 0.1 * (e^(h/tau) - 1)
    # with tau = 0.2 * battery / power; all 4.63 kWh once h >= tau * ln 2.
    tau = 0.2 * BATTERY / power_kw
    return min(BATTERY * 0.1 * math.expm1(hours / tau), NEED)


def test_a_7_4_kw_car_near_its_taper_may_not_feed_back_what_it_cannot_recharge() -> None:
    # 1.25 h left (finish margin off), its need all in the taper. Seen giving 7.4 kW when asked for 11 kW, it is
    # recharged at 0.7 * 7.4 = 5.18 kW with the taper: in the hour after a quarter hour it can take
    # 4.63 * (e^(1 / 1.7876) - 1) = 3.471 kWh, so it must draw (4.63 - 3.4707) / 0.25 = 4.637 kW now.
    floor = discharge_laxity_kw(_car(1.25), np.array([1.25]), gives_kw=np.array([7.4]))
    expected = (NEED - _in_taper_kwh(1.0, 0.7 * 7.4)) / 0.25
    assert expected == pytest.approx(4.637, abs=1e-3)
    assert floor == pytest.approx([expected])
    # So its need stays feasible at its own 7.4 kW with the taper: after a quarter hour at the floor the rest takes
    # less than the hour left.
    rest = NEED - 0.25 * float(floor[0])
    assert need_hours(np.array([rest]), np.array([7.4]), battery_kwh=BATTERY, target_soc=0.9)[0] < 1.0
    # Before, it was recharged at 0.7 * 11 = 7.7 kW flat: (4.63 - 7.7) / 0.25 = -12.3 kW, so it fed back its full
    # 7.4 kW; the need then grows to 6.48 kWh, which takes 1.12 h at 7.4 kW with the taper, more than the hour left.
    old = (NEED - 0.7 * 11.0 * 1.0) / 0.25
    grown = NEED + 0.25 * 7.4
    assert old < -7.4
    assert need_hours(np.array([grown]), np.array([7.4]), battery_kwh=BATTERY, target_soc=0.9)[0] > 1.0


def test_a_car_not_seen_giving_less_is_recharged_at_11_kw_with_the_taper() -> None:
    # 0.7 * 11 = 7.7 kW: the taper (4.63 kWh) takes tau ln 2 = 0.2 * 46.3 / 7.7 * 0.693 = 0.8336 h of the hour
    # after a quarter hour, 7.7 kW flat the rest: 4.63 + 7.7 * 0.1664 = 5.911 kWh; (4.63 - 5.911) / 0.25 = -5.12 kW.
    floor = discharge_laxity_kw(_car(1.25), np.array([1.25]))
    taper_h = 0.2 * BATTERY / 7.7 * math.log(2.0)
    expected = (NEED - (NEED + 7.7 * (1.0 - taper_h))) / 0.25
    assert expected == pytest.approx(-5.12, abs=1e-2)
    assert floor == pytest.approx([expected])
    # A car giving what it was asked (no ``gives_kw``) or seen drawing more keeps that power.
    assert discharge_laxity_kw(_car(1.25), np.array([1.25]), gives_kw=np.array([math.nan])) == pytest.approx(floor)


def test_the_planners_soc_floor_is_what_the_car_can_still_recharge_by_departure() -> None:
    # Departure 2 h after the start of the first ISP, 0.25 h finish margin: at the end of ISP t (0.25 h each) it
    # has 1.5, 1.25, 1.0, 0.75 h left. At 0.7 * 7.4 = 5.18 kW the taper (4.63 kWh) takes tau ln 2 = 1.2391 h:
    # 1.5 h -> 4.63 + 5.18 * 0.2609 = 5.982 kWh, 1.25 h -> 4.63 + 5.18 * 0.0109 = 4.687, 1.0 h -> 3.471,
    # 0.75 h -> 4.63 * (e^(0.75 / 1.7876) - 1) = 2.410. The floor is its target (41.67 kWh) less that, never above
    # what 11 kW reaches from 37.04 kWh (39.79, 42.54, ...), nor the battery.
    target = 0.9 * BATTERY
    floor = recharge_soc_floor_kwh(np.array([2.0]), np.array([SOC]), np.array([NEED]), np.array([BATTERY]),
                                   np.array([7.4]), np.full((1, 4), 11.0), 0.25, derate=0.7, margin_h=0.25)
    tau = 0.2 * BATTERY / 5.18
    taper_h = tau * math.log(2.0)
    can_take = [NEED + 5.18 * (1.5 - taper_h), NEED + 5.18 * (1.25 - taper_h), _in_taper_kwh(1.0, 5.18),
                _in_taper_kwh(0.75, 5.18)]
    reachable = [SOC + 11.0 * 0.25 * (t + 1) for t in range(4)]
    expected = [min(target - c, r) for c, r in zip(can_take, reachable, strict=True)]
    assert expected[0] == pytest.approx(35.69, abs=1e-2)
    assert floor[0] == pytest.approx(expected)
    # A charge-only session (no state of charge) has none; a car already behind is floored at what it can reach.
    none = recharge_soc_floor_kwh(np.array([2.0]), np.array([math.nan]), np.array([NEED]), np.array([math.nan]),
                                  np.array([7.4]), np.full((1, 4), 11.0), 0.25, derate=0.7, margin_h=0.25)
    assert np.isnan(none).all()
    behind = recharge_soc_floor_kwh(np.array([0.75]), np.array([SOC]), np.array([NEED]), np.array([BATTERY]),
                                    np.array([7.4]), np.full((1, 4), 2.0), 0.25, derate=0.7, margin_h=0.25)
    assert behind[0] == pytest.approx([SOC + 0.5, SOC + 1.0, SOC + 1.5, SOC + 2.0])


def _sale(soc_floor: np.ndarray | None) -> SchedulingProblem:
    # One Peugeot for 8 ISPs: dear first (300 EUR/MWh), then cheap (10): without a floor it sells down to its
    # state-of-charge floor first and buys it all back at 7.4 kW in the cheap ISPs.
    prices = np.array([300.0, 300.0, 300.0, 300.0, 10.0, 10.0, 10.0, 10.0])
    return SchedulingProblem(
        start=AT, isp_hours=0.25, prices_eur_per_mwh=prices, pool_max_kw=np.full(8, np.inf),
        pool_min_kw=np.full(8, -np.inf), session_ids=("peugeot",), arrival=np.array([0]), departure=np.array([8]),
        energy_kwh=np.array([NEED]), max_kw=np.array([7.4]), min_kw=np.array([-7.4]),
        battery_kwh=np.array([BATTERY]), soc_kwh=np.array([SOC]), min_soc_kwh=np.array([0.3 * BATTERY]),
        soc_floor_kwh=soc_floor)


def test_the_schedule_keeps_a_v2g_car_above_its_soc_floor() -> None:
    free = solve_schedule(_sale(None)).schedule_kw[0]
    soc_free = SOC + 0.25 * np.cumsum(free)
    # Departure 2.25 h away, no margin: the floor of each ISP's end from 0.7 * 7.4 kW with the taper.
    floor = recharge_soc_floor_kwh(np.array([2.25]), np.array([SOC]), np.array([NEED]), np.array([BATTERY]),
                                   np.array([7.4]), np.full((1, 8), 7.4), 0.25, derate=0.7, margin_h=0.0)
    assert (soc_free < floor[0] - 0.1).any()
    held = solve_schedule(_sale(floor)).schedule_kw[0]
    soc_held = SOC + 0.25 * np.cumsum(held)
    assert (soc_held >= floor[0] - 1e-6).all()
    assert soc_held[-1] == pytest.approx(0.9 * BATTERY, abs=1e-4)
    # It still sells what the floor leaves in the dear ISPs.
    assert held[:4].sum() < 0.0


def test_a_car_feeding_back_less_than_asked_is_known_to_draw_no_more() -> None:
    # Readings of one settled 15-minute period: asked -11 kW (limit sent before it began) on 11-kW chargers.
    start, end = np.zeros(3), np.full(3, 900.0)
    known = car_limited_kw(np.array([-7.4, -10.6, -7.4]), start, end, np.array([-11.0, -11.0, -7.0]),
                           np.full(3, -60.0), np.full(3, 11.0))
    # -7.4 of -11: a 7.4-kW onboard charger, planned at 7.9 kW; -10.6 of -11 is within the 1-kW tolerance; -7.4
    # asked -7 gave what it was asked.
    assert known[0] == pytest.approx(7.9)
    assert np.isnan(known[1:]).all()
    assert drawn_kw(known[:1]) == pytest.approx([7.4])
    # Above 10 kW the headroom is 5 %: 12.6 known from 12 drawn.
    assert drawn_kw(np.array([12.6])) == pytest.approx([12.0])
