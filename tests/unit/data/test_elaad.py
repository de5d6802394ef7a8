"""ElaadNL samplers and quantile lookups."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from vpp.data.elaad import (
    arrival_shares,
    dwell_quantile_hours,
    energy_quantile_kwh,
    sample_arrivals,
    sample_dwell_hours,
    sample_energy_kwh,
)
from vpp.domain.errors import InvalidInput


def test_samplers_are_reproducible_with_a_seeded_generator() -> None:
    first = [
        sample_dwell_hours(50, "public", np.random.default_rng(7)),
        sample_energy_kwh(50, "workplace", np.random.default_rng(7)),
    ]
    second = [
        sample_dwell_hours(50, "public", np.random.default_rng(7)),
        sample_energy_kwh(50, "workplace", np.random.default_rng(7)),
    ]
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)
    arrivals = sample_arrivals(date(2025, 3, 30), 30, "home", np.random.default_rng(3))
    again = sample_arrivals(date(2025, 3, 30), 30, "home", np.random.default_rng(3))
    assert arrivals.equals(again)


def test_quantiles_read_the_exceedance_tables() -> None:
    # row p holds the value exceeded by p % of sessions: the median is row 50
    assert dwell_quantile_hours(0.5, "public") == pytest.approx(4.4)
    assert energy_quantile_kwh(0.5, "private") == pytest.approx(19.4)
    assert dwell_quantile_hours(1.0, "private") == pytest.approx(72.0)
    with pytest.raises(InvalidInput, match="q"):
        dwell_quantile_hours(1.5, "public")


def test_sampled_values_follow_the_tables() -> None:
    dwell = sample_dwell_hours(20000, "public", np.random.default_rng(1))
    assert np.median(dwell) == pytest.approx(4.4, rel=0.05)
    assert dwell.min() >= 0 and dwell.max() <= 72


def test_arrivals_fall_on_the_local_day_and_follow_the_weekend_shape() -> None:
    arrivals = sample_arrivals(date(2025, 10, 26), 500, "public", np.random.default_rng(2))
    local = arrivals.tz_convert("Europe/Amsterdam")
    assert str(arrivals.tz) == "UTC"
    assert (pd.Index(local.date) == date(2025, 10, 26)).all()
    assert arrival_shares("workplace", weekend=True).sum() == pytest.approx(1.0)
    assert not np.allclose(arrival_shares("public", weekend=True), arrival_shares("public"))
