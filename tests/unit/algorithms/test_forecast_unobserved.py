"""The forecast leaves the hours after its history was read out, instead of counting them as hours without cars."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest

from vpp.algorithms.forecast import fit_profiles, forecast_sessions
from vpp.domain.errors import InvalidInput
from vpp.domain.isp import IspHorizon

TZ = "Europe/Amsterdam"


def _evening_history() -> pd.DataFrame:
    """One car plugged in 18:00-23:00 local on Monday and Tuesday, one 06:00-07:00 on Wednesday morning."""
    spans = [("2025-01-06 18:00", "2025-01-06 23:00"), ("2025-01-07 18:00", "2025-01-07 23:00"),
             ("2025-01-08 06:00", "2025-01-08 07:00")]
    return pd.DataFrame({
        "arrival": [pd.Timestamp(a, tz=TZ).tz_convert("UTC") for a, _ in spans],
        "departure": [pd.Timestamp(d, tz=TZ).tz_convert("UTC") for _, d in spans],
        "energy_kwh": [10.0, 10.0, 5.0],
        "pool": "p",
    })


# Wednesday 08:45 local: the history was read then, the rest of Wednesday has not happened yet
READ_AT = datetime(2025, 1, 8, 7, 45, tzinfo=UTC)
THURSDAY = IspHorizon(datetime(2025, 1, 8, 23, tzinfo=UTC), 96)


def test_hours_after_the_history_was_read_are_not_counted_as_hours_without_cars() -> None:
    forecast = forecast_sessions(_evening_history(), THURSDAY, tz=TZ, observed_until=READ_AT)
    evening = forecast.loc["p"].loc[pd.Timestamp("2025-01-09 19:00", tz=TZ).tz_convert("UTC")]
    assert evening["days"] == 2
    assert evening["plugged_in_p10"] == pytest.approx(1.0)
    assert evening["arrivals_mean"] == pytest.approx(0.0)
    arrival_slot = forecast.loc["p"].loc[pd.Timestamp("2025-01-09 18:00", tz=TZ).tz_convert("UTC")]
    assert arrival_slot["arrivals_mean"] == pytest.approx(1.0)


def test_hours_before_the_history_was_read_still_count_every_observed_day() -> None:
    forecast = forecast_sessions(_evening_history(), THURSDAY, tz=TZ, observed_until=READ_AT)
    morning = forecast.loc["p"].loc[pd.Timestamp("2025-01-09 06:30", tz=TZ).tz_convert("UTC")]
    assert morning["days"] == 3
    assert morning["plugged_in_mean"] == pytest.approx(1 / 3)


def test_without_an_observation_end_the_last_day_counts_whole() -> None:
    forecast = forecast_sessions(_evening_history(), THURSDAY, tz=TZ)
    evening = forecast.loc["p"].loc[pd.Timestamp("2025-01-09 19:00", tz=TZ).tz_convert("UTC")]
    assert evening["days"] == 3
    assert evening["plugged_in_p10"] < 1.0


def test_hours_before_the_observation_began_are_left_out() -> None:
    profiles = fit_profiles(_evening_history(), TZ, observed_from=datetime(2025, 1, 6, 17, tzinfo=UTC),
                            observed_until=READ_AT)
    # Monday before 18:00 local was not observed: the 06:30 slot has Tuesday and Wednesday only
    assert profiles.loc[("p", False, 26), "days"] == 2


def test_an_observation_period_without_a_whole_isp_is_refused() -> None:
    with pytest.raises(InvalidInput):
        fit_profiles(_evening_history(), TZ, observed_until=datetime(2025, 1, 5, tzinfo=UTC))
    with pytest.raises(InvalidInput):
        fit_profiles(_evening_history(), TZ, observed_until=datetime(2025, 1, 8, 7, 45))
