"""The simulated CPO against a minimal fake SCSP, both in-process over ASGI: handshakes, pushes, profiles."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from adapters.ocpi.v2_2_1.client import OcpiClient
from adapters.ocpi.v2_2_1.schemas import (
    ActiveChargingProfile,
    BusinessDetails,
    Cdr,
    CdrDimensionType,
    ChargingProfile,
    ChargingProfilePeriod,
    ChargingProfileResponseType,
    ChargingRateUnit,
    Credentials,
    CredentialsRole,
    Endpoint,
    InterfaceRole,
    Role,
    Session,
    SessionPatch,
    Version,
    VersionDetails,
    connector_max_power_w,
)
from adapters.ocpi.v2_2_1.transport import (
    OcpiAuthError,
    OcpiClientError,
    OcpiHttpError,
    OcpiMethodNotAllowed,
    PartyRef,
    ocpi_error,
    ocpi_response,
    token_candidates,
)
from sim.cpo import CpoConfig, CpoSimulator, FaultConfig, ManualClock, create_cpo_app, get_simulator

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
CPO = "http://cpo.test"
SCSP = "http://scsp.test"
SCSP_PARTY = PartyRef("NL", "VPP")
CPO_PARTY = PartyRef("NL", "CPA")
CPO_TOKEN_A = "cpo-token-a"
SCSP_TOKEN_A = "scsp-token-a"


class HostRouter(httpx.AsyncBaseTransport):
    """Sends each request to the in-process ASGI app registered for its host."""

    def __init__(self) -> None:
        self.apps: dict[str, httpx.ASGITransport] = {}

    def add(self, host: str, app: FastAPI) -> None:
        self.apps[host] = httpx.ASGITransport(app=app)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self.apps[request.url.host].handle_async_request(request)


@dataclass
class FakeScsp:
    """Just enough of an SCSP: versions, credentials, sessions/cdrs receivers, chargingprofiles sender."""

    http: httpx.AsyncClient
    tokens: dict[str, str] = field(default_factory=lambda: {SCSP_TOKEN_A: "A"})
    peer_clients: list[OcpiClient] = field(default_factory=list)
    sessions: dict[str, Session] = field(default_factory=dict)
    patches: list[SessionPatch] = field(default_factory=list)
    results: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    active_profiles: list[tuple[str, ActiveChargingProfile]] = field(default_factory=list)
    cdrs: list[Cdr] = field(default_factory=list)
    seen_tokens: list[tuple[str, str]] = field(default_factory=list)
    seen_headers: list[dict[str, str]] = field(default_factory=list)

    def credentials(self, token: str) -> Credentials:
        role = CredentialsRole(
            role=Role.SCSP,
            business_details=BusinessDetails(name="Test VPP"),
            party_id=SCSP_PARTY.party_id,
            country_code=SCSP_PARTY.country_code,
        )
        return Credentials(token=token, url=f"{SCSP}/ocpi/versions", roles=[role])

    def app(self) -> FastAPI:
        app = FastAPI()
        base = f"{SCSP}/ocpi/scsp/2.2.1"

        def auth(request: Request, *, allow_a: bool = False) -> str | None:
            self.seen_headers.append(dict(request.headers))
            for token in token_candidates(request.headers.get("authorization")):
                kind = self.tokens.get(token)
                if kind is not None and (kind != "A" or allow_a):
                    self.seen_tokens.append((request.url.path, token))
                    return token
            return None

        def denied() -> Response:
            return JSONResponse(ocpi_error(2000, "unauthorized"), status_code=401)

        @app.get("/ocpi/versions")
        async def versions(request: Request) -> Response:
            if auth(request, allow_a=True) is None:
                return denied()
            return JSONResponse(ocpi_response([Version(version="2.2.1", url=f"{SCSP}/ocpi/2.2.1")]))

        @app.get("/ocpi/2.2.1")
        async def details(request: Request) -> Response:
            if auth(request, allow_a=True) is None:
                return denied()
            endpoints = [
                Endpoint(identifier="credentials", role=InterfaceRole.SENDER, url=f"{base}/credentials"),
                Endpoint(identifier="sessions", role=InterfaceRole.RECEIVER, url=f"{base}/sessions/"),
                Endpoint(identifier="chargingprofiles", role=InterfaceRole.SENDER, url=f"{base}/chargingprofiles"),
                Endpoint(identifier="cdrs", role=InterfaceRole.RECEIVER, url=f"{base}/cdrs"),
            ]
            return JSONResponse(ocpi_response(VersionDetails(version="2.2.1", endpoints=endpoints)))

        @app.post("/ocpi/scsp/2.2.1/credentials")
        async def register(request: Request) -> Response:
            token_a = auth(request, allow_a=True)
            if token_a is None or self.tokens[token_a] != "A":
                return denied()
            theirs = Credentials.model_validate(await request.json())
            peer = OcpiClient(
                self.http, versions_url=theirs.url, token=theirs.token, own_party=SCSP_PARTY, peer_party=CPO_PARTY
            )
            await peer.discover()
            self.peer_clients.append(peer)
            del self.tokens[token_a]
            self.tokens["scsp-token-c"] = "C"
            return JSONResponse(ocpi_response(self.credentials("scsp-token-c")))

        @app.put("/ocpi/scsp/2.2.1/sessions/{cc}/{pid}/{sid}")
        async def put_session(request: Request, cc: str, pid: str, sid: str) -> Response:
            if auth(request) is None:
                return denied()
            session = Session.model_validate(await request.json())
            assert (session.country_code, session.party_id, session.id) == (cc, pid, sid)
            created = sid not in self.sessions
            self.sessions[sid] = session
            return JSONResponse(ocpi_response(), status_code=201 if created else 200)

        @app.patch("/ocpi/scsp/2.2.1/sessions/{cc}/{pid}/{sid}")
        async def patch_session(request: Request, cc: str, pid: str, sid: str) -> Response:
            if auth(request) is None:
                return denied()
            patch = SessionPatch.model_validate(await request.json())
            if patch.last_updated is None:
                return JSONResponse(ocpi_error(2001, "last_updated missing"))
            self.patches.append(patch)
            stored = self.sessions[sid]
            update = patch.model_dump(exclude_none=True, exclude={"charging_periods"})
            periods = (stored.charging_periods or []) + (patch.charging_periods or [])
            self.sessions[sid] = stored.model_copy(update={**update, "charging_periods": periods})
            return JSONResponse(ocpi_response())

        @app.post("/ocpi/scsp/2.2.1/chargingprofiles/results/{kind}/{rid}")
        async def result(request: Request, kind: str, rid: str) -> Response:
            if auth(request) is None:
                return denied()
            self.results.append((kind, rid, await request.json()))
            return JSONResponse(ocpi_response())

        @app.put("/ocpi/scsp/2.2.1/chargingprofiles/{sid}")
        async def active_profile(request: Request, sid: str) -> Response:
            if auth(request) is None:
                return denied()
            self.active_profiles.append((sid, ActiveChargingProfile.model_validate(await request.json())))
            return JSONResponse(ocpi_response())

        @app.post("/ocpi/scsp/2.2.1/cdrs")
        async def post_cdr(request: Request) -> Response:
            if auth(request) is None:
                return denied()
            cdr = Cdr.model_validate(await request.json())
            self.cdrs.append(cdr)
            return JSONResponse(ocpi_response(), status_code=201, headers={"Location": f"{base}/cdrs/{cdr.id}"})

        return app


@dataclass
class World:
    http: httpx.AsyncClient
    scsp: FakeScsp
    cpo_app: FastAPI

    @property
    def sim(self) -> CpoSimulator:
        return get_simulator(self.cpo_app)

    def scsp_client(self, token: str = CPO_TOKEN_A) -> OcpiClient:
        return OcpiClient(
            self.http, versions_url=f"{CPO}/ocpi/versions", token=token, own_party=SCSP_PARTY, peer_party=CPO_PARTY
        )

    async def registered_client(self) -> OcpiClient:
        client = self.scsp_client()
        await client.discover()
        self.scsp.tokens["scsp-token-b"] = "B"
        await client.register(self.scsp.credentials("scsp-token-b"))
        return client


def run(test: Callable[[World], Awaitable[None]], **config: Any) -> None:
    async def main() -> None:
        router = HostRouter()
        async with httpx.AsyncClient(transport=router) as http:
            scsp = FakeScsp(http)
            settings: dict[str, Any] = {
                "base_url": CPO,
                "token_a": CPO_TOKEN_A,
                "evses": 4,
                "evses_per_location": 2,
                "auto_arrivals": False,
                "seed": 7,
                **config,
            }
            cpo_app = create_cpo_app(CpoConfig(**settings), clock=ManualClock(START), http_client=http)
            router.add("cpo.test", cpo_app)
            router.add("scsp.test", scsp.app())
            await test(World(http, scsp, cpo_app))

    asyncio.run(main())


def result_url(kind: str, request_id: str) -> str:
    return f"{SCSP}/ocpi/scsp/2.2.1/chargingprofiles/results/{kind}/{request_id}"


def profile_w(*limits: tuple[int, float]) -> ChargingProfile:
    return ChargingProfile(
        charging_rate_unit=ChargingRateUnit.W,
        charging_profile_period=[ChargingProfilePeriod(start_period=s, limit=v) for s, v in limits],
    )


def last_power(session: Session) -> float | None:
    assert session.charging_periods
    return session.charging_periods[-1].volume(CdrDimensionType.POWER)


def test_scsp_registers_with_cpo_then_steers_a_session_whose_power_follows_the_limit() -> None:
    async def scenario(world: World) -> None:
        client = await world.registered_client()
        assert client.token not in (CPO_TOKEN_A, "scsp-token-b")
        # The CPO checked us with token B before answering, and token A is now dead.
        assert ("/ocpi/versions", "scsp-token-b") in world.scsp.seen_tokens
        assert CPO_TOKEN_A not in world.sim.token_a

        session = world.sim.plug_in("LOC001-01", energy_kwh=40, soc=0.2, connection_hours=5, model="Tesla Model 3")
        await world.sim.flush()
        assert world.scsp.sessions[session.id].kwh == 0
        await world.sim.step(600)
        pushed = world.scsp.sessions[session.id]
        assert pushed.charging_periods is not None
        assert len(pushed.charging_periods) == 2
        assert last_power(pushed) == pytest.approx(11.0)
        assert world.scsp.patches[-1].kwh == pytest.approx(11.0 * 600 / 3600, rel=1e-3)

        answer = await client.set_charging_profile(session.id, profile_w((0, 3700.0)), result_url("set", "r1"))
        assert answer.result == ChargingProfileResponseType.ACCEPTED
        assert answer.timeout == 30
        assert world.scsp.results == []
        await world.sim.step(2)
        assert world.scsp.results == [("set", "r1", {"result": "ACCEPTED"})]
        sid, active = world.scsp.active_profiles[-1]
        assert sid == session.id
        assert active.charging_profile.charging_profile_period[0].limit == 3700.0

        await world.sim.step(900)
        assert last_power(world.scsp.sessions[session.id]) == pytest.approx(3.7)
        assert world.sim.snapshot()["sessions"][0]["power_kw"] == pytest.approx(3.7)

        answer = await client.get_active_charging_profile(session.id, 900, result_url("get", "r2"))
        assert answer.result == ChargingProfileResponseType.ACCEPTED
        await world.sim.step(5)
        kind, _, body = world.scsp.results[-1]
        assert kind == "get"
        assert body["result"] == "ACCEPTED"
        assert body["profile"]["charging_profile"]["charging_profile_period"][0]["limit"] == 3700.0

        answer = await client.clear_charging_profile(session.id, result_url("clear", "r3"))
        assert answer.result == ChargingProfileResponseType.ACCEPTED
        await world.sim.step(600)
        assert world.scsp.results[-1] == ("clear", "r3", {"result": "ACCEPTED"})
        # Without a profile the active profile shows the EVSE maximum again.
        assert world.scsp.active_profiles[-1][1].charging_profile.charging_profile_period[0].limit == 11000.0
        assert last_power(world.scsp.sessions[session.id]) == pytest.approx(11.0)

        pulled = [s async for s in client.pull_sessions(START)]
        assert [s.id for s in pulled] == [session.id]
        locations = [loc async for loc in client.pull_locations()]
        assert len(locations) == 2
        evse = (locations[0].evses or [])[0]
        assert evse.has_capability("CHARGING_PROFILE_CAPABLE")
        assert connector_max_power_w(evse.connectors[0]) == 11000.0

        world.sim.unplug(session.id)
        await world.sim.flush()
        final = world.scsp.sessions[session.id]
        assert final.status == "COMPLETED"
        assert final.end_date_time is not None
        assert len(world.scsp.cdrs) == 1
        cdr = world.scsp.cdrs[0]
        assert cdr.session_id == session.id
        assert cdr.total_energy == pytest.approx(final.kwh, abs=1e-3)
        assert all(d.type not in ("POWER", "STATE_OF_CHARGE") for p in cdr.charging_periods for d in p.dimensions)
        assert [c.id async for c in client.pull_cdrs()] == [cdr.id]
        # Routing headers on functional pushes, none on credentials/versions.
        pushes = [h for h in world.scsp.seen_headers if "ocpi-from-party-id" in h]
        assert pushes
        assert all(h["ocpi-from-party-id"] == "CPA" and h["ocpi-to-party-id"] == "VPP" for h in pushes)
        assert all("x-request-id" in h and "x-correlation-id" in h for h in world.scsp.seen_headers)

    run(scenario)


def test_cpo_registers_with_scsp_and_pushes_with_the_scsp_token_c() -> None:
    async def scenario(world: World) -> None:
        connection = await world.sim.register_with(f"{SCSP}/ocpi/versions", SCSP_TOKEN_A)
        assert connection.outgoing_token == "scsp-token-c"
        assert str(connection.party) == "NL/VPP"
        # The SCSP discovered the CPO's endpoints with the CPO-issued token B.
        peer = world.scsp.peer_clients[0]
        assert peer.details is not None
        assert peer.details.endpoint_url("chargingprofiles", InterfaceRole.RECEIVER) is not None
        session = world.sim.plug_in(energy_kwh=10, connection_hours=2)
        await world.sim.step(300)
        assert session.id in world.scsp.sessions
        assert {t for path, t in world.scsp.seen_tokens if "sessions" in path} == {"scsp-token-c"}
        answer = await peer.set_charging_profile(session.id, profile_w((0, 2000.0)), result_url("set", "x"))
        assert answer.result == ChargingProfileResponseType.ACCEPTED
        await world.sim.step(2)
        assert world.scsp.results[-1][2] == {"result": "ACCEPTED"}

    run(scenario)


def test_negative_limit_discharges_a_v2g_car_and_is_rejected_without_v2g() -> None:
    async def scenario(world: World) -> None:
        client = await world.registered_client()
        session = world.sim.plug_in(energy_kwh=20, soc=0.6, connection_hours=5, model="Tesla Model 3")
        await client.set_charging_profile(session.id, profile_w((0, -5000.0)), result_url("set", "v1"))
        await world.sim.step(900)
        assert world.sim.snapshot()["sessions"][0]["power_kw"] == pytest.approx(-5.0)
        assert session.car.soc < 0.6
        assert last_power(world.scsp.sessions[session.id]) is not None
        assert world.scsp.sessions[session.id].kwh < 0

    run(scenario, v2g=True)

    async def refused(world: World) -> None:
        client = await world.registered_client()
        session = world.sim.plug_in(energy_kwh=20, soc=0.6, connection_hours=5)
        await client.set_charging_profile(session.id, profile_w((0, -5000.0)), result_url("set", "v2"))
        await world.sim.step(300)
        assert world.scsp.results[-1][2] == {"result": "REJECTED"}
        assert world.sim.snapshot()["sessions"][0]["power_kw"] > 0

    run(refused)


def test_profile_requests_get_typed_negative_answers() -> None:
    async def scenario(world: World) -> None:
        client = await world.registered_client()
        answer = await client.set_charging_profile("NOPE", profile_w((0, 1000.0)), result_url("set", "a"))
        assert answer.result == ChargingProfileResponseType.UNKNOWN_SESSION
        session = world.sim.plug_in(energy_kwh=20, connection_hours=5)
        first = await client.set_charging_profile(session.id.lower(), profile_w((0, 1000.0)), result_url("set", "b"))
        assert first.result == ChargingProfileResponseType.ACCEPTED
        second = await client.set_charging_profile(session.id, profile_w((0, 2000.0)), result_url("set", "c"))
        assert second.result == ChargingProfileResponseType.TOO_OFTEN

    run(scenario, min_profile_interval_s=60)

    async def not_capable(world: World) -> None:
        client = await world.registered_client()
        session = world.sim.plug_in(energy_kwh=20, connection_hours=5)
        answer = await client.set_charging_profile(session.id, profile_w((0, 1000.0)), result_url("set", "d"))
        assert answer.result == ChargingProfileResponseType.NOT_SUPPORTED

    run(not_capable, charging_profile_capable=False)


def test_credentials_and_auth_errors_map_to_typed_exceptions() -> None:
    async def scenario(world: World) -> None:
        stranger = world.scsp_client(token="who-am-i")
        with pytest.raises(OcpiAuthError):
            await stranger.get_versions()
        client = await world.registered_client()
        with pytest.raises(OcpiMethodNotAllowed):
            await client.register(world.scsp.credentials("scsp-token-b"))
        with pytest.raises(OcpiClientError) as missing:
            await client._call("GET", client.endpoint_url("sessions"), module="sessions")
        assert missing.value.status_code == 2001
        # Token A is dead after registration and never valid for functional modules.
        dead = world.scsp_client()
        dead.details = client.details
        with pytest.raises(OcpiAuthError):
            _ = [s async for s in dead.pull_sessions(START)]
        # Rotate, then unregister.
        old = client.token
        world.scsp.tokens["scsp-token-b2"] = "B"
        await client.update_credentials(world.scsp.credentials("scsp-token-b2"))
        assert client.token != old
        await client.unregister()
        with pytest.raises(OcpiAuthError):
            await client.get_credentials()

    run(scenario)


def test_faults_raw_tokens_list_wrapping_errors_and_lost_callbacks_are_survivable() -> None:
    async def scenario(world: World) -> None:
        client = await world.registered_client()
        session = world.sim.plug_in(energy_kwh=20, connection_hours=5)
        world.sim.faults.config = FaultConfig(raw_tokens=True, list_wrapped=True, lost_callback_rate=1.0)
        answer = await client.set_charging_profile(session.id, profile_w((0, 4000.0)), result_url("set", "lost"))
        assert answer.result == ChargingProfileResponseType.ACCEPTED
        await world.sim.step(600)
        assert world.scsp.results == []
        assert world.sim.snapshot()["sessions"][0]["power_kw"] == pytest.approx(4.0)
        # Raw (non-Base64) tokens still authenticate at a lenient receiver.
        raw = [h["authorization"] for h in world.scsp.seen_headers]
        assert f"Token {client_token_of(world)}" in raw

        world.sim.faults.config = FaultConfig(too_often_rate=1.0)
        answer = await client.set_charging_profile(session.id, profile_w((0, 4000.0)), result_url("set", "x"))
        assert answer.result == ChargingProfileResponseType.TOO_OFTEN

        world.sim.faults.config = FaultConfig(error_rate=1.0)
        with pytest.raises(OcpiHttpError) as failure:
            await client.get_versions()
        assert failure.value.http_status == 503

    run(scenario)


def client_token_of(world: World) -> str:
    return next(c.outgoing_token for c in world.sim.connections.values())


def test_pulls_follow_link_headers_and_survive_a_missing_link() -> None:
    async def scenario(world: World) -> None:
        client = await world.registered_client()
        ids = []
        for _ in range(4):
            ids.append(world.sim.plug_in(energy_kwh=5, connection_hours=1).id)
            await world.sim.step(60)
        pages = [p async for p in client.pull_pages("sessions", Session, date_from=START - timedelta(hours=1))]
        assert [len(p.items) for p in pages] == [3, 1]
        assert pages[0].info.limit == 3
        assert pages[0].info.total_count == 4
        assert sorted(s.id for p in pages for s in p.items) == sorted(ids)
        world.sim.faults.config = FaultConfig(omit_link_header=True)
        pulled = [s.id async for s in client.pull_sessions(START - timedelta(hours=1), limit=2)]
        assert sorted(pulled) == sorted(ids)
        window = [s.id async for s in client.pull_sessions(START + timedelta(minutes=1, seconds=30))]
        assert len(window) == 2

    run(scenario, page_limit=3)


def test_sessions_arrive_from_the_elaad_distributions_when_time_runs() -> None:
    async def scenario(world: World) -> None:
        await world.registered_client()
        await world.sim.step(36 * 3600)
        assert len(world.scsp.sessions) >= 2
        assert world.scsp.cdrs
        for session in world.scsp.sessions.values():
            for period in session.charging_periods or []:
                power = period.volume(CdrDimensionType.POWER)
                assert power is not None
                assert 0 <= power <= 11.0 + 1e-6

    run(scenario, auto_arrivals=True, evses=4)


def test_admin_api_plugs_in_and_steps_over_http() -> None:
    async def scenario(world: World) -> None:
        await world.registered_client()
        admin = world.http
        plugged = (await admin.post(f"{CPO}/admin/sessions", json={"energy_kwh": 10, "connection_hours": 1})).json()
        state = (await admin.post(f"{CPO}/admin/step", params={"seconds": 300})).json()
        assert state["sessions"][0]["id"] == plugged["session_id"]
        assert plugged["session_id"] in world.scsp.sessions
        faults = await admin.put(f"{CPO}/admin/faults", json={"latency_ms": 1})
        assert faults.json()["latency_ms"] == 1
        token = (await admin.post(f"{CPO}/admin/token-a")).json()["token"]
        assert token in world.sim.token_a

    run(scenario)
