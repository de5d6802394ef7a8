import json
from datetime import UTC, datetime, timedelta

import pytest

from adapters.ocpi.v2_2_1 import mapping
from adapters.ocpi.v2_2_1 import schemas as wire
from vpp.locations.values import ConnectorInfo
from vpp.ocpi.schemas import ConnectionFlags

NOW = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
AC3 = ConnectorInfo("AC_3_PHASE", 3, 230, 32, 22.08, True, ("CHARGING_PROFILE_CAPABLE",))
AC1 = ConnectorInfo("AC_1_PHASE", 1, 230, 16, 3.68, True, ())
DC = ConnectorInfo("DC", 1, 920, 400, 150.0, True, ())


def test_ac_limits_go_out_in_amperes_per_phase_to_one_decimal_toward_zero() -> None:
    profile, rate, unit = mapping.limit_profile(3.7, connector=AC3, flags=ConnectionFlags(), now=NOW,
                                                valid_until=NOW + timedelta(minutes=15))
    # 3.7 kW is 5.36 A per phase: 5.3 A, never the 5.4 A (3.73 kW) that would allow more than planned.
    assert unit == wire.ChargingRateUnit.A and rate == 5.3
    assert profile.duration == 900 and profile.start_date_time == NOW
    assert profile.charging_profile_period[0].limit == 5.3
    assert mapping.kw_to_rate(3.68, wire.ChargingRateUnit.A, AC1) == 16.0  # a whole tenth stays as it is
    assert mapping.kw_to_rate(4.2, wire.ChargingRateUnit.A, AC3) == 6.0  # a §14a cap is not exceeded by 9 W
    assert mapping.kw_to_rate(-5.0, wire.ChargingRateUnit.A, AC3) == -7.2  # discharge: no more than planned either


@pytest.mark.parametrize("kw", [0.0, 0.05, 1.38, 3.7, 4.2, 6.9, 11.0, 11.04, 22.08, -3.3, -11.0])
def test_a_sent_limit_never_allows_more_than_the_planned_one(kw: float) -> None:
    for connector, unit in ((AC3, wire.ChargingRateUnit.A), (AC1, wire.ChargingRateUnit.A),
                            (None, wire.ChargingRateUnit.W)):
        back = mapping.rate_to_kw(mapping.kw_to_rate(kw, unit, connector), unit, connector)
        assert abs(back) <= abs(kw) + 1e-9
        step = 0.1 * (connector.max_voltage_v * connector.phases / 1000.0 if connector else 1e-3)
        assert abs(back) > abs(kw) - step - 1e-9


def test_dc_unknown_connectors_and_watt_peers_get_watts() -> None:
    assert mapping.limit_profile(50.04, connector=DC, flags=ConnectionFlags(), now=NOW, valid_until=None)[1:] == (
        50040.0, wire.ChargingRateUnit.W)
    assert mapping.profile_unit(None, ConnectionFlags()) == wire.ChargingRateUnit.W
    assert mapping.profile_unit(AC3, ConnectionFlags(profiles_in_watts=True)) == wire.ChargingRateUnit.W
    assert mapping.limit_profile(1.23456, connector=None, flags=ConnectionFlags(), now=NOW,
                                 valid_until=None)[1] == 1234.5


def test_a_limit_in_amperes_needs_the_connector_to_come_back_in_kw() -> None:
    assert mapping.rate_to_kw(16.0, wire.ChargingRateUnit.A, AC3) == pytest.approx(11.04)
    assert mapping.rate_to_kw(7400.0, wire.ChargingRateUnit.W, None) == pytest.approx(7.4)
    with pytest.raises(ValueError, match="voltage"):
        mapping.rate_to_kw(16.0, wire.ChargingRateUnit.A, None)


def test_the_legacy_profile_shape_has_min_charge_rate_and_a_single_period_object() -> None:
    profile, _rate, _unit = mapping.limit_profile(7.4, connector=None, flags=ConnectionFlags(), now=NOW,
                                                  valid_until=None)
    body = mapping.set_profile_body(profile, "http://vpp/r/1", ConnectionFlags(legacy_profile_shape=True))
    assert body["charging_profile"]["charging_profile_period"] == {"start_period": 0, "limit": 7400.0}
    assert body["charging_profile"]["min_charge_rate"] == 0.0
    spec = mapping.set_profile_body(profile, "http://vpp/r/1", ConnectionFlags())
    assert spec["charging_profile"]["charging_profile_period"] == [{"start_period": 0, "limit": 7400.0}]
    assert spec["response_url"] == "http://vpp/r/1" and spec["charging_profile"]["start_date_time"].endswith("Z")


