from __future__ import annotations

import copy

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vpp.algorithms.scheduling import (
    problem_from_instance,
    solve_exact_lp,
    solve_instance,
    solve_schedule,
)
from vpp.algorithms.scheduling.problem import ScheduleResult, SchedulingProblem
from vpp.benchmarks.dayahead import generate_instance
from vpp.domain.errors import InvalidInput


def _instance(prices: list[float], sessions: list[dict[str, object]], **extra: object) -> dict[str, object]:
    base: dict[str, object] = {
        "start": "2025-01-01T00:00:00Z",
        "isp_minutes": 15,
        "prices_eur_per_mwh": prices,
        "pool_max_kw": None,
        "pool_min_kw": None,
        "sessions": sessions,
    }
    base.update(extra)
    return base


def _charge(sid: str, arrival: int, departure: int, energy_kwh: float, max_kw: float) -> dict[str, object]:
    return {"id": sid, "arrival": arrival, "departure": departure, "energy_kwh": energy_kwh,
            "max_kw": max_kw, "min_kw": 0.0}


def test_one_session_charges_in_its_cheapest_isps() -> None:
    out = solve_instance(_instance([50.0, 10.0, 30.0, 20.0], [_charge("a", 0, 4, 5.0, 10.0)]))
    assert out["status"] == "optimal"
    schedule = out["schedule_kw"]
    assert isinstance(schedule, dict)
    np.testing.assert_allclose(schedule["a"], [0.0, 10.0, 0.0, 10.0], atol=1e-9)
    assert out["cost_eur"] == pytest.approx((10 * 10 + 20 * 10) * 0.25 / 1000)
    assert out["unmet_kwh"] == {"a": pytest.approx(0.0, abs=1e-9)}


def test_binding_pool_limit_pushes_the_flexible_session_to_a_dearer_isp() -> None:
    sessions = [_charge("flexible", 0, 3, 2.5, 10.0), _charge("tight", 0, 2, 5.0, 10.0)]
    out = solve_instance(_instance([10.0, 20.0, 30.0], sessions, pool_max_kw=10.0))
    schedule = out["schedule_kw"]
    assert isinstance(schedule, dict)
    np.testing.assert_allclose(schedule["tight"], [10.0, 10.0, 0.0], atol=1e-9)
    np.testing.assert_allclose(schedule["flexible"], [0.0, 0.0, 10.0], atol=1e-9)
    assert out["cost_eur"] == pytest.approx((10 + 20 + 30) * 10 * 0.25 / 1000)


def test_pool_limit_that_needs_rerouting_is_solved_exactly() -> None:
    # The cheapest ISP is shared; only moving "early" out of ISP 0 lets "late" fit.
    sessions = [_charge("early", 0, 2, 2.5, 10.0), _charge("late", 1, 3, 2.5, 10.0)]
    prices = [10.0, 5.0, 40.0]
    problem = problem_from_instance(_instance(prices, sessions, pool_max_kw=10.0))
    fast, exact = solve_schedule(problem), solve_exact_lp(problem)
    assert fast.cost_eur == pytest.approx(exact.cost_eur, rel=1e-9)
    assert fast.pool_kw.max() <= 10.0 + 1e-9


def test_v2g_session_discharges_at_the_peak_down_to_its_soc_floor() -> None:
    session = {"id": "car", "arrival": 0, "departure": 2, "energy_kwh": 0.0, "max_kw": 10.0,
               "min_kw": -10.0, "battery_kwh": 50.0, "soc_kwh": 20.0, "min_soc_kwh": 15.0}
    out = solve_instance(_instance([200.0, 50.0], [session], isp_minutes=60))
    schedule = out["schedule_kw"]
    assert isinstance(schedule, dict)
    np.testing.assert_allclose(schedule["car"], [-5.0, 5.0], atol=1e-6)
    assert out["cost_eur"] == pytest.approx((200 * -5 + 50 * 5) / 1000, abs=1e-6)


def test_need_beyond_reach_gets_the_most_deliverable_and_reports_the_shortfall() -> None:
    out = solve_instance(_instance([10.0, 20.0, 30.0], [_charge("a", 0, 2, 8.0, 10.0)]))
    assert out["status"] == "feasible"
    schedule = out["schedule_kw"]
    assert isinstance(schedule, dict)
    np.testing.assert_allclose(schedule["a"], [10.0, 10.0, 0.0], atol=1e-9)
    assert out["unmet_kwh"] == {"a": pytest.approx(3.0)}


def test_pool_floor_that_no_session_can_reach_is_reported_infeasible() -> None:
    out = solve_instance(_instance([10.0, 20.0], [_charge("a", 0, 2, 1.0, 10.0)], pool_min_kw=50.0))
    assert out["status"] == "infeasible"


def test_output_has_exactly_the_public_fields() -> None:
    out = solve_instance(_instance([10.0, 20.0], [_charge("a", 0, 2, 1.0, 10.0)]))
    assert set(out) == {"status", "cost_eur", "schedule_kw", "pool_kw", "unmet_kwh", "solve_seconds"}
    assert len(out["pool_kw"]) == 2  # type: ignore[arg-type]


