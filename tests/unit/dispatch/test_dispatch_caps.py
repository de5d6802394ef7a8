"""The deadband never keeps a cap exceeded: limits within the band go out when what is in force breaks a cap."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from vpp.algorithms.allocation import AllocationProblem
from vpp.algorithms.dispatch import beyond_deadband, sent_for_caps


def _problem(max_kw: list[float], groups: list[tuple[float, list[int]]] | None = None) -> AllocationProblem:
    n = len(max_kw)
    groups = groups or []
    members = [(s, g) for g, (_cap, ids) in enumerate(groups) for s in ids]
    return AllocationProblem(
        min_kw=np.zeros(n), max_kw=np.array(max_kw, dtype=np.float64), energy_needed_kwh=np.full(n, 10.0),
        hours_to_departure=np.full(n, 5.0), current_kw=np.zeros(n), target_kw=0.0,
        member_session=np.array([s for s, _ in members], dtype=np.int64),
        member_group=np.array([g for _, g in members], dtype=np.int64),
        group_max_kw=np.array([cap for cap, _ in groups], dtype=np.float64))


def test_a_device_cap_goes_out_although_the_cut_is_inside_the_deadband() -> None:
    # §14a: 4.2 kW per device; 6.3 A (4.347 kW) is in force and 4.2 kW is within 0.5 kW of it.
    problem = _problem([4.2, 11.0])
    new, in_force = np.array([4.2, 10.8]), np.array([4.347, 11.0])
    assert not beyond_deadband(new, in_force, 0.5, 5.0).any()
    assert sent_for_caps(problem, new, in_force, np.ones(2, dtype=bool)).tolist() == [True, False]


def test_a_group_over_its_cap_sends_its_largest_cuts_until_it_fits() -> None:
    problem = _problem([11.0, 11.0, 11.0], [(15.2, [0, 1, 2])])
    in_force = np.array([5.3, 5.4, 5.2])  # 15.9 kW in force under a 15.2 kW cap
    new = np.array([5.0, 5.0, 5.0])  # every cut within the deadband
    sent = sent_for_caps(problem, new, in_force, np.ones(3, dtype=bool))
    assert sent.tolist() == [True, True, False]  # the two largest cuts (0.4 + 0.3 kW) suffice
    assert float(np.where(sent, new, in_force).sum()) <= 15.2 + 1e-3


def test_nothing_extra_goes_out_when_every_cap_holds_or_the_session_cannot_be_steered() -> None:
    problem = _problem([11.0, 11.0], [(20.0, [0, 1])])
    assert not sent_for_caps(problem, np.array([5.0, 5.0]), np.array([5.3, 5.3]), np.ones(2, dtype=bool)).any()
    over = _problem([4.2, 4.2])
    assert not sent_for_caps(over, np.array([4.2, 4.2]), np.array([4.3, 4.3]), np.zeros(2, dtype=bool)).any()
    # A pool cap counts as a group of every session.
    pool = _problem([11.0, 11.0])
    sent = sent_for_caps(pool, np.array([5.0, 5.0]), np.array([5.3, 5.3]), np.ones(2, dtype=bool), pool_cap_kw=10.3)
    assert sent.sum() == 1


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_after_a_cycle_no_cap_is_exceeded_by_the_limits_in_force(data: st.DataObject) -> None:
    n = data.draw(st.integers(1, 12))
    max_kw = data.draw(st.lists(st.floats(1.0, 22.0), min_size=n, max_size=n))
    k = data.draw(st.integers(0, 3))
    groups = []
    for _ in range(k):
        ids = data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=n, unique=True))
        groups.append((data.draw(st.floats(1.0, 60.0)), sorted(ids)))
    problem = _problem(max_kw, groups)
    # The allocation's new limits respect every bound and cap (scaled down into each group's cap).
    new = np.array([data.draw(st.floats(0.0, m)) for m in max_kw])
    for cap, ids in groups:
        total = new[ids].sum()
        if total > cap:
            new[ids] *= cap / total
    last = np.array([data.draw(st.one_of(st.just(math.nan), st.floats(0.0, 25.0))) for _ in range(n)])
    send = beyond_deadband(new, last, 0.5, 5.0)
    in_force = np.where(send, new, last)
    send |= sent_for_caps(problem, new, in_force, ~send)
    after = np.where(send, new, last)
    assert np.all(after <= problem.max_kw + 1e-3)
    for cap, ids in groups:
        assert after[ids].sum() <= cap + 1e-3 * (len(ids) + 1)
