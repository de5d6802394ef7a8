"""Inbound OCPI 2.2.1 routers, served by a sub-app mounted at ``/ocpi`` on the API app."""

from __future__ import annotations

from anyio import CapacityLimiter
from fastapi import FastAPI
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from starlette.middleware import Middleware

from adapters.ocpi.v2_2_1 import registration
from adapters.ocpi.v2_2_1.context import HttpFactory, OcpiContext
from adapters.ocpi.v2_2_1.routers import cdrs, chargingprofiles, credentials, locations, sessions, versions
from adapters.ocpi.v2_2_1.routers.common import (
    OcpiAuthenticator,
    RateLimiter,
    StripTrailingSlash,
    install_envelope_handlers,
)
from adapters.ocpi.v2_2_1.routers.fast import SessionPatchFastPath
from vpp.config import Settings
from vpp.ocpi.settings import OcpiSettings
from vpp.ports import TaskQueue
from vpp.sessions.intake import PatchBatcher
from vpp.sessions.metrics import active_sessions_collector

# Sessions first: the router tries its included routers in order on every request, and Session PATCHes are
# most of what CPOs send.
ROUTERS = (sessions.router, chargingprofiles.router, locations.router, cdrs.router, credentials.router,
           versions.router)


def create_ocpi_app(
    settings: Settings,
    session_factory: sessionmaker[Session],
    *,
    task_queue: TaskQueue | None = None,
    ocpi_settings: OcpiSettings | None = None,
    http_factory: HttpFactory | None = None,
) -> FastAPI:
    """The OCPI modules as an app of their own: envelope answers only, token auth only."""
    ocpi_settings = ocpi_settings or OcpiSettings()
    app = FastAPI(title="OCPI 2.2.1 (Smart Charging Service Provider)", docs_url=None, redoc_url=None)
    state = app.state
    state.settings = settings
    state.session_factory = session_factory
    state.ocpi = OcpiContext(
        session_factory=session_factory, public_url=settings.public_url, pepper=settings.secret,
        settings=ocpi_settings, http_factory=http_factory, task_queue=task_queue, keyring=settings.token_keyring,
    )
    state.ocpi_authenticator = OcpiAuthenticator(session_factory, settings.secret, ocpi_settings.auth_cache_seconds)
    state.ocpi_rate_limiter = RateLimiter()
    # Few intake threads: more only contend for the GIL and the connection pool.
    state.ocpi_db_limiter = CapacityLimiter(ocpi_settings.intake_threads)
    # Group commit of Session PATCHes: concurrent PATCHes share a transaction (and on PostgreSQL its WAL flush).
    bind = session_factory.kw.get("bind")
    state.ocpi_patch_batcher = (
        PatchBatcher(bind, writers=ocpi_settings.intake_batch_writers, max_batch=ocpi_settings.intake_batch_max,
                     limiter=state.ocpi_db_limiter)
        if isinstance(bind, Engine) and bind.dialect.name in ("postgresql", "sqlite")
        and ocpi_settings.intake_batch_writers
        else None
    )
    for router in ROUTERS:
        app.include_router(router)
    install_envelope_handlers(app)
    app.add_middleware(StripTrailingSlash)
    active_sessions_collector().bind(session_factory)
    return app


def install_ocpi(
    app: FastAPI, settings: Settings, session_factory: sessionmaker[Session], *, task_queue: TaskQueue | None = None
) -> FastAPI:
    """Mount the OCPI app at ``/ocpi``; it is reachable as ``app.state.ocpi_app`` (tests swap its peers)."""
    ocpi_app = create_ocpi_app(settings, session_factory, task_queue=task_queue)
    app.mount("/ocpi", ocpi_app)
    # Matched first: OCPI intake is the busiest path, and each API route tried before the mount costs CPU on every
    # PATCH (the prefixes do not overlap, so the order changes no answer).
    mount = app.router.routes.pop()
    app.router.routes.insert(0, mount)
    if ocpi_app.state.ocpi.settings.fast_session_patch:
        # Innermost of the API's middlewares, so inside RequestContextMiddleware (ids, metrics, access line).
        app.user_middleware.append(Middleware(SessionPatchFastPath, ocpi_app=ocpi_app))
    app.state.ocpi_app = ocpi_app

    async def rotate_credentials(connection_id: str) -> None:
        await registration.update_with(ocpi_app.state.ocpi, connection_id)
        ocpi_app.state.ocpi_authenticator.forget()

    app.state.ocpi_credentials_rotation = rotate_credentials
    return ocpi_app
