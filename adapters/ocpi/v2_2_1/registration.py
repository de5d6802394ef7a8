"""The credentials handshake both ways: a CPO registering with us, and us registering with a CPO."""

from __future__ import annotations

import logging

import httpx
from starlette.concurrency import run_in_threadpool

from adapters.ocpi.v2_2_1 import mapping
from adapters.ocpi.v2_2_1.client import OcpiClient
from adapters.ocpi.v2_2_1.context import OcpiContext
from adapters.ocpi.v2_2_1.schemas import Credentials, ModuleID, VersionDetails
from adapters.ocpi.v2_2_1.transport import OCPI_VERSION, OcpiError, OcpiStatus
from vpp.db import unit_of_work
from vpp.domain.errors import ServiceUnavailable
from vpp.ocpi import service as connections
from vpp.ocpi.schemas import ConnectionFlags

log = logging.getLogger(__name__)

PULL_TASK = "ocpi.pull_sessions"


class HandshakeError(Exception):
    """The peer's API cannot be used (3001), speaks no common version (3002) or lacks endpoints (3003)."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


async def discover_peer(
    http: httpx.AsyncClient, versions_url: str, token: str, flags: ConnectionFlags
) -> VersionDetails:
    """GET the peer's versions and 2.2.1 details with ``token``; checks it offers what an SCSP needs."""
    client = OcpiClient(http, versions_url=versions_url, token=token, raw_token=flags.raw_token)
    try:
        versions = await client.get_versions()
    except OcpiError as exc:
        raise HandshakeError(OcpiStatus.UNABLE_TO_USE_CLIENT_API, f"cannot use {versions_url}: {exc.message}") from exc
    chosen = next((v for v in versions if v.version == OCPI_VERSION), None)
    if chosen is None:
        offered = ", ".join(v.version for v in versions) or "none"
        raise HandshakeError(OcpiStatus.UNSUPPORTED_VERSION, f"no OCPI {OCPI_VERSION} among the versions ({offered})")
    try:
        details = await client.get_version_details(chosen.url)
    except OcpiError as exc:
        raise HandshakeError(OcpiStatus.UNABLE_TO_USE_CLIENT_API, f"cannot use {chosen.url}: {exc.message}") from exc
    if details.endpoint_url(ModuleID.CHARGING_PROFILES) is None:
        raise HandshakeError(
            OcpiStatus.NO_MATCHING_ENDPOINTS, "no chargingprofiles endpoint: nothing for a smart charging provider"
        )
    return details


async def accept(context: OcpiContext, connection_id: str, flags: ConnectionFlags, theirs: Credentials, *,
                 via_token_a: bool = False) -> Credentials:
    """A peer POSTs (registers, with token A) or PUTs (updates) its credentials: check its API with its token,
    issue ours."""
    async with context.http() as http:
        details = await discover_peer(http, theirs.url, theirs.token, flags)

    def store() -> str:
        with unit_of_work(context.session_factory) as session:
            _row, token = connections.accept_registration(
                session, connection_id, pepper=context.pepper, outgoing_token=theirs.token,
                keyring=context.token_keyring,
                versions_url=theirs.url, version=OCPI_VERSION, endpoints=mapping.endpoints_from_wire(details),
                roles=mapping.roles_from_wire(theirs.roles), via_token_a=via_token_a,
            )
        return token

    token = await run_in_threadpool(store)
    context.enqueue(PULL_TASK, connection_id=connection_id)
    return context.own_credentials(token)


