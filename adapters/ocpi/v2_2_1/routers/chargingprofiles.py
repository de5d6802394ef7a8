"""Inbound ChargingProfiles sender interface: async results on our response URLs, active-profile pushes."""

from __future__ import annotations

import logging

from fastapi import Request, Response
from sqlalchemy.orm import Session as DbSession

from adapters.ocpi.v2_2_1 import mapping
from adapters.ocpi.v2_2_1.routers.common import ModuleCaller, envelope, in_transaction, ocpi_router
from adapters.ocpi.v2_2_1.schemas import ActiveChargingProfile, ActiveChargingProfileResult
from adapters.ocpi.v2_2_1.transport import OCPI_VERSION
from vpp.db import utcnow
from vpp.locations import service as locations
from vpp.observability import PROFILE_REQUESTS
from vpp.sessions import limits
from vpp.sessions import service as sessions

log = logging.getLogger(__name__)

router = ocpi_router(f"/{OCPI_VERSION}/chargingprofiles", "chargingprofiles")


def _result(db: DbSession, request_id: str, body: ActiveChargingProfileResult, connection_id: str) -> None:
    # The three result shapes differ only by the optional profile: the stored request says which one it is.
    row = limits.record_result(db, connection_id, request_id, body.result.value, now=utcnow())
    PROFILE_REQUESTS.labels(row.kind, f"result_{body.result.value.lower()}").inc()
    if row.kind == "get" and body.profile is not None:
        _store_active(db, connection_id, row.session_id, body.profile)


def _store_active(db: DbSession, connection_id: str, session_id: str, active: ActiveChargingProfile) -> None:
    row = sessions.get_or_raise(db, session_id)
    connector = locations.connector_info(db, connection_id, row.location_id, row.evse_uid, row.connector_id)
    try:
        schedule = mapping.active_schedule(active, connector)
    except ValueError as exc:
        log.warning("active profile of session %s not stored: %s", session_id, exc)
        return
    # On the row read above (an active profile's session was just found by its id: a second look-up by the CPO's
    # id was one more query per limit the CPO applies).
    sessions.set_active_limit(db, row, schedule, at=utcnow())


# Results and active profiles arrive for every limit a cycle sends: each is one transaction on one worker thread
# (``in_transaction``), committed there, so a SQLite writer holds the write lock only while it writes.


@router.post("/results/{request_id}", operation_id="ocpi_post_charging_profile_result")
async def post_result(
    request_id: str, body: ActiveChargingProfileResult, caller: ModuleCaller, request: Request
) -> Response:
    """The async result of a set, clear or get request, correlated by the request id in our response URL."""
    await in_transaction(request, lambda db: _result(db, request_id, body, caller.connection_id))
    return envelope()


@router.put("/results/{request_id}", operation_id="ocpi_put_charging_profile_result", include_in_schema=False)
async def put_result(
    request_id: str, body: ActiveChargingProfileResult, caller: ModuleCaller, request: Request
) -> Response:
    """The same, for peers that PUT their results."""
    await in_transaction(request, lambda db: _result(db, request_id, body, caller.connection_id))
    return envelope()


@router.put("/{session_id}", operation_id="ocpi_put_active_charging_profile")
async def put_active_profile(
    session_id: str, body: ActiveChargingProfile, caller: ModuleCaller, request: Request
) -> Response:
    """The schedule the charge point now applies to a session we steer."""

    def write(db: DbSession) -> bool:
        row = sessions.find_by_external_id(db, caller.connection_id, session_id)
        if row is None:
            return False
        _store_active(db, caller.connection_id, row.id, body)
        return True

    if not await in_transaction(request, write):
        return envelope(status_code=2000, message=f"unknown session {session_id}", http_status=404)
    return envelope()
