"""The HTTP composition root: ``create_app(settings)`` wires engine, auth, routers and background work."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import redis
from fastapi import FastAPI
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from vpp import __version__
from vpp.api.auth import ApiKeyAuthenticator
from vpp.api.errors import install_error_handlers
from vpp.api.middleware import RequestContextMiddleware
from vpp.apikeys.router import router as apikeys_router
from vpp.config import Settings
from vpp.db import create_db_engine, create_session_factory
from vpp.health.router import router as health_router
from workers.runtime import Runtime, build_task_queue, start_embedded_scheduler

log = logging.getLogger(__name__)


def create_app(
    settings: Settings,
    *,
    engine: Engine | None = None,
    session_factory: sessionmaker[Session] | None = None,
    background: bool = True,
) -> FastAPI:
    """Build the API for ``settings``; nothing connects until the first request or startup."""
    engine = engine or create_db_engine(settings.resolved_database_url, pool_size=settings.db_pool_size)
    session_factory = session_factory or create_session_factory(engine)
    redis_client = (
        redis.Redis.from_url(settings.redis_url, socket_timeout=2, socket_connect_timeout=2)
        if settings.redis_url
        else None
    )
    runtime = Runtime(settings=settings, session_factory=session_factory)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        scheduler = start_embedded_scheduler(runtime) if (background and settings.embedded) else None
        try:
            yield
        finally:
            if scheduler is not None:
                scheduler.stop()
            if redis_client is not None:
                redis_client.close()

    app = FastAPI(
        title="VPP aggregator",
        version=__version__,
        summary="EV flexibility aggregator: OCPI telemetry in, market bids out, activations dispatched to cars.",
        lifespan=lifespan,
    )
    state: Any = app.state
    state.settings = settings
    state.engine = engine
    state.session_factory = session_factory
    state.redis = redis_client
    state.runtime = runtime
    state.task_queue = build_task_queue(runtime)
    state.authenticator = ApiKeyAuthenticator(session_factory=session_factory, pepper=settings.secret)

    install_error_handlers(app)
    app.add_middleware(RequestContextMiddleware)
    app.include_router(health_router)
    app.include_router(apikeys_router)
    return app
