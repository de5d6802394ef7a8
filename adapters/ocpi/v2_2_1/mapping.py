"""Where OCPI 2.2.1 wire models and the domain's values meet; nothing else imports both.

Units: OCPI dimensions carry kW/kWh like the domain; ChargingProfile limits are W (total over phases) or
A (per phase). For AC we send A = P / (V_LN x phases) with the connector's line-to-neutral voltage and
phase count (1 for AC_1_PHASE, 2 for AC_2_PHASE[_SPLIT], 3 for AC_3_PHASE); DC, unknown connectors and
peers flagged ``profiles_in_watts`` get W. Limits go out rounded to one decimal.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from adapters.ocpi.v2_2_1 import schemas as wire
from adapters.ocpi.v2_2_1.transport import format_datetime
from vpp.cdrs.tables import ChargeDetailRecord
from vpp.cdrs.values import CdrRecord
from vpp.locations.service import LocationTree
from vpp.locations.tables import ChargingConnector, ChargingEvse
from vpp.locations.values import ConnectorInfo, ConnectorRecord, EvseRecord, LocationRecord
from vpp.ocpi.schemas import ConnectionFlags, EndpointRef, PartyRole
from vpp.ports import LimitStatus
from vpp.sessions.tables import ChargingSession, SessionReading
from vpp.sessions.values import LimitPoint, Reading, SessionChanges, SessionRecord

# ------------------------------------------------------------------------------------------- sessions

_MAPPED_DIMENSIONS = {
    wire.CdrDimensionType.POWER: "power_kw",
    wire.CdrDimensionType.ENERGY: "energy_kwh",
    wire.CdrDimensionType.STATE_OF_CHARGE: "soc_pct",
    wire.CdrDimensionType.CURRENT: "current_a",
}
_KNOWN = frozenset(item.value for item in wire.CdrDimensionType)
_DIMENSION_OF_FIELD = {field: dimension for dimension, field in _MAPPED_DIMENSIONS.items()}


def session_status(status: wire.SessionStatus) -> str:
    """Domain status of a wire session status."""
    return status.value.lower()


def wire_session_status(status: str) -> wire.SessionStatus:
    """Wire status of a domain session status."""
    return wire.SessionStatus(status.upper())


def period_to_reading(period: wire.ChargingPeriod) -> Reading:
    """A charging period as a reading; dimensions without a column are kept in ``extra``."""
    values: dict[str, float] = {}
    extra: dict[str, Any] = {}
    for dimension in period.dimensions:
        # The wire model keeps unknown types as str and pydantic's smart union picks str for known ones too:
        # look up by value (StrEnum members compare equal to their strings).
        field = _MAPPED_DIMENSIONS.get(wire.CdrDimensionType(dimension.type)) if dimension.type in _KNOWN else None
        if field is not None and field not in values:
            values[field] = dimension.volume
        else:
            extra[str(dimension.type)] = dimension.volume
    if "energy_kwh" not in values and wire.CdrDimensionType.ENERGY_IMPORT in extra:
        values["energy_kwh"] = extra[wire.CdrDimensionType.ENERGY_IMPORT] - extra.get(
            wire.CdrDimensionType.ENERGY_EXPORT, 0.0
        )
    if period.tariff_id is not None:
        extra["tariff_id"] = period.tariff_id
    return Reading(start=period.start_date_time, extra=extra or None, **values)


def reading_to_period(reading: SessionReading) -> wire.ChargingPeriod:
    """A stored reading back as a charging period (for GET on our receiver)."""
    dimensions = [
        wire.CdrDimension(type=_DIMENSION_OF_FIELD[field], volume=value)
        for field in ("energy_kwh", "power_kw", "soc_pct", "current_a")
        if (value := getattr(reading, field)) is not None
    ]
    extra = dict(reading.extra or {})
    tariff_id = extra.pop("tariff_id", None)
    dimensions += [wire.CdrDimension(type=name, volume=float(volume)) for name, volume in extra.items()]
    if not dimensions:
        dimensions = [wire.CdrDimension(type=wire.CdrDimensionType.ENERGY, volume=0.0)]
    return wire.ChargingPeriod(start_date_time=reading.start_at, dimensions=dimensions, tariff_id=tariff_id)


def session_to_record(session: wire.Session) -> SessionRecord:
    """A full wire session (PUT or pull) as a domain record."""
    return SessionRecord(
        country_code=session.country_code,
        party_id=session.party_id,
        external_id=session.id,
        status=session_status(session.status),
        start=session.start_date_time,
        end=session.end_date_time,
        energy_kwh=session.kwh,
        location_id=session.location_id,
        evse_uid=session.evse_uid,
        connector_id=session.connector_id,
        currency=session.currency,
        meter_id=session.meter_id,
        auth_method=session.auth_method.value,
        authorization_reference=session.authorization_reference,
        driver_token=session.cdr_token.to_json_dict(),
        total_cost_excl_vat=session.total_cost.excl_vat if session.total_cost else None,
        total_cost_incl_vat=session.total_cost.incl_vat if session.total_cost else None,
        last_updated=session.last_updated,
        readings=tuple(period_to_reading(p) for p in session.charging_periods or ()),
    )


def session_patch_to_changes(patch: wire.SessionPatch, *, received_at: datetime) -> SessionChanges:
    """A wire PATCH as domain changes; without last_updated (lenient peers) the receive time stands in."""
    fields: dict[str, Any] = {}
    simple = {
        "start_date_time": "start_at", "end_date_time": "end_at", "kwh": "energy_kwh",
        "location_id": "location_id", "evse_uid": "evse_uid", "connector_id": "connector_id",
        "currency": "currency", "meter_id": "meter_id", "authorization_reference": "authorization_reference",
    }
    for name in patch.model_fields_set:
        if name in simple:
            fields[simple[name]] = getattr(patch, name)
    if patch.status is not None:
        fields["status"] = session_status(patch.status)
    if patch.auth_method is not None:
        fields["auth_method"] = patch.auth_method.value
    if patch.cdr_token is not None:
        fields["driver_token"] = patch.cdr_token.to_json_dict()
    if patch.total_cost is not None:
        fields["total_cost_excl_vat"] = patch.total_cost.excl_vat
        fields["total_cost_incl_vat"] = patch.total_cost.incl_vat
    return SessionChanges(
        fields=fields,
        last_updated=patch.last_updated or received_at,
        readings=tuple(period_to_reading(p) for p in patch.charging_periods or ()),
    )


def session_to_wire(row: ChargingSession, readings: Sequence[SessionReading]) -> wire.Session:
    """A stored session as the wire object the CPO pushed."""
    total_cost = (
        wire.Price(excl_vat=row.total_cost_excl_vat, incl_vat=row.total_cost_incl_vat)
        if row.total_cost_excl_vat is not None
        else None
    )
    return wire.Session(
        country_code=row.country_code,
        party_id=row.party_id,
        id=row.external_id,
        start_date_time=row.start_at,
        end_date_time=row.end_at,
        kwh=row.energy_kwh,
        cdr_token=wire.CdrToken.model_validate(row.driver_token),
        auth_method=wire.AuthMethod(row.auth_method or wire.AuthMethod.WHITELIST),
        authorization_reference=row.authorization_reference,
        location_id=row.location_id,
        evse_uid=row.evse_uid,
        connector_id=row.connector_id,
        meter_id=row.meter_id,
        currency=row.currency,
        charging_periods=[reading_to_period(r) for r in readings],
        total_cost=total_cost,
        status=wire_session_status(row.status),
        last_updated=row.last_updated,
    )


# ------------------------------------------------------------------------------------------ locations


def connector_to_record(connector: wire.Connector) -> ConnectorRecord:
    """A wire connector as a domain record (max power derived when the CPO gives none)."""
    rated = connector.max_electric_power
    return ConnectorRecord(
        external_id=connector.id,
        power_type=connector.power_type.value,
        phases=wire.PHASES[connector.power_type],
        max_voltage_v=connector.max_voltage,
        max_current_a=connector.max_amperage,
        rated_power_kw=rated / 1000.0 if rated else None,
        standard=str(connector.standard),
        format=connector.format.value,
        last_updated=connector.last_updated,
    )


def evse_to_record(evse: wire.Evse) -> EvseRecord:
    """A wire EVSE (with its connectors) as a domain record."""
    return EvseRecord(
        uid=evse.uid,
        evse_id=evse.evse_id,
        status=evse.status.value,
        capabilities=tuple(str(c) for c in evse.capabilities or ()),
        charging_profile_capable=evse.has_capability(wire.Capability.CHARGING_PROFILE_CAPABLE),
        last_updated=evse.last_updated,
        connectors=tuple(connector_to_record(c) for c in evse.connectors),
    )


def location_to_record(location: wire.Location) -> LocationRecord:
    """A wire location (with EVSEs) as a domain record."""
    return LocationRecord(
        country_code=location.country_code,
        party_id=location.party_id,
        external_id=location.id,
        publish=location.publish,
        name=location.name,
        address=location.address,
        city=location.city,
        postal_code=location.postal_code,
        country=location.country,
        latitude=location.coordinates.latitude,
        longitude=location.coordinates.longitude,
        time_zone=location.time_zone,
        last_updated=location.last_updated,
        evses=tuple(evse_to_record(e) for e in location.evses or ()),
    )


_LOCATION_PATCH = {
    "publish": "publish", "name": "name", "address": "address", "city": "city", "postal_code": "postal_code",
    "country": "country", "time_zone": "time_zone",
}
_EVSE_PATCH = {"status": "status", "capabilities": "capabilities", "evse_id": "evse_id"}
_CONNECTOR_PATCH = {
    "standard": "standard", "format": "format", "max_voltage": "max_voltage_v", "max_amperage": "max_current_a",
}


def location_patch_fields(body: dict[str, Any], level: str) -> dict[str, Any]:
    """Domain field changes of a Location/EVSE/Connector PATCH body (unknown wire fields are ignored)."""
    fields: dict[str, Any] = {}
    if level == "location":
        fields = {_LOCATION_PATCH[k]: v for k, v in body.items() if k in _LOCATION_PATCH}
        coordinates = body.get("coordinates")
        if isinstance(coordinates, dict):
            geo = wire.GeoLocation.model_validate(coordinates)
            fields["latitude"], fields["longitude"] = geo.latitude, geo.longitude
    elif level == "evse":
        fields = {_EVSE_PATCH[k]: v for k, v in body.items() if k in _EVSE_PATCH}
        if "status" in fields:
            fields["status"] = wire.EvseStatus(fields["status"]).value
        if "capabilities" in fields:
            fields["capabilities"] = [str(c) for c in fields["capabilities"] or []]
    else:
        fields = {_CONNECTOR_PATCH[k]: v for k, v in body.items() if k in _CONNECTOR_PATCH}
        if "power_type" in body:
            power_type = wire.PowerType(body["power_type"])
            fields["power_type"], fields["phases"] = power_type.value, wire.PHASES[power_type]
        if "max_electric_power" in body:
            rated = body["max_electric_power"]
            fields["rated_power_kw"] = float(rated) / 1000.0 if rated else None
        for name in ("max_voltage_v", "max_current_a"):
            if name in fields:
                fields[name] = round(float(fields[name]))
    return fields


def connector_to_wire(row: ChargingConnector) -> wire.Connector:
    """A stored connector as a wire connector."""
    return wire.Connector(
        id=row.external_id,
        standard=row.standard,
        format=wire.ConnectorFormat(row.format),
        power_type=wire.PowerType(row.power_type),
        max_voltage=row.max_voltage_v,
        max_amperage=row.max_current_a,
        max_electric_power=round(row.rated_power_kw * 1000) if row.rated_power_kw else None,
        last_updated=row.last_updated,
    )


def evse_to_wire(row: ChargingEvse, connectors: Sequence[ChargingConnector]) -> wire.Evse:
    """A stored EVSE as a wire EVSE."""
    return wire.Evse(
        uid=row.uid,
        evse_id=row.evse_id,
        status=wire.EvseStatus(row.status),
        capabilities=list(row.capabilities or []),
        connectors=[connector_to_wire(c) for c in connectors],
        last_updated=row.last_updated,
    )


def location_to_wire(tree: LocationTree) -> wire.Location:
    """A stored location tree as a wire location."""
    row = tree.location
    return wire.Location(
        country_code=row.country_code,
        party_id=row.party_id,
        id=row.external_id,
        publish=row.publish,
        name=row.name,
        address=row.address,
        city=row.city,
        postal_code=row.postal_code,
        country=row.country,
        coordinates=wire.GeoLocation(latitude=row.latitude, longitude=row.longitude),
        evses=[evse_to_wire(evse, connectors) for evse, connectors in tree.evses],
        time_zone=row.time_zone,
        last_updated=row.last_updated,
    )


# ----------------------------------------------------------------------------------------------- CDRs


def cdr_to_record(cdr: wire.Cdr) -> CdrRecord:
    """A wire CDR as a domain record, keeping the whole document."""
    return CdrRecord(
        country_code=cdr.country_code,
        party_id=cdr.party_id,
        external_id=cdr.id,
        session_external_id=cdr.session_id,
        start=cdr.start_date_time,
        end=cdr.end_date_time,
        energy_kwh=cdr.total_energy,
        total_time_h=cdr.total_time,
        parking_time_h=cdr.total_parking_time,
        currency=cdr.currency,
        total_cost_excl_vat=cdr.total_cost.excl_vat,
        total_cost_incl_vat=cdr.total_cost.incl_vat,
        credit=cdr.is_credit,
        credit_reference_id=cdr.credit_reference_id,
        location_id=cdr.cdr_location.id,
        evse_uid=cdr.cdr_location.evse_uid,
        connector_id=cdr.cdr_location.connector_id,
        last_updated=cdr.last_updated,
        document=cdr.to_json_dict(),
    )


def cdr_to_wire(row: ChargeDetailRecord) -> wire.Cdr:
    """A stored CDR as the wire object received."""
    return wire.Cdr.model_validate(row.document)


# ------------------------------------------------------------------------------------------ credentials


def roles_from_wire(roles: Sequence[wire.CredentialsRole]) -> list[PartyRole]:
    """Credentials roles as domain party roles."""
    return [PartyRole(r.role.value, r.country_code, r.party_id, r.business_details.name) for r in roles]


def endpoints_from_wire(details: wire.VersionDetails) -> list[EndpointRef]:
    """Version-details endpoints as stored endpoint references."""
    return [EndpointRef(str(e.identifier), e.role.value, e.url) for e in details.endpoints]


def details_from_endpoints(version: str, endpoints: Sequence[EndpointRef]) -> wire.VersionDetails:
    """Stored endpoint references as version details (for the outbound client)."""
    return wire.VersionDetails(
        version=version,
        endpoints=[wire.Endpoint(identifier=e.module, role=wire.InterfaceRole(e.role), url=e.url) for e in endpoints],
    )


# ------------------------------------------------------------------------------------ charging profiles

_RESPONSE_STATUS = {
    wire.ChargingProfileResponseType.ACCEPTED: LimitStatus.ACCEPTED,
    wire.ChargingProfileResponseType.NOT_SUPPORTED: LimitStatus.NOT_SUPPORTED,
    wire.ChargingProfileResponseType.REJECTED: LimitStatus.REJECTED,
    wire.ChargingProfileResponseType.TOO_OFTEN: LimitStatus.TOO_OFTEN,
    wire.ChargingProfileResponseType.UNKNOWN_SESSION: LimitStatus.UNKNOWN_SESSION,
}


def response_status(result: wire.ChargingProfileResponseType) -> LimitStatus:
    """The limit status of a synchronous ChargingProfileResponse."""
    return _RESPONSE_STATUS[result]


def profile_unit(connector: ConnectorInfo | None, flags: ConnectionFlags) -> wire.ChargingRateUnit:
    """A for AC connectors of known voltage (per phase), else W."""
    if (
        connector is None
        or flags.profiles_in_watts
        or connector.power_type == wire.PowerType.DC.value
        or connector.max_voltage_v <= 0
    ):
        return wire.ChargingRateUnit.W
    return wire.ChargingRateUnit.A


def kw_to_rate(limit_kw: float, unit: wire.ChargingRateUnit, connector: ConnectorInfo | None) -> float:
    """A kW limit in the profile unit (A = W / (V_LN x phases)), to one decimal toward zero: the limit sent never
    allows more than the one planned (4.2 kW on 3 x 230 V is 6.0 A, not the 6.1 A = 4.21 kW of rounding)."""
    rate = limit_kw * 1000.0
    if unit == wire.ChargingRateUnit.A:
        assert connector is not None
        rate /= connector.max_voltage_v * connector.phases
    # The epsilon keeps a rate that is a whole tenth up to float error (16.0 A from 3.68 kW) where it is.
    return math.copysign(math.floor(abs(rate) * 10.0 + 1e-6) / 10.0, rate) + 0.0


def rate_to_kw(limit: float, unit: wire.ChargingRateUnit, connector: ConnectorInfo | None) -> float:
    """A profile limit back in kW (A needs the connector's voltage and phases; W without them)."""
    if unit == wire.ChargingRateUnit.A:
        if connector is None or connector.max_voltage_v <= 0:
            raise ValueError("a limit in A needs the connector's voltage and phases")
        return limit * connector.max_voltage_v * connector.phases / 1000.0
    return limit / 1000.0


def limit_profile(
    limit_kw: float, *, connector: ConnectorInfo | None, flags: ConnectionFlags, now: datetime,
    valid_until: datetime | None,
) -> tuple[wire.ChargingProfile, float, wire.ChargingRateUnit]:
    """A one-period absolute profile capping the session at ``limit_kw`` from now until ``valid_until``."""
    unit = profile_unit(connector, flags)
    rate = kw_to_rate(limit_kw, unit, connector)
    duration = max(1, int((valid_until - now).total_seconds())) if valid_until is not None else None
    profile = wire.ChargingProfile(
        start_date_time=now,
        duration=duration,
        charging_rate_unit=unit,
        charging_profile_period=[wire.ChargingProfilePeriod(start_period=0, limit=rate)],
    )
    return profile, rate, unit


def set_profile_body(profile: wire.ChargingProfile, response_url: str, flags: ConnectionFlags) -> dict[str, Any]:
    """The SetChargingProfile body; peers flagged ``legacy_profile_shape`` get their library's shape."""
    body = wire.SetChargingProfile(charging_profile=profile, response_url=response_url).to_json_dict()
    return _legacy_shape(body) if flags.legacy_profile_shape else body


def limit_profile_body(
    limit_kw: float, *, connector: ConnectorInfo | None, flags: ConnectionFlags, now: datetime,
    valid_until: datetime | None, response_url: str,
) -> tuple[dict[str, Any], float, wire.ChargingRateUnit]:
    """``set_profile_body(limit_profile(...))`` built directly as JSON-ready data (a cycle builds thousands)."""
    unit = profile_unit(connector, flags)
    rate = kw_to_rate(limit_kw, unit, connector)
    profile: dict[str, Any] = {"start_date_time": format_datetime(now)}
    if valid_until is not None:
        profile["duration"] = max(1, int((valid_until - now).total_seconds()))
    profile["charging_rate_unit"] = unit.value
    profile["charging_profile_period"] = [{"start_period": 0, "limit": round(rate, 1)}]
    body = {"charging_profile": profile, "response_url": response_url}
    return (_legacy_shape(body) if flags.legacy_profile_shape else body), rate, unit


def _legacy_shape(body: dict[str, Any]) -> dict[str, Any]:
    legacy = body["charging_profile"]
    periods = legacy.pop("charging_profile_period", [])
    legacy["charging_profile_period"] = periods[0] if len(periods) == 1 else periods
    legacy["min_charge_rate"] = legacy.pop("min_charging_rate", 0.0)
    return body


def active_schedule(active: wire.ActiveChargingProfile, connector: ConnectorInfo | None) -> list[LimitPoint]:
    """The schedule of an ActiveChargingProfile as absolute limit points in kW."""
    profile = active.charging_profile
    base = profile.start_date_time or active.start_date_time
    return [
        LimitPoint(
            start=base + timedelta(seconds=period.start_period),
            limit_kw=round(rate_to_kw(period.limit, profile.charging_rate_unit, connector), 3),
        )
        for period in profile.charging_profile_period
    ]
