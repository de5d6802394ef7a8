"""Pure ASGI middleware: request and correlation ids, per-route metrics and an access log line."""

from __future__ import annotations

import logging
import os
import re
import time
from contextvars import ContextVar
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vpp.observability import HTTP_LATENCY, HTTP_REQUESTS, correlation_id_var, request_id_var

log = logging.getLogger("vpp.access")

_SAFE_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_quiet = ContextVar("quiet_access_log", default=False)
# The labelled metric children per (method, route, status): labels() takes a lock and builds keys on every call.
_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
_MAX_CHILDREN = 4096


def quiet_access_log() -> None:
    """Write this request's access line at DEBUG, not INFO: a routine success on a high-volume path (OCPI intake).

    Answers with an HTTP error status are logged at INFO regardless.
    """
    _quiet.set(True)


def _metrics(method: str, route: str, status: int) -> tuple[Any, Any]:
    key = (method, route, status)
    children = _children.get(key)
    if children is None:
        children = (HTTP_REQUESTS.labels(method, route, str(status)), HTTP_LATENCY.labels(method, route))
        if len(_children) < _MAX_CHILDREN:
            _children[key] = children
    return children


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            text: str = value.decode("latin-1")
            return text if _SAFE_ID.match(text) else None
    return None


def route_template(scope: Scope) -> str:
    """The matched route's path template, so metrics have one series per route, not per URL."""
    route: Any = scope.get("route")
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    if path:
        return str(scope.get("root_path", "")) + str(path)
    return "unmatched"


class RequestContextMiddleware:
    """Tags every request with ids (echoed in the response), counts it and times it per route."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _header(scope, b"x-request-id") or os.urandom(16).hex()
        correlation_id = _header(scope, b"x-correlation-id") or request_id
        rid_token = request_id_var.set(request_id)
        cid_token = correlation_id_var.set(correlation_id)
        quiet_token = _quiet.set(False)
        started = time.perf_counter()
        status = 500

        async def send_with_ids(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [
                    (k, v)
                    for k, v in message.get("headers", [])
                    if k.lower() not in (b"x-request-id", b"x-correlation-id")
                ]
                headers.append((b"x-request-id", request_id.encode()))
                headers.append((b"x-correlation-id", correlation_id.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_ids)
        finally:
            elapsed = time.perf_counter() - started
            route = route_template(scope)
            method = scope.get("method", "")
            requests, latency = _metrics(method, route, status)
            requests.inc()
            latency.observe(elapsed)
            level = logging.DEBUG if _quiet.get() and status < 400 else logging.INFO
            if log.isEnabledFor(level):
                log.log(
                    level,
                    "%s %s %s",
                    method,
                    scope.get("path", ""),
                    status,
                    extra={"status": status, "route": route, "duration_ms": round(elapsed * 1000, 2)},
                )
            _quiet.reset(quiet_token)
            request_id_var.reset(rid_token)
            correlation_id_var.reset(cid_token)
