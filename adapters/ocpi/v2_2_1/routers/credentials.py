"""Inbound credentials module: a CPO registers (POST), updates (PUT), reads (GET) and unregisters (DELETE)."""

from __future__ import annotations

from fastapi import Request, Response
from starlette.concurrency import run_in_threadpool

from adapters.ocpi.v2_2_1 import registration
from adapters.ocpi.v2_2_1.routers.common import (
    Caller,
    CredentialsCaller,
    OcpiAuthenticator,
    OcpiRequestError,
    context_of,
    envelope,
    ocpi_router,
)
from adapters.ocpi.v2_2_1.schemas import Credentials
from adapters.ocpi.v2_2_1.transport import OCPI_VERSION, OcpiStatus
from vpp.db import unit_of_work
from vpp.ocpi import service as connections

router = ocpi_router(f"/{OCPI_VERSION}/credentials", "credentials")


def _registered(caller: Caller) -> bool:
    return not caller.auth.via_token_a and caller.auth.status == "connected"


def _not_allowed(message: str) -> OcpiRequestError:
    return OcpiRequestError(OcpiStatus.CLIENT_ERROR, message, http_status=405)


@router.get("", operation_id="ocpi_get_credentials")
def get_credentials(request: Request, caller: CredentialsCaller) -> Response:
    """Our credentials for the caller: the token it presented (we keep only its hash)."""
    if not _registered(caller):
        raise _not_allowed("not registered: POST your credentials first")
    credentials = context_of(request).own_credentials(caller.token)
    return envelope(credentials, wrap_list=caller.auth.flags.list_wrapped_data)


async def _exchange(request: Request, caller: Caller, body: Credentials) -> Response:
    context = context_of(request)
    try:
        ours = await registration.accept(context, caller.connection_id, caller.auth.flags, body,
                                         via_token_a=caller.auth.via_token_a)
    except registration.HandshakeError as exc:
        raise OcpiRequestError(exc.status_code, exc.message) from exc
    authenticator: OcpiAuthenticator = request.app.state.ocpi_authenticator
    authenticator.forget()
    return envelope(ours, wrap_list=caller.auth.flags.list_wrapped_data)


@router.post("", operation_id="ocpi_post_credentials")
async def post_credentials(request: Request, body: Credentials, caller: CredentialsCaller) -> Response:
    """Register with token A: we call the caller's versions with its token, then hand out our token. A peer that
    did not get our answer may POST again with token A until it first calls with the token we gave it (or 10
    minutes have passed): it gets a new token."""
    if not caller.auth.via_token_a:
        raise _not_allowed("already registered: use PUT to update")
    return await _exchange(request, caller, body)


@router.put("", operation_id="ocpi_put_credentials")
async def put_credentials(request: Request, body: Credentials, caller: CredentialsCaller) -> Response:
    """Update: re-read the caller's versions and endpoints with its new token and rotate ours."""
    if not _registered(caller):
        raise _not_allowed("not registered: POST your credentials first")
    return await _exchange(request, caller, body)


@router.delete("", operation_id="ocpi_delete_credentials")
async def delete_credentials(request: Request, caller: CredentialsCaller) -> Response:
    """Unregister: both sides stop automated traffic; the tokens die."""
    if not _registered(caller):
        raise _not_allowed("not registered")
    context = context_of(request)

    def forget() -> None:
        with unit_of_work(context.session_factory) as session:
            connections.unregister(session, caller.connection_id)

    await run_in_threadpool(forget)
    authenticator: OcpiAuthenticator = request.app.state.ocpi_authenticator
    authenticator.forget()
    return envelope()
