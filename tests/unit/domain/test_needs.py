"""Charging needs as value objects."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from vpp.domain.errors import InvalidInput
from vpp.domain.needs import ChargingNeed, LocationCategory, NeedSource, energy_for_target_soc, explicit_need


def test_energy_for_a_target_soc() -> None:
    assert energy_for_target_soc(0.8, 60.0, 30.0) == pytest.approx(18.0)
    assert energy_for_target_soc(0.5, 60.0, 40.0) == 0.0
    with pytest.raises(InvalidInput, match="target_soc"):
        energy_for_target_soc(80, 60.0, 30.0)


def test_explicit_need_is_in_utc_with_full_confidence() -> None:
    cet = timezone(timedelta(hours=1))
    need = explicit_need(datetime(2025, 1, 6, 8, tzinfo=cet), target_soc=0.9, battery_kwh=50, current_soc_kwh=20)
    assert need.departure == datetime(2025, 1, 6, 7, tzinfo=UTC)
    assert need.energy_kwh == pytest.approx(25.0)
    assert need.source is NeedSource.EXPLICIT and need.confidence == 1.0


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"energy_kwh": -1.0}, "energy_kwh"),
        ({"confidence": 1.5}, "confidence"),
        ({"departure": datetime(2025, 1, 6, 8)}, "departure"),
        ({"battery_kwh": 40.0, "min_soc_kwh": 50.0}, "min_soc_kwh"),
    ],
)
def test_invalid_needs_name_the_field(fields: dict[str, object], field: str) -> None:
    base: dict[str, object] = {
        "departure": datetime(2025, 1, 6, 8, tzinfo=UTC),
        "energy_kwh": 10.0,
        "source": NeedSource.BOOKING,
    }
    base.update(fields)
    with pytest.raises(InvalidInput, match=field):
        ChargingNeed(**base)  # type: ignore[arg-type]


def test_location_category_accepts_home() -> None:
    assert LocationCategory.parse("Home") is LocationCategory.PRIVATE
    with pytest.raises(InvalidInput, match="category"):
        LocationCategory.parse("garage")
