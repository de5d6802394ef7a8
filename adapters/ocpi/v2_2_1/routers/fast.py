"""The lean path of Session PATCH: answered in front of the API's router, without FastAPI's per-request machinery.

Session PATCHes are most of what CPOs send (one per session and charging period). Through the mounted OCPI app
each one passed the API's exception and exit-stack middlewares, route matching of the API and of the OCPI app,
the OCPI app's own middleware stack and FastAPI's dependency solving before its handler ran: about half the
server's CPU per PATCH. ``SessionPatchFastPath`` sits right inside ``RequestContextMiddleware`` (request ids,
metrics and access line unchanged) and takes ``PATCH /ocpi/2.2.1/sessions/{country_code}/{party_id}/{session_id}``
itself: the same token check, rate limit and routing-header rule (``authorize``), the same party check, body
parsing, write and answer (``sessions.apply_patch``), the same envelope for every error (``error_response``) and
the same routing headers and counters (``ModuleAnswers``). Anything else, or a PATCH path it does not recognise
exactly, goes on to the app unchanged. ``VPP_OCPI_FAST_SESSION_PATCH=false`` turns it off.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from adapters.ocpi.v2_2_1.routers import sessions
from adapters.ocpi.v2_2_1.routers.common import ModuleAnswers, authorize, error_response, require_party
from adapters.ocpi.v2_2_1.transport import OCPI_VERSION

MOUNT = "/ocpi"
_ANSWERS = ModuleAnswers("sessions")


def _patch_route() -> APIRoute:
    for route in sessions.router.routes:
        if isinstance(route, APIRoute) and route.operation_id == "ocpi_patch_session":
            return route
    raise LookupError("the Sessions router has no PATCH route")


class SessionPatchFastPath:
    """ASGI middleware answering Session PATCHes to the OCPI app mounted at ``/ocpi`` (see the module's doc)."""

    def __init__(self, app: ASGIApp, ocpi_app: FastAPI) -> None:
        self.app = app
        self.ocpi_app = ocpi_app
        self.route = _patch_route()
        self.prefix = f"{MOUNT}/{OCPI_VERSION}/sessions/"

    def _params(self, scope: Scope) -> tuple[str, str, str] | None:
        """(country_code, party_id, session_id) of a Session PATCH this path answers, else None."""
        if scope["type"] != "http" or scope.get("method") != "PATCH" or scope.get("root_path"):
            return None
        path: str = scope["path"]
        if not path.startswith(self.prefix):
            return None
        # As the OCPI app routes it: trailing slashes stripped, three non-empty segments.
        parts = path[len(self.prefix):].rstrip("/").split("/")
        if len(parts) != 3 or not all(parts):
            return None
        return parts[0], parts[1], parts[2]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        params = self._params(scope)
        if params is None:
            await self.app(scope, receive, send)
            return
        country_code, party_id, session_id = params
        # What the mount and the OCPI app's router would record: metrics name the route's template.
        scope["root_path"] = MOUNT
        scope["route"] = self.route
        scope["endpoint"] = self.route.endpoint
        scope["path_params"] = {"country_code": country_code, "party_id": party_id, "session_id": session_id}
        scope["app"] = self.ocpi_app
        request: Request = Request(scope, receive)
        ocpi_app: Any = self.ocpi_app
        try:
            caller = await authorize(ocpi_app, request.headers, "module")
            require_party(caller, country_code, party_id)
            raw = await request.body()
            response = await sessions.apply_patch(ocpi_app, caller, country_code, party_id, session_id, raw)
        except Exception as exc:
            response = error_response(exc)
        _ANSWERS.finish(ocpi_app, "PATCH", request.headers, response)
        await response(scope, receive, send)
