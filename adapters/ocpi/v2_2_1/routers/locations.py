"""Inbound Locations receiver: locations, EVSEs and connectors pushed by the CPO (GET/PUT/PATCH)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Body, Response
from pydantic import ValidationError

from adapters.ocpi.v2_2_1 import mapping
from adapters.ocpi.v2_2_1.routers.common import (
    Caller,
    ModuleCaller,
    OcpiRequestError,
    envelope,
    ocpi_router,
    require_party,
    require_same,
)
from adapters.ocpi.v2_2_1.schemas import Connector, Evse, Location
from adapters.ocpi.v2_2_1.transport import OCPI_VERSION, OcpiStatus, parse_datetime
from vpp.api.deps import SessionDep
from vpp.domain.errors import NotFound
from vpp.locations import service as locations

router = ocpi_router(f"/{OCPI_VERSION}/locations", "locations")
LOCATION = "/{country_code}/{party_id}/{location_id}"
EVSE = LOCATION + "/{evse_uid}"
CONNECTOR = EVSE + "/{connector_id}"
PatchBody = Annotated[Any, Body()]


def _written(outcome: str) -> Response:
    if outcome == "stale":
        return envelope(message="ignored: last_updated is older than the stored object")
    return envelope(http_status=201 if outcome == "created" else 200)


def _get(
    caller: Caller, db: SessionDep, country_code: str, party_id: str, location_id: str,
    evse_uid: str | None = None, connector_id: str | None = None,
) -> Response:
    require_party(caller, country_code, party_id)
    location = mapping.location_to_wire(locations.get_tree(db, caller.connection_id, country_code, party_id,
                                                            location_id))
    data: Any = location
    if evse_uid is not None:
        data = next((e for e in location.evses or [] if e.uid.casefold() == evse_uid.casefold()), None)
        if data is not None and connector_id is not None:
            data = next((c for c in data.connectors if c.id.casefold() == connector_id.casefold()), None)
        if data is None:
            raise NotFound(f"unknown {'connector' if connector_id else 'EVSE'} under location {location_id}")
    return envelope(data, wrap_list=caller.auth.flags.list_wrapped_data)


def _patch(
    caller: Caller, db: SessionDep, body: Any, country_code: str, party_id: str, location_id: str,
    evse_uid: str | None = None, connector_id: str | None = None,
) -> Response:
    require_party(caller, country_code, party_id)
    if not isinstance(body, dict):
        raise OcpiRequestError(OcpiStatus.INVALID_OR_MISSING_PARAMETERS, "a PATCH body must be a JSON object")
    if body.get("last_updated") is None:
        raise OcpiRequestError(OcpiStatus.INVALID_OR_MISSING_PARAMETERS, "last_updated is required in a PATCH")
    level = "connector" if connector_id else "evse" if evse_uid else "location"
    try:
        last_updated = parse_datetime(body["last_updated"])
        fields = mapping.location_patch_fields(body, level)
    except (ValueError, TypeError, ValidationError) as exc:
        raise OcpiRequestError(OcpiStatus.INVALID_OR_MISSING_PARAMETERS, f"invalid PATCH: {exc}") from exc
    outcome = locations.patch(
        db, caller.connection_id, country_code, party_id, location_id, fields=fields, last_updated=last_updated,
        evse_uid=evse_uid, connector_id=connector_id,
    )
    return _written(outcome)


@router.get(LOCATION, operation_id="ocpi_get_location")
def get_location(country_code: str, party_id: str, location_id: str, caller: ModuleCaller, db: SessionDep) -> Response:
    """Our copy of a location."""
    return _get(caller, db, country_code, party_id, location_id)


@router.get(EVSE, operation_id="ocpi_get_evse")
def get_evse(
    country_code: str, party_id: str, location_id: str, evse_uid: str, caller: ModuleCaller, db: SessionDep
) -> Response:
    """Our copy of an EVSE."""
    return _get(caller, db, country_code, party_id, location_id, evse_uid)


@router.get(CONNECTOR, operation_id="ocpi_get_connector")
def get_connector(
    country_code: str, party_id: str, location_id: str, evse_uid: str, connector_id: str, caller: ModuleCaller,
    db: SessionDep,
) -> Response:
    """Our copy of a connector."""
    return _get(caller, db, country_code, party_id, location_id, evse_uid, connector_id)


@router.put(LOCATION, operation_id="ocpi_put_location")
def put_location(
    country_code: str, party_id: str, location_id: str, body: Location, caller: ModuleCaller, db: SessionDep
) -> Response:
    """Create or replace a location (and the EVSEs and connectors it lists)."""
    require_party(caller, country_code, party_id)
    require_same("id", location_id, body.id)
    require_same("country_code", country_code, body.country_code)
    require_same("party_id", party_id, body.party_id)
    return _written(locations.put_location(db, caller.connection_id, mapping.location_to_record(body)))


@router.put(EVSE, operation_id="ocpi_put_evse")
def put_evse(
    country_code: str, party_id: str, location_id: str, evse_uid: str, body: Evse, caller: ModuleCaller,
    db: SessionDep,
) -> Response:
    """Create or replace an EVSE of a known location."""
    require_party(caller, country_code, party_id)
    require_same("uid", evse_uid, body.uid)
    record = mapping.evse_to_record(body)
    return _written(locations.put_evse(db, caller.connection_id, country_code, party_id, location_id, record))


@router.put(CONNECTOR, operation_id="ocpi_put_connector")
def put_connector(
    country_code: str, party_id: str, location_id: str, evse_uid: str, connector_id: str, body: Connector,
    caller: ModuleCaller, db: SessionDep,
) -> Response:
    """Create or replace a connector of a known EVSE."""
    require_party(caller, country_code, party_id)
    require_same("id", connector_id, body.id)
    record = mapping.connector_to_record(body)
    return _written(
        locations.put_connector(db, caller.connection_id, country_code, party_id, location_id, evse_uid, record)
    )


@router.patch(LOCATION, operation_id="ocpi_patch_location")
def patch_location(
    country_code: str, party_id: str, location_id: str, caller: ModuleCaller, db: SessionDep,
    body: PatchBody,
) -> Response:
    """Change some fields of a location."""
    return _patch(caller, db, body, country_code, party_id, location_id)


@router.patch(EVSE, operation_id="ocpi_patch_evse")
def patch_evse(
    country_code: str, party_id: str, location_id: str, evse_uid: str, caller: ModuleCaller, db: SessionDep,
    body: PatchBody,
) -> Response:
    """Change some fields of an EVSE (status, capabilities)."""
    return _patch(caller, db, body, country_code, party_id, location_id, evse_uid)


@router.patch(CONNECTOR, operation_id="ocpi_patch_connector")
def patch_connector(
    country_code: str, party_id: str, location_id: str, evse_uid: str, connector_id: str, caller: ModuleCaller,
    db: SessionDep, body: PatchBody,
) -> Response:
    """Change some fields of a connector (its power)."""
    return _patch(caller, db, body, country_code, party_id, location_id, evse_uid, connector_id)
