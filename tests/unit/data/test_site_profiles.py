"""The vendored PV and household profiles: shapes, units and the day-of-year mapping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from vpp.data.site_profiles import homes, household_load_kw, pv_kw_per_kwp
from vpp.domain.errors import InvalidInput

DAY = [datetime(2024, 6, 11, tzinfo=UTC) + timedelta(minutes=15 * k) for k in range(96)]


def test_a_june_day_of_pv_gives_a_few_kwh_per_kwp_and_none_at_night() -> None:
    pv = pv_kw_per_kwp(DAY)
    assert 3.0 < pv.sum() / 4 < 8.0
    assert pv[:8].max() == 0.0 and pv.max() <= 1.1


def test_six_household_profiles_in_kw_per_quarter_hour() -> None:
    assert homes() == 6
    load = household_load_kw(DAY, 0, "Europe/Paris")
    assert load.shape == (96,) and 0.2 < load.mean() < 5.0 and load.min() >= 0.0
    # 29 February takes the 28th's profile.
    leap = [datetime(2024, 2, 29, 12, tzinfo=UTC)]
    assert household_load_kw(leap, 1, "UTC") == pytest.approx(
        household_load_kw([datetime(2023, 2, 28, 12, tzinfo=UTC)], 1, "UTC"))
    with pytest.raises(InvalidInput, match="does not exist"):
        household_load_kw(DAY, 6, "UTC")
