"""Resync by pull: Sessions, Locations and CDRs from a CPO's sender interfaces, page by page."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool

from adapters.ocpi.v2_2_1 import mapping
from adapters.ocpi.v2_2_1.client import OcpiClient
from adapters.ocpi.v2_2_1.context import OcpiContext
from adapters.ocpi.v2_2_1.schemas import Cdr, Location, ModuleID, Session
from adapters.ocpi.v2_2_1.transport import OCPI_VERSION, PartyRef
from vpp.cdrs import service as cdrs
from vpp.db import unit_of_work, utcnow
from vpp.locations import service as locations
from vpp.ocpi import service as connections
from vpp.ocpi.service import PeerAccess
from vpp.sessions import service as sessions

log = logging.getLogger(__name__)

PAGE_ATTEMPTS = 3


def _access(context: OcpiContext, connection_id: str) -> PeerAccess:
    with unit_of_work(context.session_factory) as session:
        return connections.peer_access(session, connection_id, context.token_keyring)


def _client(context: OcpiContext, http: httpx.AsyncClient, peer: PeerAccess) -> OcpiClient:
    cpo = next((PartyRef(r.country_code, r.party_id) for r in peer.roles if r.role == "CPO"), None)
    return OcpiClient(
        http, versions_url=peer.versions_url or "", token=peer.outgoing_token, raw_token=peer.flags.raw_token,
        own_party=context.party, peer_party=cpo, page_limit=context.settings.page_limit,
        details=mapping.details_from_endpoints(peer.version or OCPI_VERSION, peer.endpoints),
        follow_links=not peer.flags.ignore_link_header,
    )


def _owned(peer: PeerAccess, country_code: str, party_id: str) -> bool:
    return any(role.owns(country_code, party_id) for role in peer.roles)


def _store_page(context: OcpiContext, store: Callable[[Any], str], items: list[Any]) -> dict[str, int]:
    # Another process may store the same objects at the same moment (a pull the registration started and a
    # resync, or two workers): the loser's insert hits a unique key. Stored again, it finds them and updates.
    for attempt in range(1, PAGE_ATTEMPTS + 1):
        counts: dict[str, int] = {}
        try:
            with unit_of_work(context.session_factory) as session:
                for item in items:
                    outcome = store((session, item))
                    counts[outcome] = counts.get(outcome, 0) + 1
        except IntegrityError:
            if attempt == PAGE_ATTEMPTS:
                raise
            log.info("a concurrent writer stored objects of this page first; storing it again",
                     extra={"attempt": attempt})
            continue
        return counts
    raise AssertionError("unreachable")


def _merge(total: dict[str, int], page: dict[str, int]) -> None:
    for key, value in page.items():
        total[key] = total.get(key, 0) + value


def _date_from(context: OcpiContext, last: datetime | None, now: datetime) -> datetime:
    if last is None:
        return now - timedelta(hours=context.settings.pull_first_window_hours)
    return last - timedelta(seconds=context.settings.pull_overlap_seconds)


async def _with_http(context: OcpiContext, http: httpx.AsyncClient | None) -> tuple[httpx.AsyncClient, bool]:
    return (http, False) if http is not None else (context.http(), True)


async def _pull(
    context: OcpiContext, peer: PeerAccess, http: httpx.AsyncClient | None, module: ModuleID, model: Any,
    store: Callable[[tuple[Any, Any]], str], *, date_from: datetime | None, kind: connections.PullKind,
    started: datetime,
) -> dict[str, int]:
    """Page through one module of the peer, store each page in its own transaction, record the pull time."""
    client_http, owned = await _with_http(context, http)
    counts: dict[str, int] = {}
    try:
        async for page in _client(context, client_http, peer).pull_pages(module, model, date_from=date_from):
            _merge(counts, await run_in_threadpool(_store_page, context, store, page.items))
    finally:
        if owned:
            await client_http.aclose()
    await run_in_threadpool(_mark, context, peer.connection_id, kind, started)
    return counts


async def pull_sessions(
    context: OcpiContext, connection_id: str, *, http: httpx.AsyncClient | None = None,
    date_from: datetime | None = None,
) -> dict[str, int]:
    """Pull sessions changed since the last pull (minus an overlap) and store each page in its own transaction."""
    peer = await run_in_threadpool(_access, context, connection_id)
    if peer.endpoint(ModuleID.SESSIONS) is None:
        return {"skipped": 1}
    started = utcnow()
    since = date_from or _date_from(context, peer.sessions_pulled_at, started)

    def store(args: tuple[Any, Session]) -> str:
        session, item = args
        if not _owned(peer, item.country_code, item.party_id):
            return "foreign"
        return sessions.replace(session, connection_id, mapping.session_to_record(item))

    return await _pull(context, peer, http, ModuleID.SESSIONS, Session, store, date_from=since,
                       kind="sessions", started=started)


async def pull_locations(
    context: OcpiContext, connection_id: str, *, http: httpx.AsyncClient | None = None
) -> dict[str, int]:
    """Pull all locations (with EVSE capabilities and connector power)."""
    peer = await run_in_threadpool(_access, context, connection_id)
    if peer.endpoint(ModuleID.LOCATIONS) is None:
        return {"skipped": 1}
    started = utcnow()

    def store(args: tuple[Any, Location]) -> str:
        session, item = args
        if not _owned(peer, item.country_code, item.party_id):
            return "foreign"
        return locations.put_location(session, connection_id, mapping.location_to_record(item))

    return await _pull(context, peer, http, ModuleID.LOCATIONS, Location, store, date_from=None,
                       kind="locations", started=started)


async def pull_cdrs(
    context: OcpiContext, connection_id: str, *, http: httpx.AsyncClient | None = None
) -> dict[str, int]:
    """Pull CDRs created since the last pull (minus an overlap); already stored ones are left as they are."""
    peer = await run_in_threadpool(_access, context, connection_id)
    if peer.endpoint(ModuleID.CDRS) is None:
        return {"skipped": 1}
    started = utcnow()
    since = peer.cdrs_pulled_at - timedelta(seconds=context.settings.pull_overlap_seconds) if peer.cdrs_pulled_at \
        else None

    def store(args: tuple[Any, Cdr]) -> str:
        session, item = args
        if not _owned(peer, item.country_code, item.party_id):
            return "foreign"
        _row, created = cdrs.receive(session, connection_id, mapping.cdr_to_record(item))
        return "created" if created else "known"

    return await _pull(context, peer, http, ModuleID.CDRS, Cdr, store, date_from=since,
                       kind="cdrs", started=started)


def _mark(context: OcpiContext, connection_id: str, kind: connections.PullKind, at: datetime) -> None:
    with unit_of_work(context.session_factory) as session:
        connections.mark_pulled(session, connection_id, kind, at)


async def pull_all(
    context: OcpiContext, connection_id: str, *, http: httpx.AsyncClient | None = None
) -> dict[str, dict[str, int]]:
    """Locations first (sessions then know their connectors), then sessions, then CDRs."""
    return {
        "locations": await pull_locations(context, connection_id, http=http),
        "sessions": await pull_sessions(context, connection_id, http=http),
        "cdrs": await pull_cdrs(context, connection_id, http=http),
    }
