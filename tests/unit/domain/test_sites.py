"""Behind-the-meter values: every bad input the issue lists is refused with its reason."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from vpp.domain.errors import InvalidInput
from vpp.domain.sites import Battery, GridConnection, Tariff, power_series, tou_period

T0 = datetime(2024, 6, 11, 0, 0, tzinfo=UTC)
PEAK_OFFPEAK = (tou_period("off-peak", "22:00", "06:00", 0.2068), tou_period("peak", "06:00", "22:00", 0.27))


def test_a_battery_with_soc_limits_outside_its_capacity_is_refused() -> None:
    with pytest.raises(InvalidInput, match="max_soc_kwh 12 is outside its capacity"):
        Battery(capacity_kwh=10, power_kw=5, max_soc_kwh=12)
    with pytest.raises(InvalidInput, match="min_soc_kwh -1 is outside"):
        Battery(capacity_kwh=10, power_kw=5, min_soc_kwh=-1)
    with pytest.raises(InvalidInput, match="above max_soc_kwh"):
        Battery(capacity_kwh=10, power_kw=5, min_soc_kwh=8, max_soc_kwh=6)
    with pytest.raises(InvalidInput, match="max_soc_pct 120 is outside its capacity"):
        Battery.from_pct(capacity_kwh=5, power_kw=3, max_soc_pct=120)
    with pytest.raises(InvalidInput, match="efficiency"):
        Battery(capacity_kwh=10, power_kw=5, efficiency=1.2)
    ok = Battery.from_pct(capacity_kwh=5, power_kw=3, min_soc_pct=10, max_soc_pct=90)
    assert (ok.min_soc_kwh, ok.upper_kwh) == pytest.approx((0.5, 4.5))


def test_a_pv_series_of_the_wrong_length_is_refused() -> None:
    end = datetime(2024, 6, 12, 0, 0, tzinfo=UTC)
    with pytest.raises(InvalidInput, match=r"95 values but .* is 96 ISPs"):
        power_series("pv", T0, [0.0] * 95, end=end)
    assert len(power_series("pv", T0, [0.0] * 96, end=end).values_kw) == 96


def test_a_pv_series_of_the_wrong_unit_is_refused() -> None:
    with pytest.raises(InvalidInput, match="unit 'MW' is unknown"):
        power_series("pv", T0, [1.0], unit="MW")
    # 3,200 "kW" on a 4 kWp roof: watts given as kW.
    with pytest.raises(InvalidInput, match="unit is wrong"):
        power_series("pv", T0, [0.0, 3200.0], pv_kwp=4.0)
    assert power_series("pv", T0, [0.0, 3200.0], unit="W", pv_kwp=4.0).values_kw == (0.0, 3.2)
    assert power_series("load", T0, [0.25], unit="kWh").values_kw == (1.0,)
    with pytest.raises(InvalidInput, match="magnitudes"):
        power_series("load", T0, [-1.0])
    with pytest.raises(InvalidInput, match="15-minute grid"):
        power_series("load", datetime(2024, 6, 11, 0, 5, tzinfo=UTC), [1.0])


def test_a_tariff_with_overlapping_periods_is_refused() -> None:
    with pytest.raises(InvalidInput, match="'peak' and 'off-peak' overlap at 21:00-22:00"):
        Tariff(periods=(tou_period("off-peak", "21:00", "06:00", 0.2), tou_period("peak", "06:00", "22:00", 0.27)))
    with pytest.raises(InvalidInput, match="leave 06:00-07:00 without a price"):
        Tariff(periods=(tou_period("off-peak", "22:00", "06:00", 0.2), tou_period("peak", "07:00", "22:00", 0.27)))
    with pytest.raises(InvalidInput, match="times are HH:MM"):
        tou_period("peak", "6h", "22:00", 0.27)


def test_time_of_use_and_dynamic_prices_per_isp() -> None:
    tariff = Tariff(periods=PEAK_OFFPEAK, timezone="Europe/Paris")
    # 03:45 UTC is 05:45 in Paris (off-peak), 04:00 UTC is 06:00 (peak).
    at = [datetime(2024, 6, 11, 3, 45, tzinfo=UTC), datetime(2024, 6, 11, 4, 0, tzinfo=UTC)]
    assert tariff.import_eur_per_kwh(at, []) == [0.2068, 0.27]
    dynamic = Tariff(energy="dynamic", markup_eur_per_kwh=0.1, export_dynamic=True)
    assert dynamic.import_eur_per_kwh(at, [50.0, -10.0]) == pytest.approx([0.15, 0.09])
    assert dynamic.export_price_eur_per_kwh(at, [50.0, -10.0]) == pytest.approx([0.05, -0.01])
    with pytest.raises(InvalidInput, match="no time-of-use periods"):
        Tariff(energy="dynamic", periods=PEAK_OFFPEAK)


def test_a_subscription_below_the_houses_own_base_load_is_refused() -> None:
    connection = GridConnection(subscription_kva=3.0)
    with pytest.raises(InvalidInput, match=r"subscription of 3 kVA is below the building's own base load of 3\.5 kW"):
        connection.check_base_load([3.5, 4.0, 6.0])
    GridConnection(subscription_kva=12.0).check_base_load([0.3, 4.0, 6.0])
    assert GridConnection(import_max_kw=20, subscription_kva=12).import_limit_kw == 12.0
    with pytest.raises(InvalidInput, match="subscription_kva must be positive"):
        GridConnection(subscription_kva=0)
