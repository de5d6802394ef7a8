"""Pure ASGI middleware: request and correlation ids, per-route metrics and an access log line."""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vpp.observability import HTTP_LATENCY, HTTP_REQUESTS, correlation_id_var, request_id_var

log = logging.getLogger("vpp.access")

_SAFE_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


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
        request_id = _header(scope, b"x-request-id") or uuid.uuid4().hex
        correlation_id = _header(scope, b"x-correlation-id") or request_id
        rid_token = request_id_var.set(request_id)
        cid_token = correlation_id_var.set(correlation_id)
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
            HTTP_REQUESTS.labels(method, route, str(status)).inc()
            HTTP_LATENCY.labels(method, route).observe(elapsed)
            log.info(
                "%s %s %s",
                method,
                scope.get("path", ""),
                status,
                extra={"status": status, "route": route, "duration_ms": round(elapsed * 1000, 2)},
            )
            request_id_var.reset(rid_token)
            correlation_id_var.reset(cid_token)
