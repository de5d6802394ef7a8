"""What the planner knows of each car's draw stays known across re-plans until the car draws more."""

from __future__ import annotations

import math

import numpy as np

from vpp.portfolio.planning import remember_draw


def test_a_car_known_to_draw_little_stays_known_while_it_draws_no_more_and_is_forgotten_when_it_does() -> None:
    known: dict[str, float] = {}
    nan = math.nan
    # First plan: car a judged at 7.9 kW (7.4 kW drawn), b not judged.
    out = remember_draw(known, ["a", "b"], np.array([7.9, nan]), np.array([7.4, 11.0]))
    assert known == {"a": 7.9}
    np.testing.assert_allclose(out, [7.9, nan])
    # Next plan: the dispatcher sent a its draw as its limit, so it is not judged again; it is still known.
    out = remember_draw(known, ["a", "b"], np.array([nan, nan]), np.array([7.4, 11.0]))
    np.testing.assert_allclose(out, [7.9, nan])
    # It draws more than it was known to: its charger's maximum again. A car that left is dropped.
    known["c"] = 3.0
    out = remember_draw(known, ["a", "b"], np.array([nan, nan]), np.array([10.0, 11.0]))
    assert known == {}
    assert np.isnan(out).all()
