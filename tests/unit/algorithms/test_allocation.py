from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog

from vpp.algorithms.allocation import (
    AllocationProblem,
    allocate,
    allocate_instance,
    groups_are_laminar,
)
from vpp.benchmarks.allocate import random_problem, run_allocate_bench
from vpp.domain.errors import InvalidInput

TOL = 1e-6


def _problem(
    min_kw: list[float],
    max_kw: list[float],
    energy_kwh: list[float],
    hours: list[float],
    current_kw: list[float],
    target_kw: float,
    **kwargs: object,
) -> AllocationProblem:
    return AllocationProblem(
        min_kw=np.array(min_kw, dtype=float),
        max_kw=np.array(max_kw, dtype=float),
        energy_needed_kwh=np.array(energy_kwh, dtype=float),
        hours_to_departure=np.array(hours, dtype=float),
        current_kw=np.array(current_kw, dtype=float),
        target_kw=target_kw,
        **kwargs,  # type: ignore[arg-type]
    )


def test_decrease_takes_power_from_the_session_with_most_laxity_first() -> None:
    # Laxities: 8 - 11/11 = 7 h, 2 - 11/11 = 1 h; need floors 11/8 and 5.5 kW.
    problem = _problem([0, 0], [11, 11], [11, 11], [8, 2], [11, 11], target_kw=16)
    result = allocate(problem)
    np.testing.assert_allclose(result.setpoints_kw, [5, 11])
    assert not result.target_clipped


def test_increase_gives_power_to_the_least_laxity_session_first() -> None:
    problem = _problem([0, 0], [11, 11], [11, 11], [8, 2], [6, 6], target_kw=15)
    np.testing.assert_allclose(allocate(problem).setpoints_kw, [6, 9])


def test_a_session_that_needs_full_power_is_never_curtailed_by_default() -> None:
    problem = _problem([0, 0], [11, 11], [11, 22], [8, 2], [11, 11], target_kw=0)
    result = allocate(problem)
    np.testing.assert_allclose(result.setpoints_kw, [11 / 8, 11])
    assert result.target_clipped
    assert result.need_floors_binding


def test_when_the_target_outranks_needs_power_above_need_floors_goes_first() -> None:
    problem = _problem([0, 0], [11, 11], [11, 22], [8, 2], [11, 11], target_kw=8, needs_outrank_target=False)
    result = allocate(problem)
    # First the 9.625 kW above the first session's need floor, then the rest from the most laxity.
    np.testing.assert_allclose(result.setpoints_kw, [0, 8])
    assert result.sessions_below_need_floor == 2


def test_discharge_is_used_only_when_allowed_and_target_wins() -> None:
    problem = _problem([-11, 0], [11, 11], [5, 0], [10, 10], [0, 0], target_kw=-20, needs_outrank_target=False)
    result = allocate(problem)
    np.testing.assert_allclose(result.setpoints_kw, [-11, 0])
    assert result.total_kw == pytest.approx(-11)


def test_energy_floor_holds_even_when_the_target_outranks_needs() -> None:
    problem = _problem(
        [0, 0],
        [11, 11],
        [20, 20],
        [4, 4],
        [11, 11],
        target_kw=0,
        needs_outrank_target=False,
        energy_floor_kwh=np.array([8.0, 0.0]),
    )
    np.testing.assert_allclose(allocate(problem).setpoints_kw, [2, 0])


def test_a_site_cap_is_never_exceeded_to_follow_the_target() -> None:
    problem = _problem(
        [0, 0, 0],
        [11, 11, 11],
        [33, 33, 1],
        [3, 3, 10],
        [11, 11, 11],
        target_kw=33,
        member_session=np.array([0, 1]),
        member_group=np.array([0, 0]),
        group_max_kw=np.array([12.0]),
    )
    result = allocate(problem)
    assert result.setpoints_kw[:2].sum() == pytest.approx(12)
    assert result.setpoints_kw[2] == pytest.approx(11)
    assert result.target_clipped


def test_group_minimum_is_kept_when_the_target_drops() -> None:
    problem = _problem(
        [0, 0],
        [11, 11],
        [0, 0],
        [5, 5],
        [11, 11],
        target_kw=0,
        member_session=np.array([0, 1]),
        member_group=np.array([0, 0]),
        group_max_kw=np.array([np.inf]),
        group_min_kw=np.array([4.2]),
    )
    result = allocate(problem)
    assert result.total_kw == pytest.approx(4.2)


def test_inconsistent_groups_are_refused() -> None:
    base = _problem([5, 5], [11, 11], [0, 0], [1, 1], [5, 5], target_kw=0)
    with pytest.raises(InvalidInput, match="group_max_kw"):
        allocate(
            replace(
                base,
                member_session=np.array([0, 1]),
                member_group=np.array([0, 0]),
                group_max_kw=np.array([8.0]),
            )
        )
    with pytest.raises(InvalidInput, match="min_kw"):
        allocate(replace(base, min_kw=np.array([12.0, 0.0])))
    with pytest.raises(InvalidInput, match="hours_to_departure"):
        allocate(replace(base, hours_to_departure=np.array([-1.0, 1.0])))


