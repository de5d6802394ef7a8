"""``/health`` (database and broker reachability) and ``/metrics`` (Prometheus text format)."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel
from sqlalchemy import text

from vpp.observability import render_metrics

router = APIRouter(tags=["health"])


class Check(BaseModel):
    """One dependency's state."""

    ok: bool
    detail: str
    latency_ms: float


class HealthRead(BaseModel):
    """The service's health: ok only when every dependency answers."""

    status: str
    mode: str
    database: Check
    broker: Check


def _check_database(request: Request) -> Check:
    started = time.perf_counter()
    try:
        with request.app.state.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return Check(ok=True, detail=request.app.state.engine.dialect.name,
                     latency_ms=(time.perf_counter() - started) * 1000)
    except Exception as exc:
        return Check(ok=False, detail=f"{type(exc).__name__}: {exc}"[:300],
                     latency_ms=(time.perf_counter() - started) * 1000)


def _check_broker(request: Request) -> Check:
    started = time.perf_counter()
    redis_client = request.app.state.redis
    if redis_client is None:
        return Check(ok=True, detail="in-process (embedded)", latency_ms=0.0)
    try:
        redis_client.ping()
        return Check(ok=True, detail="redis", latency_ms=(time.perf_counter() - started) * 1000)
    except Exception as exc:
        return Check(ok=False, detail=f"{type(exc).__name__}: {exc}"[:300],
                     latency_ms=(time.perf_counter() - started) * 1000)


@router.get("/health", operation_id="health", responses={503: {"model": HealthRead}})
def health(request: Request) -> JSONResponse:
    """Database and broker reachability; 503 when one is down."""
    database = _check_database(request)
    broker = _check_broker(request)
    ok = database.ok and broker.ok
    body = HealthRead(
        status="ok" if ok else "unavailable",
        mode="embedded" if request.app.state.settings.embedded else "production",
        database=database,
        broker=broker,
    )
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)


@router.get("/metrics", operation_id="metrics", response_class=Response)
def metrics(request: Request) -> Response:
    """Prometheus metrics in the text exposition format."""
    return Response(render_metrics(request.app.state), media_type=CONTENT_TYPE_LATEST)
