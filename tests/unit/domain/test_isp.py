"""The ISP grid and delivery days, including both DST changes in Europe/Amsterdam."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pandas as pd
import pytest

from vpp.domain.errors import InvalidInput
from vpp.domain.isp import (
    ISP,
    IspHorizon,
    ceil_to_isp,
    delivery_day_isps,
    delivery_day_of,
    floor_to_isp,
    isp_index,
    isp_position_in_day,
    isp_range,
    isp_start,
)


def test_floor_and_ceil_snap_to_utc_quarter_hours() -> None:
    moment = datetime(2025, 5, 1, 10, 7, 30, tzinfo=UTC)
    assert floor_to_isp(moment) == datetime(2025, 5, 1, 10, 0, tzinfo=UTC)
    assert ceil_to_isp(moment) == datetime(2025, 5, 1, 10, 15, tzinfo=UTC)
    aligned = datetime(2025, 5, 1, 10, 15, tzinfo=UTC)
    assert floor_to_isp(aligned) == ceil_to_isp(aligned) == aligned


def test_other_offsets_are_converted_to_utc() -> None:
    cest = timezone(timedelta(hours=2))
    assert floor_to_isp(datetime(2025, 5, 1, 12, 7, tzinfo=cest)) == datetime(2025, 5, 1, 10, 0, tzinfo=UTC)


def test_naive_datetimes_are_rejected() -> None:
    with pytest.raises(InvalidInput, match="naive"):
        floor_to_isp(datetime(2025, 5, 1, 10, 7))


def test_isp_range_covers_the_overlapping_isps() -> None:
    index = isp_range(datetime(2025, 5, 1, 10, 5, tzinfo=UTC), datetime(2025, 5, 1, 10, 50, tzinfo=UTC))
    assert list(index.strftime("%H:%M")) == ["10:00", "10:15", "10:30", "10:45"]
    assert str(index.tz) == "UTC"


@pytest.mark.parametrize(
    ("day", "count", "first_utc"),
    [
        (date(2025, 3, 30), 92, "2025-03-29 23:00"),
        (date(2025, 10, 26), 100, "2025-10-25 22:00"),
        (date(2025, 6, 1), 96, "2025-05-31 22:00"),
        (date(2025, 1, 15), 96, "2025-01-14 23:00"),
    ],
)
def test_delivery_day_has_92_96_or_100_isps(day: date, count: int, first_utc: str) -> None:
    isps = delivery_day_isps(day)
    assert len(isps) == count
    assert isps[0] == pd.Timestamp(first_utc, tz="UTC")
    assert (isps[1:] - isps[:-1] == pd.Timedelta(minutes=15)).all()


def test_consecutive_delivery_days_tile_the_utc_grid_across_dst() -> None:
    spring = delivery_day_isps(date(2025, 3, 30))
    after = delivery_day_isps(date(2025, 3, 31))
    assert after[0] - spring[-1] == pd.Timedelta(minutes=15)


def test_positions_in_the_autumn_day_run_to_99() -> None:
    last = datetime(2025, 10, 26, 22, 50, tzinfo=UTC)  # 23:50 CET
    assert delivery_day_of(last) == date(2025, 10, 26)
    assert isp_position_in_day(last) == 99
    assert isp_position_in_day(datetime(2025, 3, 30, 21, 50, tzinfo=UTC)) == 91


def test_index_and_time_round_trip() -> None:
    origin = datetime(2025, 10, 25, 22, tzinfo=UTC)
    moment = datetime(2025, 10, 26, 3, 20, tzinfo=UTC)
    index = isp_index(moment, origin)
    assert index == 21
    assert isp_start(index, origin) == floor_to_isp(moment)
    with pytest.raises(InvalidInput, match="origin"):
        isp_index(moment, origin + timedelta(minutes=5))


def test_horizon_positions_and_hours() -> None:
    horizon = IspHorizon(datetime(2025, 1, 1, tzinfo=UTC), 192)
    assert horizon.end - horizon.start == 192 * ISP
    times = pd.DatetimeIndex([pd.Timestamp("2025-01-01 00:20", tz="UTC"), pd.Timestamp("2024-12-31 23:50", tz="UTC")])
    assert list(horizon.positions(times)) == [1, -1]
    assert horizon.hours_since_start(times)[0] == pytest.approx(1 / 3)
    with pytest.raises(InvalidInput, match="grid"):
        IspHorizon(datetime(2025, 1, 1, 0, 5, tzinfo=UTC), 4)
