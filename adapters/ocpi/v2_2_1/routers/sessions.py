"""Inbound Sessions receiver: the CPO pushes sessions (PUT) and their progress (PATCH); GET reads our copy.

PUT and PATCH are the hot intake path: the body is parsed straight from bytes and the whole write runs as
one transaction in one worker-thread hop (``in_transaction``), committed before the answer. On PostgreSQL a PATCH
goes through the group commit of ``vpp.sessions.intake`` (concurrent PATCHes share one transaction and one WAL
flush; each is answered after that commit, with its own outcome).
"""

from __future__ import annotations

from fastapi import Request, Response
from sqlalchemy.orm import Session as DbSession
from starlette.applications import Starlette

from adapters.ocpi.v2_2_1 import mapping
from adapters.ocpi.v2_2_1.routers.common import (
    Caller,
    ModuleCaller,
    OcpiRequestError,
    envelope,
    in_transaction,
    in_transaction_of,
    ocpi_router,
    parse_body,
    read_body,
    require_party,
    require_same,
)
from adapters.ocpi.v2_2_1.schemas import Session, SessionPatch
from adapters.ocpi.v2_2_1.transport import OCPI_VERSION, OcpiStatus
from vpp.api.deps import SessionDep
from vpp.db import utcnow
from vpp.sessions import service as sessions
from vpp.sessions.intake import PatchBatcher

router = ocpi_router(f"/{OCPI_VERSION}/sessions", "sessions")
PATH = "/{country_code}/{party_id}/{session_id}"
_BODY = {"content": {"application/json": {"schema": {"type": "object"}}}, "required": True}


@router.get(PATH, operation_id="ocpi_get_session")
def get_session(
    country_code: str, party_id: str, session_id: str, caller: ModuleCaller, db: SessionDep
) -> Response:
    """Our copy of a session (the CPO checks it after a failed PATCH)."""
    require_party(caller, country_code, party_id)
    row = sessions.find(db, caller.connection_id, country_code, party_id, session_id)
    if row is None:
        raise OcpiRequestError(OcpiStatus.CLIENT_ERROR, f"unknown session {session_id}", http_status=404)
    wire = mapping.session_to_wire(row, sessions.readings_of(db, row.id))
    return envelope(wire, wrap_list=caller.auth.flags.list_wrapped_data)


@router.put(PATH, operation_id="ocpi_put_session", openapi_extra={"requestBody": _BODY})
async def put_session(
    country_code: str, party_id: str, session_id: str, request: Request, caller: ModuleCaller
) -> Response:
    """Create or replace a session (a Session object); its charging periods replace the stored readings."""
    require_party(caller, country_code, party_id)
    body = await read_body(request, Session)
    require_same("id", session_id, body.id)
    require_same("country_code", country_code, body.country_code)
    require_same("party_id", party_id, body.party_id)
    record = mapping.session_to_record(body)
    outcome = await in_transaction(request, lambda db: sessions.replace(db, caller.connection_id, record))
    if outcome == "stale":
        return envelope(message="ignored: last_updated is older than the stored session")
    return envelope(http_status=201 if outcome == "created" else 200)


@router.patch(PATH, operation_id="ocpi_patch_session", openapi_extra={"requestBody": _BODY})
async def patch_session(
    country_code: str, party_id: str, session_id: str, request: Request, caller: ModuleCaller
) -> Response:
    """Update some fields of a session; charging periods are appended (de-duplicated by start time)."""
    require_party(caller, country_code, party_id)
    return await apply_patch(request.app, caller, country_code, party_id, session_id, await request.body())


async def apply_patch(
    app: Starlette, caller: Caller, country_code: str, party_id: str, session_id: str, raw: bytes
) -> Response:
    """A Session PATCH of ``caller`` (authorized, party checked) to ``app`` (the OCPI app), written and answered.

    Shared by the route above and the lean path of ``fast``: both give the same answers and write the same way.
    """
    body = parse_body(raw, SessionPatch)
    if body.last_updated is None and not caller.auth.flags.lenient_last_updated:
        raise OcpiRequestError(OcpiStatus.INVALID_OR_MISSING_PARAMETERS, "last_updated is required in a PATCH")
    require_same("id", session_id, body.id)
    require_same("country_code", country_code, body.country_code)
    require_same("party_id", party_id, body.party_id)
    changes = mapping.session_patch_to_changes(body, received_at=utcnow())
    batcher: PatchBatcher | None = app.state.ocpi_patch_batcher
    if batcher is not None:
        outcome = await batcher.submit(caller.connection_id, country_code, party_id, session_id, changes)
    else:

        def write(db: DbSession) -> sessions.Intake:
            return sessions.update_alone(db, caller.connection_id, country_code, party_id, session_id, changes)

        outcome = await in_transaction_of(app, write)
    if outcome == "stale":
        return envelope(message="fields ignored: last_updated is older than the stored session")
    return envelope()
