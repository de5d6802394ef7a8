"""The ASGI entry point for process managers: settings from the environment."""

from __future__ import annotations

import logging
import threading
from typing import Any

from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.orm import configure_mappers

from vpp.api.app import create_app
from vpp.config import Settings
from vpp.observability import configure_logging, freeze_startup_heap, watch_gc_pauses


def app_from_env() -> FastAPI:
    """Build the app from ``VPP_*`` environment variables (``uvicorn --factory vpp.api.main:app_from_env``)."""
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    watch_gc_pauses()
    app = create_app(settings)
    configure_mappers()  # else the first request of each worker configures every mapper
    freeze_startup_heap()
    threading.Thread(target=warm_up, args=(app,), name="warm-up", daemon=True).start()
    return app


def warm_up(app: FastAPI) -> None:
    """Open a pooled database connection and the Redis connection before the first request needs them: the first
    setpoint into a fresh worker paid for both (the slowest of a soak, 1.9 s at load 13). Best effort, on a
    thread of its own, so that a database still starting delays nothing."""
    state: Any = app.state
    try:
        with state.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        if state.redis is not None:
            state.redis.ping()
    except Exception:  # the first request connects, and reports, as it always did
        logging.getLogger("vpp.api").info("warm-up: a connection could not be opened yet", exc_info=True)
    # The settlement plot's matplotlib (imported on first use): 19 s inside one request under load in a
    # schemathesis run, here before any request asks for it.
    from vpp.settlement import plots  # noqa: F401

