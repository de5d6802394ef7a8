"""Wire models accept what real peers send and refuse what the spec forbids."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from adapters.ocpi.v2_2_1.schemas import (
    ActiveChargingProfileResult,
    Capability,
    Cdr,
    CdrDimensionType,
    ChargingProfile,
    ChargingProfileResponse,
    ChargingProfileResponseType,
    ChargingProfileResultType,
    Connector,
    Credentials,
    Evse,
    Location,
    OcpiResponse,
    PowerType,
    Session,
    SessionPatch,
    SessionStatus,
    SetChargingProfile,
    VersionDetails,
    connector_max_power_w,
)

SESSION: dict[str, Any] = {
    "country_code": "NL",
    "party_id": "CPO",
    "id": "SESS-42",
    "start_date_time": "2026-11-27T10:00:00Z",
    "kwh": 3.2,
    "cdr_token": {
        "country_code": "NL",
        "party_id": "EMS",
        "uid": "0123ABCD",
        "type": "RFID",
        "contract_id": "NL-EMS-C00000001-X",
    },
    "auth_method": "WHITELIST",
    "location_id": "LOC1",
    "evse_uid": "LOC1-1",
    "connector_id": "1",
    "currency": "EUR",
    "charging_periods": [
        {
            "start_date_time": "2026-11-27T10:15:00Z",
            "dimensions": [
                {"type": "ENERGY", "volume": 1.8},
                {"type": "POWER", "volume": 7.2},
                {"type": "STATE_OF_CHARGE", "volume": 55},
            ],
        },
    ],
    "status": "ACTIVE",
    "last_updated": "2026-11-27T10:30:00Z",
}

CONNECTOR: dict[str, Any] = {
    "id": "1",
    "standard": "IEC_62196_T2",
    "format": "SOCKET",
    "power_type": "AC_3_PHASE",
    "max_voltage": 230,
    "max_amperage": 16,
    "last_updated": "2026-01-01T00:00:00Z",
}

CDR: dict[str, Any] = {
    "country_code": "NL",
    "party_id": "CPO",
    "id": "CDR-1",
    "start_date_time": "2026-11-27T10:00:00Z",
    "end_date_time": "2026-11-27T12:00:00Z",
    "session_id": "SESS-42",
    "cdr_token": SESSION["cdr_token"],
    "auth_method": "WHITELIST",
    "cdr_location": {
        "id": "LOC1",
        "address": "Street 1",
        "city": "Arnhem",
        "country": "NLD",
        "coordinates": {"latitude": "51.98", "longitude": "5.91"},
        "evse_uid": "LOC1-1",
        "evse_id": "NL*CPO*E1",
        "connector_id": "1",
        "connector_standard": "IEC_62196_T2",
        "connector_format": "SOCKET",
        "connector_power_type": "AC_3_PHASE",
    },
    "currency": "EUR",
    "charging_periods": [
        {
            "start_date_time": "2026-11-27T10:00:00Z",
            "dimensions": [{"type": "ENERGY", "volume": 12.5}, {"type": "TIME", "volume": 2}],
        }
    ],
    "total_cost": {"excl_vat": 4.38, "incl_vat": 5.30},
    "total_energy": 12.5,
    "total_time": 2.0,
    "last_updated": "2026-11-27T12:00:01Z",
}


def test_session_parses_with_unknown_fields_and_keeps_dimensions() -> None:
    session = Session.model_validate({**SESSION, "vendor_extra": {"x": 1}, "total_cost": {"excl_vat": 1}})
    assert session.start_date_time == datetime(2026, 11, 27, 10, tzinfo=UTC)
    assert session.charging_periods is not None
    period = session.charging_periods[0]
    assert period.volume(CdrDimensionType.POWER) == 7.2
    assert period.volume(CdrDimensionType.STATE_OF_CHARGE) == 55
    assert "vendor_extra" not in session.to_json_dict()


def test_session_accepts_sloppy_timestamps_numbers_and_the_reserved_erratum() -> None:
    session = Session.model_validate(
        {
            **SESSION,
            "start_date_time": "2026-11-27T11:00:00.123456789+01:00",
            "kwh": "3.2",
            "last_updated": "2026-11-27T10:30:00",
            "status": "RESERVED",
        }
    )
    assert session.start_date_time == datetime(2026, 11, 27, 10, 0, 0, 123456, tzinfo=UTC)
    assert session.last_updated.tzinfo is not None
    assert session.kwh == 3.2
    assert session.status == SessionStatus.RESERVATION
    assert session.to_json_dict()["start_date_time"] == "2026-11-27T10:00:00.123Z"


def test_unknown_dimension_types_are_kept_as_strings() -> None:
    period = {"start_date_time": "2026-11-27T10:15:00Z", "dimensions": [{"type": "VENDOR_TEMP", "volume": 21}]}
    session = Session.model_validate({**SESSION, "charging_periods": [period]})
    assert session.charging_periods is not None
    assert session.charging_periods[0].dimensions[0].type == "VENDOR_TEMP"


@pytest.mark.parametrize(
    ("field", "value"),
    [("country_code", "NLD"), ("party_id", "CP"), ("id", "x" * 37), ("currency", "EURO"), ("status", "DONE")],
)
def test_session_rejects_values_the_spec_forbids(field: str, value: str) -> None:
    with pytest.raises(ValidationError):
        Session.model_validate({**SESSION, field: value})


def test_session_patch_accepts_a_partial_body_and_exposes_missing_last_updated() -> None:
    patch = SessionPatch.model_validate({"kwh": 4.0, "charging_periods": SESSION["charging_periods"]})
    assert patch.last_updated is None
    assert patch.kwh == 4.0


def test_credit_cdr_needs_its_reference_and_parses_with_one() -> None:
    with pytest.raises(ValidationError):
        Cdr.model_validate({**CDR, "id": "CDR-1-C", "credit": True})
    credit = Cdr.model_validate(
        {
            **CDR,
            "id": "CDR-1-C",
            "credit": True,
            "credit_reference_id": "CDR-1",
            "total_cost": {"excl_vat": -4.38, "incl_vat": -5.30},
        }
    )
    assert credit.is_credit
    assert credit.total_cost.excl_vat < 0
    assert credit.total_energy == 12.5


def test_cdr_requires_total_energy_and_periods() -> None:
    without_energy = {k: v for k, v in CDR.items() if k != "total_energy"}
    with pytest.raises(ValidationError):
        Cdr.model_validate(without_energy)
    with pytest.raises(ValidationError):
        Cdr.model_validate({**CDR, "charging_periods": []})


def test_cdr_accepts_numeric_coordinates_and_a_39_character_id() -> None:
    location = {**CDR["cdr_location"], "coordinates": {"latitude": 51.98, "longitude": 5.91}}
    cdr = Cdr.model_validate({**CDR, "id": "C" * 39, "cdr_location": location})
    assert cdr.cdr_location.coordinates.latitude == "51.980000"


@pytest.mark.parametrize(
    ("power_type", "voltage", "amperage", "max_power", "expected"),
    [
        ("AC_1_PHASE", 230, 32, None, 7360.0),
        ("AC_2_PHASE", 230, 16, None, 7360.0),
        ("AC_2_PHASE_SPLIT", 120, 32, None, 7680.0),
        ("AC_3_PHASE", 230, 16, None, 11040.0),
        ("DC", 920, 400, None, 368000.0),
        ("DC", 920, 400, 150000, 150000.0),
        ("AC_3_PHASE", 230, 32, 0, 22080.0),
    ],
)
def test_connector_max_power_prefers_max_electric_power_else_derives_it(
    power_type: str, voltage: int, amperage: int, max_power: int | None, expected: float
) -> None:
    connector = Connector.model_validate(
        {
            **CONNECTOR,
            "power_type": power_type,
            "max_voltage": voltage,
            "max_amperage": amperage,
            "max_electric_power": max_power,
        }
    )
    assert connector_max_power_w(connector) == expected


def test_connector_tolerates_float_voltage_and_unknown_standard() -> None:
    connector = Connector.model_validate({**CONNECTOR, "max_voltage": 230.0, "standard": "NEW_PLUG_2030"})
    assert connector.max_voltage == 230
    assert connector.standard == "NEW_PLUG_2030"
    assert connector.power_type == PowerType.AC_3_PHASE


def test_evse_keeps_unknown_capabilities_and_reports_known_ones() -> None:
    evse = Evse.model_validate(
        {
            "uid": "E1",
            "status": "CHARGING",
            "capabilities": ["CHARGING_PROFILE_CAPABLE", "V2G_CAPABLE"],
            "connectors": [CONNECTOR],
            "last_updated": "2026-01-01T00:00:00Z",
        }
    )
    assert evse.has_capability(Capability.CHARGING_PROFILE_CAPABLE)
    assert evse.has_capability("V2G_CAPABLE")
    assert not evse.has_capability(Capability.RESERVABLE)


def test_location_parses_nested_evses() -> None:
    location = Location.model_validate(
        {
            "country_code": "NL",
            "party_id": "CPO",
            "id": "LOC1",
            "publish": True,
            "address": "Street 1",
            "city": "Arnhem",
            "country": "NLD",
            "coordinates": {"latitude": "51.98", "longitude": "5.91"},
            "time_zone": "Europe/Amsterdam",
            "last_updated": "2026-01-01T00:00:00Z",
            "evses": [
                {"uid": "E1", "status": "AVAILABLE", "connectors": [CONNECTOR], "last_updated": "2026-01-01T00:00:00Z"}
            ],
            "opening_times": {"twentyfourseven": True},
        }
    )
    assert location.evses is not None
    assert location.evses[0].connectors[0].max_amperage == 16


def test_charging_profile_rounds_limits_sorts_periods_and_accepts_peer_quirks() -> None:
    profile = ChargingProfile.model_validate(
        {
            "charging_rate_unit": "W",
            "min_charge_rate": 1400.04,
            "charging_profile_period": [{"start_period": 900, "limit": 3700.06}, {"start_period": 0, "limit": 7400}],
        }
    )
    assert [p.start_period for p in profile.charging_profile_period] == [0, 900]
    assert profile.charging_profile_period[1].limit == 3700.1
    assert profile.min_charging_rate == 1400.0
    single = ChargingProfile.model_validate(
        {"charging_rate_unit": "A", "charging_profile_period": {"start_period": 0, "limit": 16}}
    )
    assert len(single.charging_profile_period) == 1


def test_charging_profile_rejects_bad_units_and_duplicate_periods() -> None:
    with pytest.raises(ValidationError):
        ChargingProfile.model_validate({"charging_rate_unit": "kW", "charging_profile_period": []})
    with pytest.raises(ValidationError):
        ChargingProfile.model_validate(
            {
                "charging_rate_unit": "W",
                "charging_profile_period": [{"start_period": 0, "limit": 1}, {"start_period": 0, "limit": 2}],
            }
        )


def test_set_charging_profile_serialises_to_the_wire_shape() -> None:
    body = SetChargingProfile(
        charging_profile=ChargingProfile.model_validate(
            {
                "start_date_time": datetime(2026, 11, 27, 10, tzinfo=UTC),
                "duration": 3600,
                "charging_rate_unit": "W",
                "charging_profile_period": [{"start_period": 0, "limit": 7400.0}],
            }
        ),
        response_url="https://vpp.example/results/set/9f3a",
    ).to_json_dict()
    assert body == {
        "charging_profile": {
            "start_date_time": "2026-11-27T10:00:00Z",
            "duration": 3600,
            "charging_rate_unit": "W",
            "charging_profile_period": [{"start_period": 0, "limit": 7400.0}],
        },
        "response_url": "https://vpp.example/results/set/9f3a",
    }


def test_profile_responses_and_results_parse_all_outcomes() -> None:
    for result in ChargingProfileResponseType:
        assert ChargingProfileResponse.model_validate({"result": result.value, "timeout": 0}).result == result
    with pytest.raises(ValidationError):
        ChargingProfileResponse.model_validate({"result": "MAYBE", "timeout": 30})
    late = ActiveChargingProfileResult.model_validate({"result": "ACCEPTED", "profile": None, "extra": 1})
    assert late.result == ChargingProfileResultType.ACCEPTED
    assert late.profile is None


def test_envelope_accepts_missing_data_and_missing_timestamp() -> None:
    envelope = OcpiResponse.model_validate({"status_code": 1000})
    assert envelope.data is None
    assert envelope.timestamp is None


def test_credentials_token_must_be_printable_ascii_and_roles_non_empty() -> None:
    role = {"role": "SCSP", "business_details": {"name": "VPP"}, "party_id": "VPP", "country_code": "NL"}
    Credentials.model_validate({"token": "abc-123", "url": "https://x/versions", "roles": [role]})
    with pytest.raises(ValidationError):
        Credentials.model_validate({"token": "has space", "url": "https://x/versions", "roles": [role]})
    with pytest.raises(ValidationError):
        Credentials.model_validate({"token": "abc", "url": "https://x/versions", "roles": []})


def test_version_details_finds_endpoints_by_module_and_role() -> None:
    details = VersionDetails.model_validate(
        {
            "version": "2.2",
            "endpoints": [
                {"identifier": "sessions", "role": "SENDER", "url": "https://cpo/sessions"},
                {"identifier": "sessions", "role": "RECEIVER", "url": "https://cpo/rx/sessions"},
                {"identifier": "nltnm-tokens", "role": "SENDER", "url": "https://cpo/custom"},
            ],
        }
    )
    assert details.endpoint_url("sessions", role=None) == "https://cpo/sessions"
    assert details.endpoint_url("SESSIONS", role="RECEIVER") == "https://cpo/rx/sessions"  # type: ignore[arg-type]
    assert details.endpoint_url("chargingprofiles") is None
