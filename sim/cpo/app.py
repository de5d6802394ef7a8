"""HTTP face of the simulated CPO: OCPI 2.2.1 modules plus a small admin API."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from adapters.ocpi.v2_2_1.schemas import (
    Credentials,
    OcpiModel,
    SetChargingProfile,
)
from adapters.ocpi.v2_2_1.transport import (
    OCPI_VERSION,
    OcpiStatus,
    Routing,
    echo_id_headers,
    format_datetime,
    match_token,
    ocpi_error,
    ocpi_response,
    pagination_headers,
    parse_datetime,
    routing_headers,
)
from sim.cpo.clock import Clock, ManualClock, ScaledClock
from sim.cpo.config import CpoConfig
from sim.cpo.faults import FaultConfig
from sim.cpo.simulator import CpoSimulator, SimError
from sim.cpo.state import Connection

logger = logging.getLogger(__name__)

ModelT = TypeVar("ModelT", bound=BaseModel)
MODULE_PREFIX = f"/ocpi/cpo/{OCPI_VERSION}"


class StripTrailingSlash:
    """Route ``/x/`` like ``/x``: peers differ on trailing slashes and redirects break POST/PUT."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and len(scope["path"]) > 1 and scope["path"].endswith("/"):
            scope = dict(scope)
            scope["path"] = scope["path"].rstrip("/")
        await self.app(scope, receive, send)


async def _deliver_results_forever(sim: CpoSimulator, tick_s: float) -> None:
    while True:
        try:
            await sim.deliver_due_results()
        except Exception:
            logger.exception("delivering profile results failed")
        await asyncio.sleep(tick_s)


class _LowerCaseHeaders(dict[str, str]):
    """Request headers by lower-case name (ASGI gives them lower-cased), looked up in any case."""

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key.lower(), default)


class FastProfilePut:
    """ChargingProfiles PUT answered before FastAPI (no routing, no middleware stack), with the same answers.

    For benchmarks where the CPO side must stay cheap next to the system measured: serve ``fast_app(app)``, which
    puts this in front of the whole app. Falls through to the full app for every other request and whenever fault
    injection of latency or errors is on.
    """

    def __init__(self, app: ASGIApp, simulator: CpoSimulator) -> None:
        self.app = app
        self.sim = simulator
        self.prefix = f"{MODULE_PREFIX}/chargingprofiles/"
        self._tokens: dict[str, str | None] = {}

    def _token(self, header: str | None) -> str | None:
        if header is None:
            return None
        token = self._tokens.get(header)
        if token is None or token not in self.sim.connections:
            if len(self._tokens) > 1000:
                self._tokens.clear()
            token = self._tokens[header] = match_token(header, self.sim.connections)
        return token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        faults = self.sim.faults.config
        if (
            scope["type"] != "http" or scope["method"] != "PUT" or not scope["path"].startswith(self.prefix)
            or faults.latency_ms or faults.error_rate or faults.list_wrapped
        ):
            await self.app(scope, receive, send)
            return
        session_id = scope["path"][len(self.prefix):].strip("/")
        if not session_id or "/" in session_id:
            await self.app(scope, receive, send)
            return
        headers = _LowerCaseHeaders((k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"])
        chunks = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        sim = self.sim
        http_status, extra = 200, {}
        token = self._token(headers.get("authorization"))
        now = sim.now()
        if token is None:
            http_status, body = 401, ocpi_error(OcpiStatus.CLIENT_ERROR, "unknown or missing token", timestamp=now)
        else:
            try:
                raw = json.loads(b"".join(chunks))
            except ValueError:
                raw = None
                http_status = 400
                body = ocpi_error(OcpiStatus.INVALID_OR_MISSING_PARAMETERS, "body is not valid JSON", timestamp=now)
            if http_status == 200:
                try:
                    request = SetChargingProfile.model_validate(raw)
                except ValidationError as exc:
                    body = ocpi_error(OcpiStatus.INVALID_OR_MISSING_PARAMETERS,
                                      f"invalid SetChargingProfile: {exc.errors()[:3]}", timestamp=sim.now())
                else:
                    answer = sim.request_profile(sim.connections[token], session_id, "set", request.response_url,
                                                 profile=request.charging_profile)
                    body = {"data": {"result": answer.result.value, "timeout": answer.timeout},
                            "status_code": int(OcpiStatus.SUCCESS), "timestamp": format_datetime(sim.now())}
                    extra = routing_headers(sim.party, Routing.from_headers(headers).sender)
        content = json.dumps(body, separators=(",", ":")).encode()
        extra.update(echo_id_headers(headers))
        raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(content)).encode())]
        raw_headers.extend((k.lower().encode(), v.encode()) for k, v in extra.items())
        await send({"type": "http.response.start", "status": http_status, "headers": raw_headers})
        await send({"type": "http.response.body", "body": content})