# --- properties -------------------------------------------------------------------------------------------


@st.composite
def laminar_problems(draw: st.DrawFn) -> tuple[AllocationProblem, np.ndarray]:
    n = draw(st.integers(1, 10))
    floats = st.floats(0, 1, allow_nan=False)
    u = np.array([draw(floats) for _ in range(5 * n)]).reshape(5, n)
    max_kw = np.round(1 + 21 * u[0], 3)
    v2g = u[1] < 0.25
    min_kw = np.where(v2g, -max_kw, np.where(u[1] > 0.9, 1.0, 0.0))
    hours = np.round(8 * u[2], 3)
    energy_kwh = np.round(40 * u[3] * u[2], 3)
    current_kw = min_kw + (max_kw - min_kw) * u[4]
    sites = draw(st.integers(0, 3))
    site_of = np.array([draw(st.integers(-1, sites - 1)) if sites else -1 for _ in range(n)])
    pairs_s: list[int] = []
    pairs_g: list[int] = []
    caps: list[float] = []
    for g in range(sites):
        members = np.flatnonzero(site_of == g)
        pairs_s += members.tolist()
        pairs_g += [g] * members.size
        low = float(min_kw[members].sum())
        caps.append(low + draw(st.floats(0, 30)))
    if sites and draw(st.booleans()):
        # A congestion point over the first two sites (nested, so the family stays laminar).
        members = np.flatnonzero((site_of >= 0) & (site_of < 2))
        pairs_s += members.tolist()
        pairs_g += [sites] * members.size
        caps.append(float(min_kw[members].sum()) + draw(st.floats(0, 30)))
    order = np.argsort(np.array(pairs_s, dtype=np.int64), kind="stable")
    problem = AllocationProblem(
        min_kw=min_kw,
        max_kw=max_kw,
        energy_needed_kwh=energy_kwh,
        hours_to_departure=hours,
        current_kw=current_kw,
        target_kw=draw(st.floats(-250, 250)),
        member_session=np.array(pairs_s, dtype=np.int64)[order],
        member_group=np.array(pairs_g, dtype=np.int64)[order],
        group_max_kw=np.array(caps, dtype=float),
        needs_outrank_target=draw(st.booleans()),
    )
    return problem, site_of


def _need_floor(p: AllocationProblem) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        need = np.where(
            p.hours_to_departure > 0,
            p.energy_needed_kwh / p.hours_to_departure,
            np.where(p.energy_needed_kwh > 0, np.inf, 0),
        )
    return np.clip(need, p.min_kw, p.max_kw)


def _group_sums(p: AllocationProblem, x: np.ndarray) -> np.ndarray:
    return np.bincount(p.member_group, weights=x[p.member_session], minlength=p.group_max_kw.size)


def _lp_max_total(p: AllocationProblem) -> float:
    n, g = p.max_kw.size, p.group_max_kw.size
    a = np.zeros((g, n))
    a[p.member_group, p.member_session] = 1.0
    res = linprog(
        -np.ones(n),
        A_ub=a if g else None,
        b_ub=p.group_max_kw if g else None,
        bounds=list(zip(p.min_kw, p.max_kw, strict=True)),
        method="highs",
    )
    assert res.status == 0
    return float(-res.fun)


def _scale(p: AllocationProblem) -> float:
    return 1.0 + float(np.abs(p.max_kw).sum() + np.abs(p.min_kw).sum())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(laminar_problems())
def test_allocation_respects_bounds_caps_and_meets_the_clipped_target(
    case: tuple[AllocationProblem, np.ndarray],
) -> None:
    p, _ = case
    assert groups_are_laminar(p)
    r = allocate(p)
    x = r.setpoints_kw
    tol = TOL * _scale(p)
    assert (x >= p.min_kw - tol).all()
    assert (x <= p.max_kw + tol).all()
    assert (_group_sums(p, x) <= p.group_max_kw + tol).all()
    assert r.total_kw == pytest.approx(x.sum())
    if r.total_kw < p.target_kw - tol:
        # Short of the target only when nothing more is feasible.
        assert r.total_kw == pytest.approx(_lp_max_total(p), abs=tol)
    if r.total_kw > p.target_kw + tol:
        # Above the target only when every session is at the floor the target may not cross.
        floor = _need_floor(p) if p.needs_outrank_target else p.min_kw
        assert (x <= floor + tol).all()


