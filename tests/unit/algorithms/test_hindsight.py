"""The perfect-foresight reference: hand-computed optima with partial ISPs, a shared cap and V2G."""

from __future__ import annotations

import numpy as np
import pytest

from vpp.algorithms.scheduling.hindsight import HindsightProblem, solve_hindsight
from vpp.domain.errors import InvalidInput

NAN = np.nan


def _problem(**overrides: object) -> HindsightProblem:
    values: dict[str, object] = {
        "isp_hours": 0.25,
        "prices_eur_per_mwh": np.array([100.0, 50.0, 80.0, 20.0]),
        "available": np.array([[1.0, 1.0, 1.0, 1.0]]),
        "energy_kwh": np.array([1.5]),
        "max_kw": np.array([4.0]),
        "min_kw": np.array([0.0]),
        "energy_low_kwh": np.array([NAN]),
        "energy_high_kwh": np.array([NAN]),
    }
    values.update(overrides)
    return HindsightProblem(**values)  # type: ignore[arg-type]


def test_a_lone_session_fills_its_cheapest_isps_first() -> None:
    # 1 kWh fits in an ISP at 4 kW: the 20 EUR/MWh ISP, then half of the 50 EUR/MWh one.
    result = solve_hindsight(_problem())
    assert result.schedule_kw.tolist() == [[0.0, 2.0, 0.0, 4.0]]
    assert result.cost_eur == pytest.approx((1.0 * 20 + 0.5 * 50) / 1000)
    assert result.method == "greedy"


def test_a_session_plugged_in_for_part_of_an_isp_gets_that_share_of_its_power() -> None:
    # Plugged in for the last half of ISP 1 only and all of ISP 0 and 2: 0.5 kWh at 50, then 80, then 100.
    result = solve_hindsight(_problem(available=np.array([[1.0, 0.5, 1.0, 0.0]])))
    assert result.schedule_kw.tolist() == [[0.0, 2.0, 4.0, 0.0]]
    assert result.cost_eur == pytest.approx((0.5 * 50 + 1.0 * 80) / 1000)


def test_a_shared_cap_sends_the_second_car_to_dearer_isps() -> None:
    # Two cars under a 5 kW cap in the 50 EUR/MWh ISP: 1.25 kWh there, the rest at 80, 100 and 20.
    problem = _problem(
        available=np.array([[1.0, 1.0, 1.0, 1.0], [0.5, 1.0, 1.0, 0.0]]), energy_kwh=np.array([3.0, 2.0]),
        max_kw=np.array([4.0, 4.0]), min_kw=np.array([0.0, 0.0]), energy_low_kwh=np.array([NAN, NAN]),
        energy_high_kwh=np.array([NAN, NAN]), group_members=(np.array([0, 1]),),
        group_cap_kw=np.array([[np.inf, 5.0, np.inf, np.inf]]))
    result = solve_hindsight(problem)
    assert result.pool_kw[1] == pytest.approx(5.0)
    assert result.cost_eur == pytest.approx((1.25 * 50 + 2.0 * 80 + 0.75 * 100 + 1.0 * 20) / 1000)
    assert result.unmet_kwh == pytest.approx([0.0, 0.0])


def test_a_v2g_car_sells_dear_and_buys_cheap_within_its_battery() -> None:
    # Net 1 kWh; it may go 0.5 kWh below its starting SoC: sell 0.5 at 100 and at 80, buy 1 at 50 and 1 at 20.
    problem = _problem(energy_kwh=np.array([1.0]), min_kw=np.array([-4.0]), energy_low_kwh=np.array([-0.5]),
                       energy_high_kwh=np.array([5.0]))
    result = solve_hindsight(problem)
    assert result.schedule_kw[0] == pytest.approx([-2.0, 4.0, -2.0, 4.0])
    assert result.cost_eur == pytest.approx((-0.5 * 100 + 1.0 * 50 - 0.5 * 80 + 1.0 * 20) / 1000)


def test_a_cap_too_tight_for_the_energy_leaves_a_shortfall_instead_of_failing() -> None:
    problem = _problem(energy_kwh=np.array([2.0]), group_members=(np.array([0]),),
                       group_cap_kw=np.array([[1.0, 1.0, 1.0, 1.0]]))
    result = solve_hindsight(problem)
    assert result.unmet_kwh[0] == pytest.approx(1.0)


def test_prices_of_the_wrong_length_are_refused() -> None:
    with pytest.raises(InvalidInput, match="prices"):
        solve_hindsight(_problem(prices_eur_per_mwh=np.array([1.0, 2.0])))
