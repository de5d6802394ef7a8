"""The like-for-like price figures: capture of the reachable fall in price, and the day-ahead imbalance."""

from __future__ import annotations

import numpy as np
import pytest

from vpp.simulation.kpis import dayahead_imbalance_pct, price_capture_pct


def test_price_capture_is_the_share_of_the_reachable_fall_in_the_price_paid() -> None:
    # Uncontrolled 100, controlled 90, perfect foresight 80 EUR/MWh: half of the 20 EUR/MWh reachable.
    assert price_capture_pct(100.0, 90.0, 80.0) == 50.0
    assert price_capture_pct(100.0, 80.0, 80.0) == 100.0
    # Paying more than uncontrolled charging is a negative capture, not zero.
    assert price_capture_pct(100.0, 110.0, 80.0) == -50.0


def test_price_capture_is_undefined_where_nothing_could_be_gained() -> None:
    assert price_capture_pct(80.0, 80.0, 80.0) is None
    assert price_capture_pct(None, 80.0, 70.0) is None


def test_dayahead_imbalance_counts_both_directions_over_the_committed_isps_only() -> None:
    delivered = np.array([100.0, 50.0, 30.0, 999.0])
    committed = np.array([80.0, 60.0, 60.0, np.nan])
    # |20| + |-10| + |-30| = 60 of 200 committed.
    assert dayahead_imbalance_pct(delivered, committed) == pytest.approx(30.0)
    assert dayahead_imbalance_pct(delivered, np.full(4, np.nan)) is None