@settings(max_examples=300, deadline=None)
@given(laminar_problems())
def test_need_floors_outrank_the_target_and_curtailment_follows_laxity(
    case: tuple[AllocationProblem, np.ndarray],
) -> None:
    p, _ = case
    p = replace(p, member_session=p.member_session[:0], member_group=p.member_group[:0])
    p = replace(p, group_max_kw=np.zeros(0))
    r = allocate(p)
    x = r.setpoints_kw
    tol = TOL * _scale(p)
    need = _need_floor(p)
    base = np.clip(p.current_kw, p.min_kw, p.max_kw)
    if p.needs_outrank_target:
        assert (x >= need - tol).all()
        base = np.maximum(base, need)
    else:
        # No session is curtailed below its need floor while another one is still above its own.
        if (x < np.minimum(base, need) - tol).any():
            assert (x <= need + tol).all()
    if r.total_kw < base.sum() - tol:
        laxity = np.where(p.max_kw > 0, p.hours_to_departure - p.energy_needed_kwh / p.max_kw, -np.inf)
        reduced_above_need = x > np.minimum(base, need) + tol
        for i in np.flatnonzero((x < base - tol) & reduced_above_need):
            # A session cut while keeping power above its need: everyone with more laxity is at its floor.
            more_slack = laxity > laxity[i]
            assert (x[more_slack] <= np.minimum(base, need)[more_slack] + tol).all()


@settings(max_examples=150, deadline=None)
@given(laminar_problems(), st.floats(-250, 250), st.floats(-250, 250))
def test_allocation_is_monotone_in_the_target(case: tuple[AllocationProblem, np.ndarray], t1: float, t2: float) -> None:
    p, _ = case
    low, high = min(t1, t2), max(t1, t2)
    a = allocate(replace(p, target_kw=low))
    b = allocate(replace(p, target_kw=high))
    tol = TOL * _scale(p)
    assert a.total_kw <= b.total_kw + tol
    if p.member_session.size == 0:
        assert (a.setpoints_kw <= b.setpoints_kw + tol).all()


def test_random_pools_with_sites_and_congestion_points_reach_the_lp_maximum() -> None:
    p = random_problem(3_000, seed=3)
    assert groups_are_laminar(p)
    feasible_max = _lp_max_total(p)
    for fraction in (0.05, 0.2, 0.4, 1.2):
        target = fraction * float(p.max_kw.sum())
        r = allocate(replace(p, target_kw=target))
        x = r.setpoints_kw
        assert (_group_sums(p, x) <= p.group_max_kw + 1e-6).all()
        assert (x >= p.min_kw - 1e-9).all() and (x <= p.max_kw + 1e-9).all()
        if target > feasible_max:
            assert r.total_kw == pytest.approx(feasible_max, rel=1e-6)
        elif not r.need_floors_binding:
            assert r.total_kw == pytest.approx(target, rel=1e-6)


def test_crossing_groups_are_reported_as_not_laminar() -> None:
    p = _problem(
        [0, 0, 0],
        [1, 1, 1],
        [0, 0, 0],
        [1, 1, 1],
        [0, 0, 0],
        target_kw=3,
        member_session=np.array([0, 1, 1, 2]),
        member_group=np.array([0, 0, 1, 1]),
        group_max_kw=np.array([1.0, 1.0]),
    )
    assert not groups_are_laminar(p)
    x = allocate(p).setpoints_kw
    assert (_group_sums(p, x) <= 1 + 1e-9).all()


# --- offline command ----------------------------------------------------------------------------------------


def _instance() -> dict[str, object]:
    return {
        "target_kw": 30.0,
        "sessions": [
            {"id": "a", "min_kw": 0, "max_kw": 11, "energy_needed_kwh": 5, "hours_to_departure": 8, "current_kw": 0},
            {"id": "b", "min_kw": 0, "max_kw": 11, "energy_needed_kwh": 20, "hours_to_departure": 2, "current_kw": 0},
            {"id": "c", "min_kw": -7, "max_kw": 7, "energy_needed_kwh": 0, "hours_to_departure": 3, "current_kw": 0},
        ],
        "groups": [{"id": "site-1", "max_kw": 15, "members": ["a", "b"]}],
    }


def test_allocate_instance_returns_setpoints_by_id_and_the_clipped_total() -> None:
    out = allocate_instance(_instance())
    assert set(out["setpoints_kw"]) == {"a", "b", "c"}
    assert out["setpoints_kw"]["b"] == pytest.approx(11)
    assert out["setpoints_kw"]["a"] == pytest.approx(4)
    assert out["total_kw"] == pytest.approx(22)
    assert out["solve_ms"] >= 0


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"groups": [{"id": "g", "max_kw": 1, "members": ["zz"]}]}, "members"),
        ({"sessions_dup": True}, "duplicate"),
        ({"min_above_max": True}, "min_kw"),
        ({"negative_hours": True}, "hours_to_departure"),
    ],
)
def test_allocate_instance_refuses_inconsistent_input(patch: dict[str, object], field: str) -> None:
    instance = _instance()
    sessions = instance["sessions"]
    assert isinstance(sessions, list)
    if "groups" in patch:
        instance["groups"] = patch["groups"]
    if "sessions_dup" in patch:
        sessions.append(dict(sessions[0]))
    if "min_above_max" in patch:
        sessions[0]["min_kw"] = 12
    if "negative_hours" in patch:
        sessions[0]["hours_to_departure"] = -1
    with pytest.raises(InvalidInput, match=field):
        allocate_instance(instance)


def test_bench_reports_percentiles() -> None:
    out = run_allocate_bench(2_000, repeats=3)
    assert out["name"] == "allocate"
    assert out["sessions"] == 2_000
    assert out["p99_ms"] >= out["p50_ms"] > 0
