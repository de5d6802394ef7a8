"""The web view: ``/ui`` serves the single-page app; read models and a server-sent-events stream serve its pages."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, StreamingResponse
from sqlalchemy.orm import Session, sessionmaker

from vpp.api.deps import AdminDep, Limit, Offset, SessionDep, SettingsDep, get_principal, require_roles
from vpp.api.errors import error_responses
from vpp.api.types import Pool, Text
from vpp.apikeys.service import Principal
from vpp.db import unit_of_work
from vpp.domain.errors import NotFound
from vpp.domain.pools import PoolId
from vpp.domain.roles import Role
from vpp.portfolio.fleet import Fleet
from vpp.portfolio.service import PortfolioService
from vpp.web import service
from vpp.web.schemas import ConnectionActivityRead, LiveActivations, PoolSessionPage, PrincipalRead, SortKey

STATIC_DIR = Path(__file__).parent / "static"
ASSET_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
               ".html": "text/html; charset=utf-8", ".svg": "image/svg+xml"}
FLEET_REFRESH_S = 8.0  # congestion loads come from the fleet read; re-read it less often than the 2 s response tick

router = APIRouter(tags=["web"], responses=error_responses(401, 403))
AnyCaller = Annotated[Principal, Depends(get_principal)]
TraderDep = Annotated[Principal, Depends(require_roles(Role.TRADER))]
LiveDep = Annotated[Principal, Depends(require_roles(Role.TRADER, Role.MARKET))]


def _portfolio(request: Request) -> PortfolioService:
    portfolio: PortfolioService = request.app.state.portfolio
    return portfolio


@router.get("/ui", include_in_schema=False)
@router.get("/ui/", include_in_schema=False)
def index() -> FileResponse:
    """The single-page app (sign-in happens in the page: the key stays in the browser's session storage)."""
    return FileResponse(STATIC_DIR / "index.html", media_type=ASSET_TYPES[".html"],
                        headers={"Cache-Control": "no-cache"})


@router.get("/ui/static/{name}", include_in_schema=False)
def asset(name: str) -> FileResponse:
    """A static asset of the app (only files that ship in ``vpp/web/static``)."""
    path = (STATIC_DIR / name).resolve()
    if path.parent != STATIC_DIR.resolve() or path.suffix not in ASSET_TYPES or not path.is_file():
        raise NotFound(f"no asset {name!r}")
    return FileResponse(path, media_type=ASSET_TYPES[path.suffix], headers={"Cache-Control": "no-cache"})


@router.get("/api/v1/ui/me", operation_id="get_ui_principal")
def me(principal: AnyCaller, settings: SettingsDep) -> PrincipalRead:
    """The caller's key name and role, and the market time zone the view shows times in."""
    return PrincipalRead(key_id=principal.key_id, name=principal.name, role=principal.role.value,
                         market_timezone=settings.market_timezone)


@router.get("/api/v1/ui/pools/{pool}/sessions", operation_id="list_ui_pool_sessions",
            responses=error_responses(422))
def pool_sessions(
    pool: Annotated[Pool, PathParam()], request: Request, db: SessionDep, _trader: TraderDep,
    cpo: Annotated[Text | None, Query(description="CPO connection name (substring) or CPO pool `cpo:CC-PID`")] = None,
    location: Annotated[Text | None, Query(description="location id (substring, case-insensitive)")] = None,
    v2g: Annotated[bool | None, Query(description="only sessions that may (true) or may not (false) discharge")] = None,
    sort: SortKey = "departure",
    limit: Limit = 100,
    offset: Offset = 0,
) -> PoolSessionPage:
    """The plugged-in sessions behind a pool now, with their resolved need and current power."""
    fleet = _portfolio(request).fleet(db)
    return service.pool_sessions(db, fleet, pool, cpo=cpo, location=location, v2g=v2g, sort=sort, limit=limit,
                                 offset=offset)


@router.get("/api/v1/ui/connections/activity", operation_id="list_ui_connection_activity")
def connection_activity(request: Request, db: SessionDep, _admin: AdminDep) -> list[ConnectionActivityRead]:
    """Per CPO connection: last session change received, active sessions, charging-profile errors in 24 h."""
    return service.connection_activity(db, _portfolio(request).now())


def _snapshot(factory: sessionmaker[Session], portfolio: PortfolioService, pool: str,
              fleet: Fleet | None) -> LiveActivations:
    with unit_of_work(factory) as db:
        return service.live_activations(db, pool, portfolio.now(), fleet)


def _fleet(factory: sessionmaker[Session], portfolio: PortfolioService) -> Fleet:
    with unit_of_work(factory) as db:
        return portfolio.fleet(db)


@router.get("/api/v1/live/activations/snapshot", operation_id="get_live_activations",
            responses=error_responses(422))
def live_snapshot(request: Request, db: SessionDep, _caller: LiveDep,
                  pool: Annotated[Pool, Query()]) -> LiveActivations:
    """What the live stream sends for ``pool`` right now, as one JSON document."""
    portfolio = _portfolio(request)
    return service.live_activations(db, pool, portfolio.now(), portfolio.fleet(db))


@router.get("/api/v1/live/activations", operation_id="stream_live_activations", response_class=StreamingResponse,
            responses={**error_responses(422), 200: {"content": {"text/event-stream": {}},
                                                      "description": "`event: activations` with LiveActivations"}})
async def live_stream(
    request: Request, _caller: LiveDep,
    pool: Annotated[Pool, Query()],
    interval_s: Annotated[float, Query(ge=0.5, le=4.0, description="Seconds between events")] = 2.0,
) -> StreamingResponse:
    """Server-sent events: the pool's aFRR response, congestion limits and profile outcomes every ``interval_s``."""
    pool = str(PoolId.parse(pool))
    factory: sessionmaker[Session] = request.app.state.session_factory
    portfolio = _portfolio(request)

    async def events() -> AsyncIterator[str]:
        fleet: Fleet | None = None
        fleet_at = -1e9
        counter = 0
        yield "retry: 2000\n\n"
        while not await request.is_disconnected():
            started = time.monotonic()
            if started - fleet_at > FLEET_REFRESH_S:
                fleet = await asyncio.to_thread(_fleet, factory, portfolio)
                fleet_at = started
            try:
                snapshot = await asyncio.to_thread(_snapshot, factory, portfolio, pool, fleet)
                counter += 1
                yield f"id: {counter}\nevent: activations\ndata: {snapshot.model_dump_json()}\n\n"
            except Exception as exc:  # the stream says what went wrong and keeps trying
                yield f"event: problem\ndata: {json.dumps({'message': f'{type(exc).__name__}: {exc}'})}\n\n"
            await asyncio.sleep(max(0.1, interval_s - (time.monotonic() - started)))

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
