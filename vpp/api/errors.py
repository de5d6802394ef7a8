"""Every domain error becomes an HTTP answer here, and only here, with a JSON body that says what was wrong."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Mount
from starlette.types import Scope

from vpp.domain import errors
from vpp.observability import request_id_var

log = logging.getLogger(__name__)

STATUS_BY_ERROR: dict[type[errors.DomainError], int] = {
    errors.InvalidInput: 422,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.Forbidden: 403,
    errors.Unauthorized: 401,
    errors.ServiceUnavailable: 503,
    errors.RateLimited: 429,
}


class ErrorDetail(BaseModel):
    """What went wrong: a stable machine-readable code and a sentence for people."""

    code: str = Field(examples=["validation_error"])
    message: str
    details: Any = Field(None, description="Per-field problems of a validation error, when there are any.")


class ErrorRead(BaseModel):
    """The one error shape of the API; ``request_id`` is the id the logs carry (also in ``X-Request-ID``)."""

    error: ErrorDetail
    request_id: str | None = Field(description="The request id of the logs; set on every answer of the API.")


ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "Malformed request: the body is not valid JSON (or nested too deeply)",
    401: "Missing, unknown or revoked API key",
    403: "The key's role may not call this",
    404: "Not found",
    405: "Method not allowed (the Allow header lists the allowed ones)",
    409: "Conflict with stored state",
    413: "Request body too large",
    422: "Invalid input: the fields and the reason are in the body",
    429: "Too many requests",
    500: "Internal error (quote the request_id)",
    503: "A dependency is unavailable",
}


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    """The one JSON error shape of the API."""
    body: dict[str, Any] = {"error": {"code": code, "message": message}}
    if details:
        body["error"]["details"] = details
    body["request_id"] = request_id_var.get()
    return body


def status_for(exc: errors.DomainError) -> int:
    """The HTTP status of a domain error (the nearest mapped base class)."""
    for cls in type(exc).__mro__:
        if cls in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls]
    return 400


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries so OpenAPI shows the error shape of a route."""
    return {code: {"model": ErrorRead, "description": ERROR_DESCRIPTIONS.get(code, "Error")} for code in codes}


_METHODS = ("DELETE", "GET", "PATCH", "POST", "PUT")


def allowed_methods(routes: list[Any], scope: Scope) -> list[str]:
    """Every method some route answers on ``scope``'s path (Starlette's 405 lists only the first route's).

    Empty when no route serves the path, or when a mounted app (OCPI) does: it answers for itself.
    """
    candidates = [route for route in routes if route.matches(scope)[0] != Match.NONE]
    if not candidates or any(isinstance(route, Mount) for route in candidates):
        return []
    return [method for method in _METHODS
            if any(route.matches({**scope, "method": method})[0] == Match.FULL for route in candidates)]


def _validation_details(exc: RequestValidationError) -> list[dict[str, Any]]:
    return [
        {"loc": list(err.get("loc", ())), "msg": err.get("msg", ""), "type": err.get("type", "")}
        for err in exc.errors()
    ]


def install_error_handlers(app: FastAPI) -> None:
    """Map domain errors, validation errors and HTTP errors to the JSON error shape."""

    async def on_domain_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, errors.DomainError)
        status = status_for(exc)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        if isinstance(exc, errors.RateLimited):
            headers = {"Retry-After": str(exc.retry_after_s)}
        return JSONResponse(error_body(exc.code, exc.message, exc.details), status_code=status, headers=headers)

    async def on_validation_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        details = _validation_details(exc)
        if any(d["type"] == "json_invalid" for d in details):
            return JSONResponse(error_body("malformed_json", "request body is not valid JSON", details), 400)
        fields = ", ".join(".".join(str(p) for p in d["loc"]) + ": " + d["msg"] for d in details[:5])
        return JSONResponse(error_body("validation_error", f"invalid request: {fields}", details), 422)

    async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 401: "unauthorized",
                403: "forbidden", 413: "content_too_large"}.get(exc.status_code, "http_error")
        message = str(exc.detail)
        headers = dict(exc.headers or {})
        if exc.status_code in (404, 405) and message in ("Not Found", "Method Not Allowed"):
            verb = "no route" if exc.status_code == 404 else "method not allowed on"
            message = f"{verb} {request.method} {request.url.path}"
        if exc.status_code == 405:
            headers["Allow"] = ", ".join([*allowed_methods(request.app.router.routes, request.scope), "OPTIONS"])
        if exc.status_code == 400 and message == "There was an error parsing the body":
            # json.loads gave up (nesting deeper than the interpreter's recursion limit, an odd encoding, ...).
            code, message = "malformed_json", "request body could not be parsed as JSON (too deeply nested?)"
        return JSONResponse(error_body(code, message), status_code=exc.status_code, headers=headers or None)

    async def on_unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return JSONResponse(error_body("internal_error", "internal server error"), status_code=500)

    app.add_exception_handler(errors.DomainError, on_domain_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)
