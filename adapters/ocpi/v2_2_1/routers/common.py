"""Plumbing shared by the inbound OCPI routers: envelope answers, errors, token auth and rate limits.

The OCPI modules live in their own app mounted at ``/ocpi`` (outside the API-key auth). Every answer of a
route goes through ``ocpi_route_class``: whatever goes wrong becomes an OCPI envelope (HTTP 400 for invalid
JSON, 401 for unknown tokens, 404 for unknown objects, 2001 naming the field for schema violations), and the
sub-app's own exception handlers do the same for unmatched paths, while ``/api`` keeps its JSON error shape.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar, cast

from anyio import CapacityLimiter, to_thread
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from sqlalchemy.orm import Session, sessionmaker
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from adapters.ocpi.v2_2_1.context import OcpiContext
from adapters.ocpi.v2_2_1.transport import (
    AUTHORIZATION,
    UNROUTED_MODULES,
    OcpiStatus,
    Routing,
    ocpi_response,
    routing_headers,
    token_candidates,
)
from vpp.api.middleware import quiet_access_log
from vpp.db import unit_of_work
from vpp.domain import errors
from vpp.observability import OCPI_REQUESTS
from vpp.ocpi import service as connections
from vpp.ocpi.schemas import ConnectionAuth

log = logging.getLogger("vpp.ocpi")

# (HTTP status, OCPI status) of domain errors raised below an OCPI route.
_DOMAIN_STATUS: dict[type[errors.DomainError], tuple[int, int]] = {
    errors.InvalidInput: (200, OcpiStatus.INVALID_OR_MISSING_PARAMETERS),
    errors.NotFound: (404, OcpiStatus.CLIENT_ERROR),
    errors.Conflict: (200, OcpiStatus.CLIENT_ERROR),
    errors.Forbidden: (404, OcpiStatus.INVALID_OR_MISSING_PARAMETERS),
    errors.Unauthorized: (401, OcpiStatus.CLIENT_ERROR),
    errors.ServiceUnavailable: (503, OcpiStatus.SERVER_ERROR),
}


class OcpiRequestError(Exception):
    """Refuse an OCPI request with an OCPI status code (and the HTTP status the spec asks for)."""

    def __init__(
        self, status_code: int, message: str, *, http_status: int = 200, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status_code = int(status_code)
        self.message = message
        self.http_status = http_status
        self.headers = headers or {}


class OcpiJSONResponse(JSONResponse):
    """A JSON response that remembers its OCPI status code (for metrics)."""

    ocpi_status: int = OcpiStatus.SUCCESS


def envelope(
    data: Any = None,
    *,
    status_code: int = OcpiStatus.SUCCESS,
    message: str | None = None,
    http_status: int = 200,
    headers: dict[str, str] | None = None,
    wrap_list: bool = False,
) -> OcpiJSONResponse:
    """An OCPI envelope answer; ``data`` is omitted when None (the spec's advice for PUT/PATCH answers)."""
    if wrap_list and data is not None and not isinstance(data, list):
        data = [data]
    response = OcpiJSONResponse(ocpi_response(data, status_code, message), status_code=http_status, headers=headers)
    response.ocpi_status = int(status_code)
    return response


def _undecodable(body: Any) -> bool:
    # A body sent with a non-JSON content type reaches validation as bytes; garbage there is still bad JSON.
    if not isinstance(body, bytes | bytearray):
        return False
    try:
        json.loads(body)
    except ValueError:
        return True
    return False


def _field_errors(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = [str(p) for p in err.get("loc", ()) if p != "body"]
        parts.append(f"{'.'.join(loc) or 'body'}: {err.get('msg', '')}")
    return "; ".join(parts)


def error_response(exc: BaseException) -> OcpiJSONResponse:
    """The OCPI envelope for anything raised while handling an OCPI request."""
    if isinstance(exc, OcpiRequestError):
        return envelope(status_code=exc.status_code, message=exc.message, http_status=exc.http_status,
                        headers=exc.headers)
    if isinstance(exc, RequestValidationError):
        if any(err.get("type") == "json_invalid" or _undecodable(err.get("input")) for err in exc.errors()):
            return envelope(status_code=OcpiStatus.INVALID_OR_MISSING_PARAMETERS,
                            message="request body is not valid JSON", http_status=400)
        return envelope(status_code=OcpiStatus.INVALID_OR_MISSING_PARAMETERS,
                        message=f"invalid or missing parameters: {_field_errors(exc)}")
    if isinstance(exc, errors.DomainError):
        for cls in type(exc).__mro__:
            if cls in _DOMAIN_STATUS:
                http_status, status_code = _DOMAIN_STATUS[cls]
                return envelope(status_code=status_code, message=exc.message, http_status=http_status)
        return envelope(status_code=OcpiStatus.CLIENT_ERROR, message=exc.message)
    if isinstance(exc, StarletteHTTPException):
        return envelope(status_code=OcpiStatus.CLIENT_ERROR, message=str(exc.detail), http_status=exc.status_code,
                        headers=dict(exc.headers or {}))
    log.error("unhandled error in OCPI request", exc_info=exc)
    return envelope(status_code=OcpiStatus.SERVER_ERROR, message="internal server error", http_status=500)


def ocpi_router(prefix: str, module: str) -> APIRouter:
    """A router for one OCPI module: envelope answers, and JSON bodies parsed even without a content type."""
    return APIRouter(prefix=prefix, tags=["ocpi"], route_class=ocpi_route_class(module), strict_content_type=False)


# High-volume pushes from CPOs: their successful answers are logged at DEBUG (errors stay at INFO).
_INTAKE_MODULES = frozenset({"sessions", "locations"})
_INTAKE_METHODS = frozenset({"PUT", "PATCH"})


class ModuleAnswers:
    """What every answer of one OCPI module gets on its way out: routing headers (functional modules), the
    inbound request counter and, for a successful intake push, an access line at DEBUG."""

    def __init__(self, module: str) -> None:
        self.module = module
        self.routed = module not in UNROUTED_MODULES
        self.intake = module in _INTAKE_MODULES
        self._counters: dict[tuple[str, int], Any] = {}

    def finish(self, app: Starlette, method: str, headers: Mapping[str, str], response: Response) -> Response:
        """Complete ``response`` (an answer of ``app``, the OCPI app) to a ``method`` request with ``headers``."""
        if self.routed:
            context: OcpiContext = app.state.ocpi
            requester = Routing.from_headers(headers).sender
            response.headers.update(routing_headers(context.party, requester))
        status = getattr(response, "ocpi_status", response.status_code)
        counter = self._counters.get((method, status))
        if counter is None:
            counter = self._counters[(method, status)] = OCPI_REQUESTS.labels(self.module, method, str(status))
        counter.inc()
        if self.intake and status == OcpiStatus.SUCCESS and method in _INTAKE_METHODS:
            quiet_access_log()
        return response


def ocpi_route_class(module: str) -> type[APIRoute]:
    """A route class answering every outcome in the OCPI envelope, with routing headers and metrics."""
    answers = ModuleAnswers(module)

    class OcpiRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            original = super().get_route_handler()

            async def handler(request: Request) -> Response:
                try:
                    response = await original(request)
                except Exception as exc:
                    response = error_response(exc)
                return answers.finish(request.app, request.method, request.headers, response)

            return handler

    return OcpiRoute


# ------------------------------------------------------------------------------------------------- auth


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated OCPI caller and the token it presented (raw, as matched)."""

    auth: ConnectionAuth
    token: str

    @property
    def connection_id(self) -> str:
        """The caller's connection."""
        return self.auth.connection_id


# What a failed (or cancelled) token look-up hands the requests that waited for it: they look for themselves.
_LOOKUP_FAILED = object()


class OcpiAuthenticator:
    """Maps an Authorization header to its connection; verdicts are cached for a few seconds.

    When a verdict expires while a peer has many requests in flight (a simulated CPO keeps 8, each intake process
    answers results and active profiles beside them), they all missed the cache at once and each read the token
    from the database: the requests of one event loop that miss while a look-up of the same header is running
    take its verdict instead (``lookups`` counts the reads).
    """

    def __init__(self, session_factory: sessionmaker[Session], pepper: str, ttl_seconds: float = 5.0) -> None:
        self._factory = session_factory
        self._pepper = pepper
        self._ttl = ttl_seconds
        self._cache: dict[str, tuple[Caller | None, float]] = {}
        self._lock = threading.Lock()
        # The look-up running for a header, per event loop (a future belongs to its loop).
        self._running: dict[tuple[int, str], asyncio.Future[object]] = {}
        self.lookups = 0

    def _lookup(self, candidates: tuple[str, ...]) -> Caller | None:
        with unit_of_work(self._factory) as session:
            found = connections.authenticate(session, candidates, pepper=self._pepper)
        return Caller(*found) if found is not None else None

    async def authenticate(self, header: str | None) -> Caller | None:
        """The caller behind the header, or None for a missing or unknown token."""
        candidates = token_candidates(header)
        if not candidates:
            return None
        key = "\n".join(candidates)
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None and cached[1] > now:
            return cached[0]
        loop = asyncio.get_running_loop()
        running_key = (id(loop), key)
        while (running := self._running.get(running_key)) is not None:
            # A look-up of this header is under way (it began after the verdict expired): its verdict, unless it
            # failed or was cancelled (then this request looks for itself, or waits for a waiter that does).
            found = await asyncio.shield(running)
            if found is not _LOOKUP_FAILED:
                return cast("Caller | None", found)
        future: asyncio.Future[object] = loop.create_future()
        self._running[running_key] = future
        try:
            self.lookups += 1
            caller = await run_in_threadpool(self._lookup, candidates)
        except BaseException:
            future.set_result(_LOOKUP_FAILED)
            raise
        else:
            future.set_result(caller)
        finally:
            if self._running.get(running_key) is future:
                del self._running[running_key]
        if caller is not None and (caller.auth.via_token_a or caller.auth.status != "connected"):
            # Handshake states change within one registration: only settled verdicts are cached.
            return caller
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[key] = (caller, now + self._ttl)
        return caller

    def forget(self) -> None:
        """Drop cached verdicts (after tokens changed in this process); a look-up running now serves only the
        requests already waiting for it."""
        with self._lock:
            self._cache.clear()
            self._running.clear()


class RateLimiter:
    """A token bucket per connection, in process: a flooding CPO is slowed down, the others are not."""

    def __init__(self) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def acquire(self, key: str, *, rate_per_s: float, burst: float) -> float | None:
        """Take one token; None if granted, else the seconds until one is available."""
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (burst, now))
            tokens = min(burst, tokens + (now - last) * rate_per_s)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return None
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / rate_per_s


Access = Literal["versions", "credentials", "module"]
_VERSION_STATUSES = frozenset({"invited", "registering", "connected"})


def _unauthorized(message: str) -> OcpiRequestError:
    return OcpiRequestError(OcpiStatus.CLIENT_ERROR, message, http_status=401,
                            headers={"WWW-Authenticate": "Token"})


async def authorize(app: Starlette, headers: Mapping[str, str], access: Access) -> Caller:
    """The caller of a request to ``app`` (the OCPI app) allowed ``access``, or OcpiRequestError (401, 429, 2001)."""
    authenticator: OcpiAuthenticator = app.state.ocpi_authenticator
    header = headers.get(AUTHORIZATION)
    if not header:
        raise _unauthorized("missing Authorization header: send 'Token <base64 token>'")
    caller = await authenticator.authenticate(header)
    if caller is None:
        raise _unauthorized("unknown token")
    auth = caller.auth
    if auth.via_token_a and access == "module":
        raise _unauthorized("token A is only valid on versions and credentials: register first")
    if not auth.via_token_a and (
        (access == "module" and auth.status != "connected")
        or (access != "module" and auth.status not in _VERSION_STATUSES)
    ):
        raise _unauthorized(f"connection is {auth.status}")
    if access == "module":
        _rate_limit(app, auth)
        if auth.flags.require_routing_headers and Routing.from_headers(headers).sender is None:
            raise OcpiRequestError(OcpiStatus.INVALID_OR_MISSING_PARAMETERS, "OCPI-from-* headers are required")
    return caller


def _caller_dependency(access: Access) -> Callable[[Request], Awaitable[Caller]]:
    async def dependency(request: Request) -> Caller:
        caller = await authorize(request.app, request.headers, access)
        request.state.ocpi_caller = caller
        return caller

    return dependency


def _rate_limit(app: Starlette, auth: ConnectionAuth) -> None:
    context: OcpiContext = app.state.ocpi
    limiter: RateLimiter = app.state.ocpi_rate_limiter
    rate = auth.flags.rate_limit_per_s or context.settings.rate_limit_per_s
    burst = auth.flags.rate_limit_burst or max(context.settings.rate_limit_burst, rate)
    wait = limiter.acquire(auth.connection_id, rate_per_s=rate, burst=burst)
    if wait is not None:
        raise OcpiRequestError(
            OcpiStatus.CLIENT_ERROR, f"too many requests: at most {rate:g}/s for this connection",
            http_status=429, headers={"Retry-After": str(max(1, round(wait + 0.5)))},
        )


VersionsCaller = Annotated[Caller, Depends(_caller_dependency("versions"))]
CredentialsCaller = Annotated[Caller, Depends(_caller_dependency("credentials"))]
ModuleCaller = Annotated[Caller, Depends(_caller_dependency("module"))]


def require_party(caller: Caller, country_code: str, party_id: str, *, in_url: bool = True) -> None:
    """Refuse writes for a party the caller did not register (HTTP 404 for URL parties, else 2001)."""
    if not caller.auth.owns(country_code, party_id):
        raise OcpiRequestError(
            OcpiStatus.INVALID_OR_MISSING_PARAMETERS,
            f"party {country_code}/{party_id} is not one of this connection's roles",
            http_status=404 if in_url else 200,
        )


def require_same(field: str, in_url: str, in_body: str | None) -> None:
    """Refuse a body whose id differs (case-insensitively) from the URL's with 2001."""
    if in_body is not None and in_body.casefold() != in_url.casefold():
        raise OcpiRequestError(
            OcpiStatus.INVALID_OR_MISSING_PARAMETERS,
            f"{field} {in_body!r} in the body differs from {in_url!r} in the URL",
        )


ModelT = TypeVar("ModelT", bound=BaseModel)
ResultT = TypeVar("ResultT")


async def read_body(request: Request, model: type[ModelT]) -> ModelT:
    """Parse the body straight from bytes: HTTP 400 when it is not JSON, 2001 naming the field otherwise."""
    return parse_body(await request.body(), model)


def parse_body(raw: bytes, model: type[ModelT]) -> ModelT:
    """``model`` from a raw JSON body: HTTP 400 when it is not JSON, 2001 naming the field otherwise."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        problems = exc.errors(include_url=False)
        if any(err.get("type") == "json_invalid" for err in problems):
            raise OcpiRequestError(
                OcpiStatus.INVALID_OR_MISSING_PARAMETERS, "request body is not valid JSON", http_status=400
            ) from exc
        fields = "; ".join(
            f"{'.'.join(str(p) for p in err.get('loc', ())) or 'body'}: {err.get('msg', '')}" for err in problems[:5]
        )
        raise OcpiRequestError(
            OcpiStatus.INVALID_OR_MISSING_PARAMETERS, f"invalid or missing parameters: {fields}"
        ) from exc


async def in_transaction(request: Request, work: Callable[[Session], ResultT]) -> ResultT:
    """Run ``work`` in one transaction on a worker thread (one hop: the hot intake path stays lean)."""
    return await in_transaction_of(request.app, work)


async def in_transaction_of(app: Starlette, work: Callable[[Session], ResultT]) -> ResultT:
    """``in_transaction`` for a request to ``app`` (the OCPI app)."""
    factory: sessionmaker[Session] = app.state.session_factory

    def run() -> ResultT:
        with unit_of_work(factory) as session:
            return work(session)

    limiter: CapacityLimiter = app.state.ocpi_db_limiter
    return await to_thread.run_sync(run, limiter=limiter)


def context_of(request: Request) -> OcpiContext:
    """The OCPI context of the app."""
    context: OcpiContext = request.app.state.ocpi
    return context


# ---------------------------------------------------------------------------------------- the sub-app


class StripTrailingSlash:
    """Route ``/x/`` like ``/x``: peers differ on trailing slashes and redirects break PUT/POST."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if len(path) > 1 and path.endswith("/"):
                scope = dict(scope)
                scope["path"] = path.rstrip("/")
        await self.app(scope, receive, send)


def install_envelope_handlers(app: FastAPI) -> None:
    """Answer everything that escapes a route (unmatched paths and methods too) in the OCPI envelope."""

    async def handler(_request: Request, exc: Exception) -> Response:
        return error_response(exc)

    for kind in (StarletteHTTPException, RequestValidationError, errors.DomainError, OcpiRequestError, Exception):
        app.add_exception_handler(kind, handler)
