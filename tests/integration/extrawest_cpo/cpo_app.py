"""An in-memory CPO built on extrawest-ocpi 2025.7.16, for tests/integration/test_ocpi_extrawest_interop.py.

Runs only in the peer's own venv (pydantic 1): ``python cpo_app.py PORT TOKEN_A``. The test sets OCPI_HOST,
PROTOCOL, COUNTRY_CODE, PARTY_ID and CI_STRING_LOWERCASE_PREFERENCE in the environment (the library reads
them at import time). The library serves versions, credentials, sessions, locations, cdrs, chargingprofiles
and its HTTP push helper; this file only adds what the library leaves to its user:

* ``Store``: the CRUD storage (dicts), ``Tokens``: the token lists its authenticator checks;
* ``/shim/...``: test controls without authentication (put a session, list registrations, reset, and register
  with an SCSP as credentials Sender, which the library has no client for).
"""

from __future__ import annotations

import base64
import secrets
import sys
from datetime import datetime
from typing import Any

import httpx
import uvicorn
from fastapi import APIRouter, HTTPException
from py_ocpi import get_application
from py_ocpi.core.authentication.authenticator import Authenticator
from py_ocpi.core.config import settings
from py_ocpi.core.crud import Crud
from py_ocpi.core.enums import Action, ModuleID, RoleEnum
from py_ocpi.modules.credentials.v_2_2_1.schemas import Credentials
from py_ocpi.modules.sessions.v_2_2_1.schemas import Session
from py_ocpi.modules.versions.enums import VersionNumber

PORT = int(sys.argv[1])
TOKEN_A = sys.argv[2]
VERSIONS_URL = f"{settings.PROTOCOL}://{settings.OCPI_HOST}/{settings.OCPI_PREFIX}/versions"

# token we accept (C, or B when we registered with the peer) -> the peer's credentials and endpoints
registrations: dict[str, dict[str, Any]] = {}
sessions: dict[str, dict[str, Any]] = {}


def own_credentials(token: str) -> dict[str, Any]:
    return {
        "token": token,
        "url": VERSIONS_URL,
        "roles": [{
            "role": "CPO", "business_details": {"name": "extrawest CPO"},
            "party_id": settings.PARTY_ID, "country_code": settings.COUNTRY_CODE,
        }],
    }


def _instant(value: Any) -> datetime:
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


class Tokens(Authenticator):
    @classmethod
    async def get_valid_token_c(cls) -> list[str]:
        return list(registrations)

    @classmethod
    async def get_valid_token_a(cls) -> list[str]:
        return [TOKEN_A]


class Store(Crud):
    @classmethod
    async def get(cls, module: ModuleID, role: RoleEnum, id: Any, *args: Any, **kwargs: Any) -> Any:
        if module == ModuleID.credentials_and_registration:
            return own_credentials(id) if id in registrations else None
        if module == ModuleID.sessions:
            return sessions.get(id)
        return None

    @classmethod
    async def list(cls, module: ModuleID, role: RoleEnum, filters: dict, *args: Any, **kwargs: Any) -> Any:
        items = list(sessions.values()) if module == ModuleID.sessions else []
        if filters.get("date_from"):
            items = [i for i in items if _instant(i["last_updated"]) >= filters["date_from"]]
        if filters.get("date_to"):
            items = [i for i in items if _instant(i["last_updated"]) < filters["date_to"]]
        items.sort(key=lambda i: _instant(i["last_updated"]))
        offset, limit = filters["offset"], filters["limit"]
        return items[offset:offset + limit], len(items), offset + limit >= len(items)

    @classmethod
    async def create(cls, module: ModuleID, role: RoleEnum, data: dict, *args: Any, **kwargs: Any) -> Any:
        if module != ModuleID.credentials_and_registration:
            return data
        token_c = secrets.token_urlsafe(24)
        registrations[token_c] = data
        return own_credentials(token_c)

    @classmethod
    async def update(cls, module: ModuleID, role: RoleEnum, data: dict, id: Any, *args: Any, **kwargs: Any) -> Any:
        if module != ModuleID.credentials_and_registration:
            return data
        registrations.pop(kwargs.get("auth_token") or "", None)
        token_c = secrets.token_urlsafe(24)
        registrations[token_c] = data
        return own_credentials(token_c)

    @classmethod
    async def delete(cls, module: ModuleID, role: RoleEnum, id: Any, *args: Any, **kwargs: Any) -> None:
        if module == ModuleID.credentials_and_registration:
            registrations.pop(id, None)

    @classmethod
    async def do(cls, module: ModuleID, role: Any, action: Action, *args: Any, data: Any = None, **kwargs: Any) -> Any:
        if action == Action.get_client_token:
            first = next(iter(registrations.values()), None)
            return first["credentials"]["token"] if first else None
        if action == Action.send_update_charging_profile:
            return {"result": "ACCEPTED", "timeout": 30}
        return None


shim = APIRouter(prefix="/shim")


@shim.put("/sessions/{session_id}")
async def put_session(session_id: str, body: dict[str, Any]) -> dict[str, Any]:
    sessions[session_id] = Session(**body).dict()
    return {"stored": session_id}


@shim.get("/registrations")
async def list_registrations() -> list[dict[str, Any]]:
    return [{"token": token, **data} for token, data in registrations.items()]


@shim.post("/reset")
async def reset() -> dict[str, bool]:
    registrations.clear()
    sessions.clear()
    return {"reset": True}


@shim.post("/register")
async def register_with(body: dict[str, Any]) -> dict[str, Any]:
    """Register as credentials Sender with the peer at body.versions_url, presenting body.token_a."""
    token_b = secrets.token_urlsafe(24)
    registrations[token_b] = {"credentials": None, "endpoints": None}
    with_a = {"Authorization": "Token " + base64.b64encode(body["token_a"].encode()).decode()}
    async with httpx.AsyncClient(timeout=10) as client:
        versions = (await client.get(body["versions_url"], headers=with_a)).json()["data"]
        details_url = next(v["url"] for v in versions if v["version"] == VersionNumber.v_2_2_1.value)
        details = (await client.get(details_url, headers=with_a)).json()["data"]
        credentials_url = next(e["url"] for e in details["endpoints"] if e["identifier"] == "credentials")
        ours = Credentials(**own_credentials(token_b)).dict()
        answer = (await client.post(credentials_url, headers=with_a, json=ours)).json()
    if answer.get("status_code") != 1000:
        registrations.pop(token_b, None)
        raise HTTPException(502, f"registration refused: {answer}")
    theirs = Credentials(**answer["data"]).dict()
    registrations[token_b] = {"credentials": theirs, "endpoints": details}
    return {"token_b": token_b, "credentials": theirs}


app = get_application(
    version_numbers=[VersionNumber.v_2_2_1],
    roles=[RoleEnum.cpo],
    crud=Store,
    modules=[
        ModuleID.credentials_and_registration, ModuleID.locations, ModuleID.sessions, ModuleID.cdrs,
        ModuleID.charging_profile,
    ],
    authenticator=Tokens,
    http_push=True,
)
app.include_router(shim)

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=PORT, log_level="warning")