def test_a_charging_period_becomes_a_reading_keeping_unmapped_dimensions() -> None:
    period = wire.ChargingPeriod.model_validate({
        "start_date_time": "2026-03-02T08:00:00.123456+01:00", "tariff_id": "T1",
        "dimensions": [{"type": "POWER", "volume": 7.2}, {"type": "ENERGY", "volume": 1.8},
                       {"type": "STATE_OF_CHARGE", "volume": 55}, {"type": "MAX_POWER", "volume": 11},
                       {"type": "VENDOR_X", "volume": 1}],
    })
    reading = mapping.period_to_reading(period)
    assert reading.start == datetime(2026, 3, 2, 7, 0, 0, 123456, tzinfo=UTC)
    assert (reading.power_kw, reading.energy_kwh, reading.soc_pct) == (7.2, 1.8, 55)
    assert reading.extra == {"MAX_POWER": 11, "VENDOR_X": 1, "tariff_id": "T1"}


def test_energy_import_minus_export_stands_in_for_a_missing_energy_dimension() -> None:
    period = wire.ChargingPeriod.model_validate({
        "start_date_time": "2026-03-02T08:00:00Z",
        "dimensions": [{"type": "ENERGY_IMPORT", "volume": 3.0}, {"type": "ENERGY_EXPORT", "volume": 1.0}],
    })
    assert mapping.period_to_reading(period).energy_kwh == 2.0


def test_a_patch_maps_only_the_fields_it_carries_and_the_receive_time_stands_in_for_last_updated() -> None:
    patch = wire.SessionPatch.model_validate({"kwh": 4.5, "status": "RESERVED", "end_date_time": None})
    changes = mapping.session_patch_to_changes(patch, received_at=NOW)
    assert changes.fields == {"energy_kwh": 4.5, "status": "reservation", "end_at": None}
    assert changes.last_updated == NOW and changes.readings == ()


def test_an_active_profile_in_amperes_becomes_absolute_kw_points() -> None:
    active = wire.ActiveChargingProfile.model_validate({
        "start_date_time": "2026-03-02T08:00:00Z",
        "charging_profile": {"charging_rate_unit": "A", "charging_profile_period": [
            {"start_period": 0, "limit": 16}, {"start_period": 900, "limit": 8}]},
    })
    points = mapping.active_schedule(active, AC3)
    assert [(p.start, p.limit_kw) for p in points] == [(NOW, 11.04), (NOW + timedelta(minutes=15), 5.52)]


def test_a_connector_without_max_electric_power_gets_none_rated_and_the_phase_count() -> None:
    connector = wire.Connector.model_validate({
        "id": "1", "standard": "IEC_62196_T2", "format": "SOCKET", "power_type": "AC_1_PHASE",
        "max_voltage": 230.0, "max_amperage": 16, "last_updated": "2026-03-02T08:00:00Z",
    })
    record = mapping.connector_to_record(connector)
    assert (record.phases, record.rated_power_kw, record.max_voltage_v) == (1, None, 230)


def test_every_sync_answer_has_a_limit_status() -> None:
    assert {mapping.response_status(r).value for r in wire.ChargingProfileResponseType} == {
        "accepted", "not_supported", "rejected", "too_often", "unknown_session"}


@pytest.mark.parametrize("legacy", [False, True])
@pytest.mark.parametrize("watts", [False, True])
def test_the_direct_profile_body_is_the_models_body(legacy: bool, watts: bool) -> None:
    # The dispatcher builds thousands of bodies per cycle without the models: they must be the same JSON.
    flags = ConnectionFlags(legacy_profile_shape=legacy, profiles_in_watts=watts)
    url = "https://scsp.example/ocpi/scsp/2.2.1/chargingprofiles/results/r1"
    now = NOW.replace(microsecond=123456)
    for connector in (AC3, DC, None):
        for limit_kw in (0.0, 3.7, 7.36, 11.04, 22.0, 49.99, 150.0):
            for valid_until in (None, now + timedelta(minutes=5), now + timedelta(milliseconds=10)):
                profile, rate, unit = mapping.limit_profile(limit_kw, connector=connector, flags=flags, now=now,
                                                            valid_until=valid_until)
                body, rate2, unit2 = mapping.limit_profile_body(limit_kw, connector=connector, flags=flags, now=now,
                                                                valid_until=valid_until, response_url=url)
                expected = mapping.set_profile_body(profile, url, flags)
                assert json.dumps(body) == json.dumps(expected) and (rate2, unit2) == (rate, unit)
