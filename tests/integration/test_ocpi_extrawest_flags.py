"""The connection flags that tolerate extrawest-ocpi's quirks, without the peer (it runs in the interop test)."""

from __future__ import annotations

import asyncio
import json

import httpx
from fastapi import FastAPI, Response
from fastapi.testclient import TestClient

from adapters.ocpi.v2_2_1.client import OcpiClient, OcpiError
from adapters.ocpi.v2_2_1.schemas import Endpoint, InterfaceRole, ModuleID, Session, VersionDetails
from adapters.ocpi.v2_2_1.transport import ocpi_response
from tests.conftest import TEST_SECRET
from tests.integration.test_ocpi_support import connect, session_body
from vpp.ocpi.schemas import ConnectionFlags


def _advertised(client: TestClient, headers: dict[str, str]) -> dict[str, str]:
    answer = client.get("/ocpi/2.2.1", headers=headers).json()
    return {e["identifier"]: e["url"] for e in answer["data"]["endpoints"]}


def test_trailing_slash_urls_advertises_module_urls_a_peer_can_append_to(app: FastAPI) -> None:
    factory = app.state.session_factory
    plain = connect(factory, TEST_SECRET, name="plain")
    slashed = connect(factory, TEST_SECRET, name="slashed", parties=(("NL", "CPO"),),
                      flags=ConnectionFlags(trailing_slash_urls=True))
    with TestClient(app) as client:
        assert _advertised(client, plain.headers)["sessions"].endswith("/ocpi/2.2.1/sessions")
        sessions_url = _advertised(client, slashed.headers)["sessions"]
        assert sessions_url.endswith("/ocpi/2.2.1/sessions/")
        # What the peer then does: append CC/PID/id to the advertised URL.
        path = httpx.URL(sessions_url + "NL/CPO/S1").path
        answer = client.put(path, headers=slashed.headers,
                            json=session_body("S1", country_code="NL", party_id="CPO"))
    assert (answer.status_code, answer.json()["status_code"]) == (201, 1000)


def _paged_cpo(total: int) -> FastAPI:
    """A Sender list whose Link points somewhere unusable, as extrawest-ocpi 2025.7's does."""
    fake = FastAPI()
    items = [session_body(f"S{i}") for i in range(total)]

    @fake.get("/sessions")
    def sessions(offset: int = 0, limit: int = 2) -> Response:
        page = items[offset:offset + limit]
        headers = {"X-Total-Count": str(total), "X-Limit": str(limit)}
        if offset + limit < total:
            headers["Link"] = '<https://cpo.test/ocpi/cpo/VersionNumber.v_2_2_1/ModuleID.sessions/?date_to=None>; ' \
                              'rel="next"'
        return Response(content=json.dumps(ocpi_response(page)), headers=headers,
                        media_type="application/json")

    return fake


def _pull(follow_links: bool) -> list[str] | str:
    details = VersionDetails(version="2.2.1", endpoints=[
        Endpoint(identifier=ModuleID.SESSIONS, role=InterfaceRole.SENDER, url="http://cpo.test/sessions")])

    async def run() -> list[str] | str:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=_paged_cpo(5))) as http:
            client = OcpiClient(http, versions_url="http://cpo.test/versions", token="t", details=details,
                                page_limit=2, follow_links=follow_links)
            ids: list[str] = []
            try:
                async for page in client.pull_pages(ModuleID.SESSIONS, Session):
                    ids += [item.id for item in page.items]
            except OcpiError as exc:
                return type(exc).__name__
            return ids

    return asyncio.run(run())


def test_ignore_link_header_pages_by_offset_and_total_count() -> None:
    assert _pull(follow_links=False) == ["S0", "S1", "S2", "S3", "S4"]
    # Following it leads nowhere: the link's path names enum members.
    assert _pull(follow_links=True) == "OcpiNotFound"
