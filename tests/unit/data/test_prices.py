"""Day-ahead price loading: the file's quirks and per-ISP repetition."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from vpp.data.prices import load_day_ahead_prices, price_coverage, prices_for_isps
from vpp.domain.errors import InvalidInput
from vpp.domain.isp import delivery_day_isps

QUIRKY = """Country,Datetime (UTC),Datetime (Local),Price (EUR/MWhe)
Netherlands,2023-01-01 00:00:00,2023-01-01 01:00:00,10.0
Netherlands,2023-01-01 01:00:00,2023-01-01 02:00:00,11.0
Netherlands,2023-01-01 02:00:00,2023-01-01 03:00:00,12.0
Netherlands,,,0.0
Netherlands,01/01/2023 01:00,01/01/2023 02:00,11.0
Netherlands,01/01/2023 02:00,01/01/2023 03:00,12.0
Netherlands,01/01/2023 04:00,01/01/2023 05:00,14.0
Netherlands,01/01/2023 07:00,01/01/2023 08:00,17.0
"""


@pytest.fixture
def quirky_file(tmp_path: Path) -> Path:
    path = tmp_path / "prices.csv"
    path.write_text(QUIRKY)
    return path


def test_both_formats_blank_row_and_duplicates_are_handled(quirky_file: Path) -> None:
    series = load_day_ahead_prices(quirky_file)
    assert str(pd.DatetimeIndex(series.index).tz) == "UTC"
    assert series.index.is_unique and series.index.is_monotonic_increasing
    assert series[pd.Timestamp("2023-01-01 02:00", tz="UTC")] == 12.0
    # one missing hour is interpolated, a longer gap stays missing
    assert series[pd.Timestamp("2023-01-01 03:00", tz="UTC")] == pytest.approx(13.0)
    assert series[pd.Timestamp("2023-01-01 05:00", tz="UTC")] != series[pd.Timestamp("2023-01-01 05:00", tz="UTC")]


def test_conflicting_duplicates_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(QUIRKY.replace("01/01/2023 02:00,01/01/2023 03:00,12.0", "01/01/2023 02:00,01/01/2023 03:00,99.0"))
    with pytest.raises(InvalidInput, match="duplicate"):
        load_day_ahead_prices(path)


def test_prices_repeat_per_quarter_hour_and_gaps_are_refused(quirky_file: Path) -> None:
    isps = pd.date_range("2023-01-01 01:00", periods=8, freq="15min", tz="UTC")
    prices = prices_for_isps(isps, quirky_file)
    assert list(prices) == [11.0] * 4 + [12.0] * 4
    with pytest.raises(InvalidInput, match="no day-ahead price"):
        prices_for_isps(pd.date_range("2023-01-01 05:00", periods=4, freq="15min", tz="UTC"), quirky_file)


def test_vendored_file_covers_2015_to_2025_and_refuses_outside() -> None:
    first, end = price_coverage()
    assert first.year == 2015 and end.year == 2025
    series = load_day_ahead_prices()
    assert series.index.is_unique and not series.isna().any()
    autumn = prices_for_isps(delivery_day_isps(date(2023, 10, 29)))
    assert len(autumn) == 100
    with pytest.raises(InvalidInput, match="cover"):
        prices_for_isps(delivery_day_isps(date(2026, 1, 1)))
