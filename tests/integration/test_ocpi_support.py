"""Helpers of the OCPI integration tests (no tests here): in-process peers, registered connections, bodies."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy.orm import Session, sessionmaker
from starlette.types import ASGIApp

from adapters.ocpi.v2_2_1.context import OcpiContext
from adapters.ocpi.v2_2_1.transport import encode_token, format_datetime
from sim.cpo.app import create_cpo_app, get_simulator
from sim.cpo.config import CpoConfig
from sim.cpo.simulator import CpoSimulator
from vpp.db import unit_of_work
from vpp.keyring import Keyring, derive_key
from vpp.ocpi import service as connections
from vpp.ocpi.schemas import ConnectionFlags, EndpointRef, PartyRole

VPP_URL = "http://vpp.test"
CPO_URL = "http://cpo.test"
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


class RoutingTransport(httpx.AsyncBaseTransport):
    """Routes each request to the in-process ASGI app serving its host, as if over the network."""

    def __init__(self, apps: Mapping[str, ASGIApp]) -> None:
        self._transports = {host: httpx.ASGITransport(app=app) for host, app in apps.items()}

    def add(self, host: str, app: ASGIApp) -> None:
        """Serve ``host`` with ``app`` too."""
        self._transports[host] = httpx.ASGITransport(app=app)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        transport = self._transports.get(request.url.host)
        if transport is None:
            raise httpx.ConnectError(f"no route to {request.url.host}", request=request)
        return await transport.handle_async_request(request)


def token_headers(token: str, *, raw: bool = False) -> dict[str, str]:
    """Authorization header for an OCPI call."""
    return {"Authorization": f"Token {token if raw else encode_token(token)}"}


@dataclass(frozen=True)
class Peer:
    """A registered connection and the token it calls us with."""

    connection_id: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        """Its Authorization header."""
        return token_headers(self.token)


def connect(
    factory: sessionmaker[Session],
    pepper: str,
    *,
    name: str = "cpo",
    parties: Iterable[tuple[str, str]] = (("NL", "CPA"),),
    flags: ConnectionFlags | None = None,
    endpoints: Iterable[EndpointRef] = (EndpointRef("chargingprofiles", "RECEIVER", f"{CPO_URL}/cp"),),
) -> Peer:
    """A connected CPO as if it had registered with us (without calling anyone)."""
    with unit_of_work(factory) as session:
        row, _token_a = connections.invite(session, name=name, pepper=pepper, flags=flags)
        _row, token = connections.accept_registration(
            session, row.id, pepper=pepper, outgoing_token=f"token-b-{name}", keyring=Keyring.of(derive_key(pepper)),
            versions_url=f"{CPO_URL}/versions",
            version="2.2.1", endpoints=list(endpoints), roles=[PartyRole("CPO", cc, pid) for cc, pid in parties],
        )
        return Peer(row.id, token)


def session_body(
    session_id: str = "S1",
    *,
    country_code: str = "NL",
    party_id: str = "CPA",
    last_updated: datetime = T0,
    periods: Iterable[tuple[datetime, float]] = ((T0, 7.2),),
    status: str = "ACTIVE",
    kwh: float = 0.0,
    location_id: str = "LOC1",
    evse_uid: str = "EVSE1",
    **extra: Any,
) -> dict[str, Any]:
    """A wire Session body with POWER/ENERGY charging periods."""
    return {
        "country_code": country_code,
        "party_id": party_id,
        "id": session_id,
        "start_date_time": format_datetime(T0),
        "kwh": kwh,
        "cdr_token": {"country_code": "NL", "party_id": "EMS", "uid": "U1", "type": "RFID", "contract_id": "C1"},
        "auth_method": "WHITELIST",
        "location_id": location_id,
        "evse_uid": evse_uid,
        "connector_id": "1",
        "currency": "EUR",
        "charging_periods": [period(start, power) for start, power in periods],
        "status": status,
        "last_updated": format_datetime(last_updated),
        **extra,
    }


def period(start: datetime, power_kw: float, *, soc: float | None = None) -> dict[str, Any]:
    """A wire charging period of 15 minutes at ``power_kw``."""
    dimensions: list[dict[str, Any]] = [
        {"type": "POWER", "volume": power_kw},
        {"type": "ENERGY", "volume": round(power_kw / 4, 4)},
    ]
    if soc is not None:
        dimensions.append({"type": "STATE_OF_CHARGE", "volume": soc})
    return {"start_date_time": format_datetime(start), "dimensions": dimensions}


def minutes(n: float) -> timedelta:
    """A duration in minutes."""
    return timedelta(minutes=n)


class RecordingQueue:
    """A task queue that only records what was enqueued."""

    def __init__(self) -> None:
        self.tasks: list[tuple[str, dict[str, Any]]] = []

    def enqueue(self, task_name: str, **kwargs: Any) -> None:
        """Record the task."""
        self.tasks.append((task_name, kwargs))


@dataclass
class World:
    """Our app and a simulated CPO, wired to each other through one in-process transport."""

    app: FastAPI
    cpo_app: FastAPI
    sim: CpoSimulator
    transport: RoutingTransport
    http: httpx.AsyncClient
    queue: RecordingQueue

    @property
    def context(self) -> OcpiContext:
        """Our OCPI context."""
        context: OcpiContext = self.app.state.ocpi_app.state.ocpi
        return context

    async def close(self) -> None:
        """Close the shared client."""
        await self.http.aclose()


def world(app: FastAPI, **cpo: Any) -> World:
    """Our app at VPP_URL and a sim CPO (manual clock, no random arrivals) at CPO_URL."""
    transport = RoutingTransport({"vpp.test": app})
    http = httpx.AsyncClient(transport=transport, timeout=10)
    config = CpoConfig(base_url=CPO_URL, auto_arrivals=False, seed=7, **cpo)
    cpo_app = create_cpo_app(config, http_client=http)
    transport.add("cpo.test", cpo_app)
    context: OcpiContext = app.state.ocpi_app.state.ocpi
    context.public_url = VPP_URL
    context.http_factory = lambda: httpx.AsyncClient(transport=transport, timeout=10)
    queue = RecordingQueue()
    context.task_queue = queue
    return World(app, cpo_app, get_simulator(cpo_app), transport, http, queue)


async def sim_registers_with_us(w: World, pepper: str, name: str = "sim") -> str:
    """The sim CPO registers with us using a token A we issued; returns the connection id."""
    with unit_of_work(w.context.session_factory) as session:
        row, token_a = connections.invite(session, name=name, pepper=pepper)
        connection_id = row.id
    await w.sim.register_with(f"{VPP_URL}/ocpi/versions", token_a)
    return connection_id
