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

from adapters.markets.documents import market_documents
from adapters.markets.uftp.agr_service import build_uftp_router
from adapters.ocpi.v2_2_1.routers import install_ocpi
from vpp import __version__
from vpp.activations.router import router as activations_router
from vpp.api.auth import ApiKeyAuthenticator, KeyRateLimiter
from vpp.api.contract import install_contract
from vpp.api.errors import install_error_handlers
from vpp.api.middleware import RequestContextMiddleware
from vpp.apikeys.router import router as apikeys_router
from vpp.audit.router import router as audit_router
from vpp.bids.router import commitments_router
from vpp.bids.router import router as bids_router
from vpp.config import Settings
from vpp.congestion.router import router as congestion_router
from vpp.db import create_db_engine, create_session_factory
from vpp.health.router import router as health_router
from vpp.ocpi.router import router as ocpi_connections_router
from vpp.portfolio.end_soc import configure_end_soc
from vpp.portfolio.planning import BackgroundReplanner, PlanSettings
from vpp.portfolio.router import router as portfolio_router
from vpp.portfolio.service import DispatchPools, PortfolioConfig, PortfolioService, install_congestion_source
from vpp.ports import Clock, SystemClock, TaskQueue
from vpp.sessions.router import router as sessions_router
from vpp.settlement.router import router as settlement_router
from vpp.web.router import router as web_router
from workers.bus import build_activation_bus
from workers.runtime import Runtime, build_task_queue, start_embedded_scheduler
from workers.schedule import periodic_jobs

log = logging.getLogger(__name__)


def create_app(
    settings: Settings,
    *,
    engine: Engine | None = None,
    session_factory: sessionmaker[Session] | None = None,
    background: bool = True,
    clock: Clock | None = None,
    task_queue: TaskQueue | None = None,
) -> FastAPI:
    """Build the API for ``settings``; nothing connects until the first request or startup.

    ``clock`` is where every time-dependent part (portfolio, dispatcher, OCPI deadlines, bids) reads "now";
    simulations inject a faster one, production uses the system clock. ``task_queue`` runs background work: by
    default Celery on the broker when Redis is configured, else a thread pool in this process.
    """
    clock = clock or SystemClock()
    engine = engine or create_db_engine(settings.resolved_database_url, pool_size=settings.db_pool_size)
    session_factory = session_factory or create_session_factory(engine)
    redis_client = (
        redis.Redis.from_url(settings.redis_url, socket_timeout=2, socket_connect_timeout=2)
        if settings.redis_url
        else None
    )
    runtime = Runtime(settings=settings, session_factory=session_factory)
    activation_bus = build_activation_bus(settings.redis_url, redis_client)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        scheduler = start_embedded_scheduler(runtime) if (background and settings.embedded) else None
        dispatcher = None
        if background and settings.embedded:
            from workers.dispatcher import EmbeddedDispatcher, build_dispatcher

            dispatcher = EmbeddedDispatcher(
                build_dispatcher(settings, session_factory, bus=activation_bus,
                                 source=DispatchPools(state.portfolio, planner=BackgroundReplanner(
                                     session_factory, state.portfolio, PlanSettings.from_settings(settings)),
                                     replan_after_cycle=True),
                                 clock=clock)
            ).start()
        try:
            yield
        finally:
            if dispatcher is not None:
                dispatcher.stop()
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
    state.clock = clock
    state.engine = engine
    state.session_factory = session_factory
    state.redis = redis_client
    state.runtime = runtime
    state.task_queue = task_queue or build_task_queue(runtime)
    state.activation_bus = activation_bus
    state.job_intervals = lambda: {job.task_name: job.every_seconds for job in periodic_jobs(settings)}
    state.authenticator = ApiKeyAuthenticator(session_factory=session_factory, pepper=settings.secret)
    state.api_rate_limiter = KeyRateLimiter()
    portfolio_config = PortfolioConfig(market_timezone=settings.market_timezone)
    configure_end_soc(settings)
    state.portfolio = PortfolioService(session_factory, clock=clock, config=portfolio_config)
    state.portfolio_view = state.portfolio
    state.market_documents = market_documents()
    install_congestion_source(state.portfolio)

    install_error_handlers(app)
    app.add_middleware(RequestContextMiddleware)
    app.include_router(health_router)
    app.include_router(apikeys_router)
    app.include_router(audit_router)
    app.include_router(activations_router)
    app.include_router(sessions_router)
    app.include_router(portfolio_router)
    app.include_router(ocpi_connections_router)
    install_ocpi(app, settings, session_factory, task_queue=state.task_queue)
    app.include_router(congestion_router)
    app.include_router(bids_router)
    app.include_router(commitments_router)
    app.include_router(settlement_router)
    app.include_router(build_uftp_router(settings, session_factory, task_queue=lambda: state.task_queue))
    app.include_router(web_router)
    install_contract(app)
    return app