async def register_with(
    context: OcpiContext,
    *,
    name: str,
    versions_url: str,
    token_a: str,
    flags: ConnectionFlags | None = None,
    http: httpx.AsyncClient | None = None,
) -> str:
    """Register with a CPO that gave us token A (we are the credentials Sender); returns the connection id."""
    flags = flags or ConnectionFlags()
    own_http = http is None
    client_http = http or context.http()
    try:
        try:
            details = await discover_peer(client_http, versions_url, token_a, flags)
        except HandshakeError as exc:
            raise ServiceUnavailable(
                f"registration with {versions_url} failed ({exc.status_code}): {exc.message}"
            ) from exc

        def start() -> tuple[str, str]:
            with unit_of_work(context.session_factory) as session:
                row, token_b = connections.start_outbound(
                    session, name=name, versions_url=versions_url, token_a=token_a, pepper=context.pepper,
                    keyring=context.token_keyring, flags=flags
                )
                return row.id, token_b

        # Committed before the POST: the CPO calls our versions endpoint with token B before it answers.
        connection_id, token_b = await run_in_threadpool(start)
        client = OcpiClient(client_http, versions_url=versions_url, token=token_a, raw_token=flags.raw_token,
                            details=details)
        try:
            theirs = await client.register(context.own_credentials(token_b))
        except OcpiError as exc:
            await run_in_threadpool(_fail, context, connection_id)
            raise ServiceUnavailable(f"{versions_url} refused our registration: {exc.message}") from exc

        def finish() -> None:
            with unit_of_work(context.session_factory) as session:
                connections.record_registration(
                    session, connection_id, outgoing_token=theirs.token, keyring=context.token_keyring,
                versions_url=versions_url,
                    version=OCPI_VERSION, endpoints=mapping.endpoints_from_wire(details),
                    roles=mapping.roles_from_wire(theirs.roles),
                )

        await run_in_threadpool(finish)
    finally:
        if own_http:
            await client_http.aclose()
    context.enqueue(PULL_TASK, connection_id=connection_id)
    return connection_id


def _fail(context: OcpiContext, connection_id: str) -> None:
    with unit_of_work(context.session_factory) as session:
        connections.mark_failed(session, connection_id)


async def update_with(context: OcpiContext, connection_id: str, *, http: httpx.AsyncClient | None = None) -> None:
    """Rotate tokens both ways with a credentials PUT on the peer (also announces changed endpoints)."""

    def rotate() -> tuple[str, str | None, connections.PeerAccess]:
        with unit_of_work(context.session_factory) as session:
            access = connections.peer_access(session, connection_id, context.token_keyring)
            _row, token, previous = connections.rotate_outgoing(session, connection_id, pepper=context.pepper)
            return token, previous, access

    token, previous, access = await run_in_threadpool(rotate)
    own_http = http is None
    client_http = http or context.http()
    try:
        client = OcpiClient(
            client_http, versions_url=access.versions_url or "", token=access.outgoing_token,
            raw_token=access.flags.raw_token,
            details=mapping.details_from_endpoints(access.version or OCPI_VERSION, access.endpoints),
        )
        try:
            theirs = await client.update_credentials(context.own_credentials(token))
        except OcpiError as exc:
            await run_in_threadpool(_restore, context, connection_id, previous)
            raise ServiceUnavailable(f"credentials update refused: {exc.message}") from exc
    finally:
        if own_http:
            await client_http.aclose()

    def finish() -> None:
        with unit_of_work(context.session_factory) as session:
            connections.record_registration(
                session, connection_id, outgoing_token=theirs.token, keyring=context.token_keyring,
                versions_url=access.versions_url or "",
                version=access.version or OCPI_VERSION, endpoints=access.endpoints,
                roles=mapping.roles_from_wire(theirs.roles),
            )

    await run_in_threadpool(finish)


def _restore(context: OcpiContext, connection_id: str, previous: str | None) -> None:
    with unit_of_work(context.session_factory) as session:
        connections.get_or_raise(session, connection_id).incoming_token_hash = previous


async def unregister_with(context: OcpiContext, connection_id: str, *, http: httpx.AsyncClient | None = None) -> None:
    """DELETE our registration on the peer, then forget the tokens here."""

    def access() -> connections.PeerAccess:
        with unit_of_work(context.session_factory) as session:
            return connections.peer_access(session, connection_id, context.token_keyring)

    peer = await run_in_threadpool(access)
    own_http = http is None
    client_http = http or context.http()
    try:
        client = OcpiClient(
            client_http, versions_url=peer.versions_url or "", token=peer.outgoing_token,
            raw_token=peer.flags.raw_token,
            details=mapping.details_from_endpoints(peer.version or OCPI_VERSION, peer.endpoints),
        )
        try:
            await client.unregister()
        except OcpiError as exc:
            log.warning("peer refused the credentials DELETE of %s: %s", peer.name, exc.message)
    finally:
        if own_http:
            await client_http.aclose()

    def forget() -> None:
        with unit_of_work(context.session_factory) as session:
            connections.unregister(session, connection_id)

    await run_in_threadpool(forget)