_VALID = _instance([10.0, 20.0, 30.0], [_charge("a", 0, 2, 1.0, 10.0)])


def _broken(path: str, value: object) -> dict[str, object]:
    broken = copy.deepcopy(_VALID)
    if path.startswith("session."):
        broken["sessions"][0][path.removeprefix("session.")] = value  # type: ignore[index]
    else:
        broken[path] = value
    return broken


@pytest.mark.parametrize(
    ("instance", "reason"),
    [
        (_broken("session.departure", 0), "departure 0 is not after arrival 0"),
        (_broken("session.arrival", 7), "arrival 7 is out of range"),
        (_broken("session.max_kw", -1.0), "max_kw must not be negative"),
        (_broken("session.min_kw", 11.0), "min_kw 11.0 exceeds max_kw"),
        (_broken("session.min_kw", -5.0), "lacks battery_kwh, soc_kwh, min_soc_kwh"),
        (_broken("prices_eur_per_mwh", []), "prices_eur_per_mwh must be a non-empty list"),
        (_broken("pool_max_kw", [1.0, 2.0]), "pool_max_kw has 2 values but there are 3 ISPs"),
        (_broken("isp_minutes", 0), "isp_minutes must be positive"),
        (_broken("sessions", [_charge("a", 0, 1, 1.0, 1.0), _charge("a", 1, 2, 1.0, 1.0)]), "duplicate"),
    ],
)
def test_inconsistent_instances_are_refused_with_the_reason(instance: dict[str, object], reason: str) -> None:
    with pytest.raises(InvalidInput, match=reason):
        problem_from_instance(instance)


def test_generated_benchmark_instances_are_valid_and_bind_the_pool() -> None:
    problem = problem_from_instance(generate_instance(200, v2g=False, seed=3))
    result = solve_schedule(problem)
    assert result.status == "optimal"
    assert result.method == "charge-price-order-flow"


@st.composite
def _small_instances(draw: st.DrawFn) -> dict[str, object]:
    n_isps = draw(st.integers(3, 8))
    prices = draw(st.lists(st.integers(-20, 120).map(float), min_size=n_isps, max_size=n_isps))
    v2g = draw(st.booleans())
    sessions = []
    for k in range(draw(st.integers(1, 5))):
        arrival = draw(st.integers(0, n_isps - 1))
        departure = draw(st.integers(arrival + 1, n_isps))
        max_kw = draw(st.sampled_from([3.7, 7.4, 11.0]))
        session: dict[str, object] = {
            "id": f"s{k}", "arrival": arrival, "departure": departure,
            "energy_kwh": draw(st.floats(0.0, 12.0)), "max_kw": max_kw, "min_kw": 0.0,
        }
        if v2g and draw(st.booleans()):
            battery = draw(st.sampled_from([20.0, 40.0]))
            session.update(min_kw=-max_kw, battery_kwh=battery, soc_kwh=battery / 2, min_soc_kwh=battery / 4)
        sessions.append(session)
    pool_max = draw(st.one_of(st.none(), st.floats(3.0, 25.0)))
    return _instance(prices, sessions, pool_max_kw=pool_max)


def _assert_within_bounds(problem: SchedulingProblem, result: ScheduleResult) -> None:
    x, h, tol = result.schedule_kw, problem.isp_hours, 1e-6
    t = np.arange(problem.n_isps)
    outside = (t[None, :] < problem.arrival[:, None]) | (t[None, :] >= problem.departure[:, None])
    assert np.abs(x[outside]).max(initial=0.0) <= tol
    assert (x <= problem.max_kw[:, None] + tol).all()
    assert (x >= np.minimum(problem.min_kw, 0.0)[:, None] - tol).all()
    assert (result.pool_kw <= problem.pool_max_kw + tol).all()
    v2g = problem.is_v2g
    soc = problem.soc_kwh[v2g, None] + np.cumsum(x[v2g], axis=1) * h
    assert (soc <= problem.battery_kwh[v2g, None] + tol).all()
    assert (soc >= problem.min_soc_kwh[v2g, None] - tol).all()


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(_small_instances())
def test_fast_solver_matches_the_exact_lp_on_small_random_pools(instance: dict[str, object]) -> None:
    problem = problem_from_instance(instance)
    fast, exact = solve_schedule(problem), solve_exact_lp(problem)
    _assert_within_bounds(problem, fast)
    if exact.status == "infeasible":
        return
    # Which session falls short is not unique when some must; the total shortfall is.
    if exact.unmet_kwh.max() <= 1e-4:
        assert fast.unmet_kwh.max() <= 1e-3
    assert fast.unmet_kwh.sum() <= exact.unmet_kwh.sum() + 1e-3
    assert abs(fast.cost_eur - exact.cost_eur) <= 0.005 * abs(exact.cost_eur) + 1e-5
