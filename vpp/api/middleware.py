"""Pure ASGI middleware: request and correlation ids, per-route metrics, an access log line, and the answers
the routes never see: bodies over the size limit (413), OPTIONS (the Allow header) and unhandled errors (500),
each in the API's error shape with the request id the logs carry."""

from __future__ import annotations

import logging
import os
import re
import time
from contextvars import ContextVar
from typing import Any

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vpp.api.errors import allowed_methods, error_body
from vpp.observability import HTTP_LATENCY, HTTP_REQUESTS, correlation_id_var, request_id_var

log = logging.getLogger("vpp.access")

_SAFE_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_quiet = ContextVar("quiet_access_log", default=False)
# The labelled metric children per (method, route, status): labels() takes a lock and builds keys on every call.
_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
_MAX_CHILDREN = 4096
# The largest request body accepted: a year of site load points or a topology CSV of ~50,000 rows fits.
MAX_BODY_BYTES = 4 * 1024 * 1024


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


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return -1
    return None


def _body_limited(receive: Receive, max_bytes: int) -> Receive:
    """``receive`` that refuses a body (sent without Content-Length) once it passes ``max_bytes``."""
    received = 0

    async def limited() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > max_bytes:
                raise HTTPException(413, f"request body exceeds {max_bytes} bytes")
        return message

    return limited


def _refusal(scope: Scope, length: int | None, max_body_bytes: int) -> Response | None:
    """The answer to a request refused before routing, or None to route it."""
    if length is not None and length < 0:
        return JSONResponse(error_body("bad_request", "Content-Length is not a number"), status_code=400)
    if length is not None and length > max_body_bytes:
        return JSONResponse(error_body("content_too_large", f"request body exceeds {max_body_bytes} bytes"),
                            status_code=413)
    if "\x00" in scope.get("path", ""):
        # No resource id contains NUL (PostgreSQL cannot even store one): the resource does not exist.
        return JSONResponse(error_body("not_found", "no resource has NUL in its path"), status_code=404)
    if scope.get("method") == "OPTIONS":
        app: Any = scope.get("app")
        methods = allowed_methods(app.router.routes, scope) if app is not None else []
        if methods:
            return Response(status_code=204, headers={"Allow": ", ".join([*methods, "OPTIONS"])})
    return None


class RequestContextMiddleware:
    """Tags every request with ids (echoed in the response), counts it and times it per route."""

    def __init__(self, app: ASGIApp, max_body_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

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
        response_started = False

        async def send_with_ids(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
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
            length = _content_length(scope)
            refusal = _refusal(scope, length, self.max_body_bytes)
            if refusal is not None:
                await refusal(scope, receive, send_with_ids)
            else:
                # With a Content-Length the server delivers exactly that many bytes; without one, count them.
                limited = receive if length is not None else _body_limited(receive, self.max_body_bytes)
                await self.app(scope, limited, send_with_ids)
        except Exception:
            if response_started:
                raise
            # Answered here, not by the outermost error middleware: there the request id is already gone.
            logging.getLogger("vpp.api").exception("unhandled error")
            answer = JSONResponse(error_body("internal_error", "internal server error"), status_code=500)
            await answer(scope, receive, send_with_ids)
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
