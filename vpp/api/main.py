"""The ASGI entry point for process managers: settings from the environment."""

from __future__ import annotations

from fastapi import FastAPI

from vpp.api.app import create_app
from vpp.config import Settings
from vpp.observability import configure_logging, watch_gc_pauses


def app_from_env() -> FastAPI:
    """Build the app from ``VPP_*`` environment variables (``uvicorn --factory vpp.api.main:app_from_env``)."""
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    watch_gc_pauses()
    return create_app(settings)