def fast_app(app: FastAPI) -> ASGIApp:
    """The app to serve: with ``fast_profiles`` on, ChargingProfiles PUTs are answered in front of it."""
    sim = get_simulator(app)
    return FastProfilePut(app, sim) if sim.config.fast_profiles else app


class PlugIn(BaseModel):
    """Admin: connect a car now."""

    evse_uid: str | None = None
    energy_kwh: float | None = Field(default=None, gt=0)
    soc: float | None = Field(default=None, ge=0, le=1)
    connection_hours: float | None = Field(default=None, gt=0)
    model: str | None = None
    reports_soc: bool | None = None


class RegisterWith(BaseModel):
    """Admin: register this CPO with an SCSP (we act as credentials Sender)."""

    versions_url: str
    token: str


def get_simulator(app: FastAPI) -> CpoSimulator:
    """The simulator behind an app made by create_cpo_app."""
    simulator: CpoSimulator = app.state.simulator
    return simulator


def create_cpo_app(
    config: CpoConfig | None = None,
    *,
    clock: Clock | None = None,
    http_client: httpx.AsyncClient | None = None,
) -> FastAPI:
    """Build the simulated CPO's FastAPI app (simulator on ``app.state.simulator``)."""
    config = config or CpoConfig()
    if clock is None:
        clock = ScaledClock(config.speed) if config.realtime else ManualClock(datetime.now(UTC))
    sim = CpoSimulator(config, clock=clock, http=http_client)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        tasks: list[asyncio.Task[None]] = []
        if config.realtime:
            tasks.append(asyncio.create_task(sim.run_forever()))
        if config.result_tick_s and not config.realtime:
            tasks.append(asyncio.create_task(_deliver_results_forever(sim, config.result_tick_s)))
        if config.register_with_url and config.register_with_token:
            tasks.append(
                asyncio.create_task(sim.register_with_retry(config.register_with_url, config.register_with_token))
            )
        yield
        for task in tasks:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
        await sim.aclose()

    app = FastAPI(title=f"Simulated OCPI 2.2.1 CPO {config.party}", lifespan=lifespan)
    app.state.simulator = sim

    @app.exception_handler(SimError)
    async def _sim_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, SimError)
        return JSONResponse(ocpi_error(exc.status_code, exc.message, timestamp=sim.now()), exc.http_status)

    @app.middleware("http")
    async def _faults_and_ids(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        faults = sim.faults
        if request.url.path.startswith("/ocpi"):
            if faults.config.latency_ms:
                await asyncio.sleep(faults.config.latency_ms / 1000)
            if faults.hit(faults.config.error_rate):
                response: Response = Response("Service Unavailable", status_code=503, media_type="text/plain")
            else:
                response = await call_next(request)
        else:
            response = await call_next(request)
        response.headers.update(echo_id_headers(request.headers))
        return response

    app.add_middleware(StripTrailingSlash)
    if config.fast_profiles:
        # In-process (ASGI transport) callers reach it here; servers put it in front of the app (fast_app).
        app.add_middleware(FastProfilePut, simulator=sim)

    # ------------------------------------------------------------------------------- helpers

    def reply(
        request: Request,
        data: Any = None,
        *,
        http_status: int = 200,
        status_code: int = OcpiStatus.SUCCESS,
        routed: bool = False,
        headers: dict[str, str] | None = None,
    ) -> JSONResponse:
        if sim.faults.config.list_wrapped and isinstance(data, BaseModel):
            data = [data]
        all_headers = dict(headers or {})
        if routed:
            requester = Routing.from_headers(request.headers).sender
            all_headers.update(routing_headers(sim.party, requester))
        body = ocpi_response(data, status_code, timestamp=sim.now())
        return JSONResponse(body, status_code=http_status, headers=all_headers)

    def token_of(request: Request, known: dict[str, Any]) -> str | None:
        return match_token(request.headers.get("Authorization"), known)

    def require_connection(request: Request) -> Connection:
        token = token_of(request, sim.connections)
        if token is None:
            raise SimError(401, OcpiStatus.CLIENT_ERROR, "unknown or missing token")
        return sim.connections[token]

    def require_version_access(request: Request) -> None:
        known = {**dict.fromkeys(sim.token_a), **sim.connections}
        if token_of(request, known) is None:
            raise SimError(401, OcpiStatus.CLIENT_ERROR, "unknown or missing token")

    async def read_body(request: Request, model: type[ModelT]) -> ModelT:
        try:
            raw = await request.json()
        except ValueError as exc:
            raise SimError(400, OcpiStatus.INVALID_OR_MISSING_PARAMETERS, "body is not valid JSON") from exc
        try:
            return model.model_validate(raw)
        except ValidationError as exc:
            raise SimError(
                200, OcpiStatus.INVALID_OR_MISSING_PARAMETERS, f"invalid {model.__name__}: {exc.errors()[:3]}"
            ) from exc

    def date_param(request: Request, name: str) -> datetime | None:
        raw = request.query_params.get(name)
        if raw is None:
            return None
        try:
            return parse_datetime(raw)
        except ValueError as exc:
            raise SimError(200, OcpiStatus.INVALID_OR_MISSING_PARAMETERS, f"bad {name}: {raw}") from exc

    def int_param(request: Request, name: str, default: int) -> int:
        raw = request.query_params.get(name)
        if raw is None:
            return default
        try:
            return max(0, int(raw))
        except ValueError as exc:
            raise SimError(200, OcpiStatus.INVALID_OR_MISSING_PARAMETERS, f"bad {name}: {raw}") from exc

    def paginate(request: Request, items: Sequence[OcpiModel], updated: Callable[[Any], datetime]) -> JSONResponse:
        date_from, date_to = date_param(request, "date_from"), date_param(request, "date_to")
        selected = [
            item
            for item in items
            if (date_from is None or updated(item) >= date_from) and (date_to is None or updated(item) < date_to)
        ]
        selected.sort(key=updated)
        max_limit = sim.config.page_limit
        offset = int_param(request, "offset", 0)
        limit = min(int_param(request, "limit", max_limit) or max_limit, max_limit)
        page = selected[offset : offset + limit]
        headers = pagination_headers(
            str(request.url),
            offset=offset,
            limit=limit,
            returned=len(page),
            total_count=len(selected),
            max_limit=max_limit,
        )
        if sim.faults.config.omit_link_header:
            headers.pop("Link", None)
        body = ocpi_response(page, timestamp=sim.now(), include_data=True)
        headers.update(routing_headers(sim.party, Routing.from_headers(request.headers).sender))
        return JSONResponse(body, headers=headers)

    # ------------------------------------------------------------------------ versions, details

    @app.get("/ocpi/versions")
    async def get_versions(request: Request) -> Response:
        require_version_access(request)
        return reply(request, sim.versions())

    @app.get(f"/ocpi/{OCPI_VERSION}")
    async def get_version_details(request: Request) -> Response:
        require_version_access(request)
        return reply(request, sim.version_details())

    # ------------------------------------------------------------------------------- credentials

    credentials_path = f"{MODULE_PREFIX}/credentials"

    @app.get(credentials_path)
    async def get_credentials(request: Request) -> Response:
        if token_of(request, dict.fromkeys(sim.token_a)):
            raise SimError(405, OcpiStatus.CLIENT_ERROR, "not registered")
        connection = require_connection(request)
        return reply(request, sim.own_credentials(connection.incoming_token))

    @app.post(credentials_path)
    async def post_credentials(request: Request) -> Response:
        if token_of(request, sim.connections):
            raise SimError(405, OcpiStatus.CLIENT_ERROR, "already registered: use PUT")
        token_a = token_of(request, dict.fromkeys(sim.token_a))
        if token_a is None:
            raise SimError(401, OcpiStatus.CLIENT_ERROR, "unknown or missing token")
        theirs = await read_body(request, Credentials)
        return reply(request, await sim.accept_registration(token_a, theirs))

    @app.put(credentials_path)
    async def put_credentials(request: Request) -> Response:
        if token_of(request, dict.fromkeys(sim.token_a)):
            raise SimError(405, OcpiStatus.CLIENT_ERROR, "not registered: use POST")
        connection = require_connection(request)
        theirs = await read_body(request, Credentials)
        return reply(request, await sim.update_registration(connection, theirs))

    @app.delete(credentials_path)
    async def delete_credentials(request: Request) -> Response:
        if token_of(request, dict.fromkeys(sim.token_a)):
            raise SimError(405, OcpiStatus.CLIENT_ERROR, "not registered")
        sim.unregister(require_connection(request))
        return reply(request)

    # --------------------------------------------------------------------------------- senders

    @app.get(f"{MODULE_PREFIX}/locations")
    async def list_locations(request: Request) -> Response:
        require_connection(request)
        wire = [loc.to_wire(sim.party, sim.config.advertise_v2g_capability, sim.config.name) for loc in sim.locations]
        return paginate(request, wire, lambda item: item.last_updated)

    @app.get(f"{MODULE_PREFIX}/locations/{{location_id}}")
    @app.get(f"{MODULE_PREFIX}/locations/{{location_id}}/{{evse_uid}}")
    @app.get(f"{MODULE_PREFIX}/locations/{{location_id}}/{{evse_uid}}/{{connector_id}}")
    async def get_location(
        request: Request, location_id: str, evse_uid: str | None = None, connector_id: str | None = None
    ) -> Response:
        require_connection(request)
        site = sim.location(location_id)
        if site is None:
            raise SimError(404, OcpiStatus.UNKNOWN_LOCATION, f"unknown location {location_id}")
        location = site.to_wire(sim.party, sim.config.advertise_v2g_capability, sim.config.name)
        if evse_uid is None:
            return reply(request, location, routed=True)
        evse = next((e for e in location.evses or [] if e.uid.casefold() == evse_uid.casefold()), None)
        if evse is None:
            raise SimError(404, OcpiStatus.UNKNOWN_LOCATION, f"unknown EVSE {evse_uid}")
        if connector_id is None:
            return reply(request, evse, routed=True)
        connector = next((c for c in evse.connectors if c.id.casefold() == connector_id.casefold()), None)
        if connector is None:
            raise SimError(404, OcpiStatus.UNKNOWN_LOCATION, f"unknown connector {connector_id}")
        return reply(request, connector, routed=True)

    @app.get(f"{MODULE_PREFIX}/sessions")
    async def list_sessions(request: Request) -> Response:
        require_connection(request)
        if request.query_params.get("date_from") is None:
            raise SimError(200, OcpiStatus.INVALID_OR_MISSING_PARAMETERS, "date_from is required")
        wire = [s.to_wire(sim.party, sim.config.tariff_eur_per_kwh) for s in sim.sessions.values()]
        return paginate(request, wire, lambda item: item.last_updated)

    @app.get(f"{MODULE_PREFIX}/cdrs")
    async def list_cdrs(request: Request) -> Response:
        require_connection(request)
        return paginate(request, list(sim.cdrs), lambda item: item.last_updated)

    # ------------------------------------------------------------------------ charging profiles

    profiles_path = f"{MODULE_PREFIX}/chargingprofiles/{{session_id}}"

    def response_url_param(request: Request) -> str:
        url = request.query_params.get("response_url")
        if not url:
            raise SimError(200, OcpiStatus.INVALID_OR_MISSING_PARAMETERS, "response_url is required")
        return url

    @app.put(profiles_path)
    async def put_profile(request: Request, session_id: str) -> Response:
        connection = require_connection(request)
        body = await read_body(request, SetChargingProfile)
        answer = sim.request_profile(connection, session_id, "set", body.response_url, profile=body.charging_profile)
        return reply(request, answer, routed=True)

    @app.get(profiles_path)
    async def get_profile(request: Request, session_id: str) -> Response:
        connection = require_connection(request)
        response_url = response_url_param(request)
        if request.query_params.get("duration") is None:
            raise SimError(200, OcpiStatus.INVALID_OR_MISSING_PARAMETERS, "duration is required")
        duration = int_param(request, "duration", 0)
        answer = sim.request_profile(connection, session_id, "get", response_url, duration_s=duration)
        return reply(request, answer, routed=True)

    @app.delete(profiles_path)
    async def delete_profile(request: Request, session_id: str) -> Response:
        connection = require_connection(request)
        answer = sim.request_profile(connection, session_id, "clear", response_url_param(request))
        return reply(request, answer, routed=True)

    # ------------------------------------------------------------------------------------ admin

    @app.get("/admin/state")
    async def admin_state() -> dict[str, Any]:
        return sim.snapshot()

    @app.get("/admin/faults")
    async def admin_get_faults() -> FaultConfig:
        return sim.faults.config

    @app.put("/admin/faults")
    async def admin_put_faults(faults: FaultConfig) -> FaultConfig:
        sim.faults.config = faults
        return faults

    @app.post("/admin/step")
    async def admin_step(seconds: float = 60.0) -> dict[str, Any]:
        await sim.step(seconds)
        return sim.snapshot()

    @app.post("/admin/sessions")
    async def admin_plug_in(body: PlugIn) -> dict[str, Any]:
        try:
            session = sim.plug_in(
                body.evse_uid,
                energy_kwh=body.energy_kwh,
                soc=body.soc,
                connection_hours=body.connection_hours,
                model=body.model,
                reports_soc=body.reports_soc,
            )
        except ValueError as exc:
            raise HTTPException(409, str(exc)) from exc
        await sim.flush()
        return {"session_id": session.id, "evse_uid": session.slot.evse_uid}

    @app.post("/admin/sessions/{session_id}/stop")
    async def admin_unplug(session_id: str) -> dict[str, Any]:
        try:
            session = sim.unplug(session_id)
        except ValueError as exc:
            raise HTTPException(404, str(exc)) from exc
        await sim.flush()
        return {"session_id": session.id, "kwh": session.kwh}

    @app.post("/admin/register")
    async def admin_register(body: RegisterWith) -> dict[str, Any]:
        connection = await sim.register_with(body.versions_url, body.token)
        return {"party": str(connection.party), "versions_url": connection.versions_url}

    @app.post("/admin/token-a")
    async def admin_token_a() -> dict[str, str]:
        return {"token": sim.issue_token_a(), "versions_url": sim.versions_url}

    return app


__all__ = ["create_cpo_app", "get_simulator"]
