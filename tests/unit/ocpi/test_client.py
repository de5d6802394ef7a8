"""OcpiClient against recorded-style answers through httpx.MockTransport."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from adapters.ocpi.v2_2_1.client import OcpiClient, Page
from adapters.ocpi.v2_2_1.schemas import (
    ChargingProfile,
    ChargingProfileResponseType,
    Credentials,
    Session,
    VersionDetails,
)
from adapters.ocpi.v2_2_1.transport import (
    OcpiAuthError,
    OcpiClientError,
    OcpiHttpError,
    OcpiMethodNotAllowed,
    OcpiNotFound,
    OcpiProtocolError,
    OcpiServerError,
    PartyRef,
    decode_token_header,
)

from .test_schemas import SESSION

CPO = "https://cpo.example/ocpi"
DETAILS = VersionDetails.model_validate(
    {
        "version": "2.2.1",
        "endpoints": [
            {"identifier": "credentials", "role": "SENDER", "url": f"{CPO}/2.2.1/credentials"},
            {"identifier": "sessions", "role": "SENDER", "url": f"{CPO}/2.2.1/sessions"},
            {"identifier": "chargingprofiles", "role": "RECEIVER", "url": f"{CPO}/2.2.1/chargingprofiles/"},
        ],
    }
)
PROFILE = ChargingProfile.model_validate(
    {"charging_rate_unit": "W", "charging_profile_period": [{"start_period": 0, "limit": 7400}]}
)
STAMP = "2026-01-01T00:00:00Z"

Handler = Callable[[httpx.Request], httpx.Response]


def envelope(data: Any = None, status_code: int = 1000, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"status_code": status_code, "timestamp": STAMP, **extra}
    if data is not None:
        body["data"] = data
    return body


def run(handler: Handler, test: Callable[[OcpiClient], Coroutine[Any, Any, None]]) -> None:
    async def main() -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            client = OcpiClient(
                http,
                versions_url=f"{CPO}/versions",
                token="token-c",
                details=DETAILS,
                own_party=PartyRef("NL", "VPP"),
                peer_party=PartyRef("NL", "CPO"),
            )
            await test(client)

    asyncio.run(main())


def session(index: int) -> dict[str, Any]:
    return {**SESSION, "id": f"S{index}"}


def test_requests_carry_base64_token_message_ids_and_routing_only_on_functional_modules() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.endswith("/versions"):
            return httpx.Response(200, json=envelope([{"version": "2.2.1", "url": f"{CPO}/2.2.1"}]))
        if request.url.path.endswith("/2.2.1"):
            return httpx.Response(200, json=envelope(DETAILS.to_json_dict()))
        return httpx.Response(200, json=envelope({"result": "ACCEPTED", "timeout": 30}))

    async def test(client: OcpiClient) -> None:
        await client.discover()
        await client.set_charging_profile("S1", PROFILE, "https://vpp/r/1", correlation_id="corr-1")

    run(handler, test)
    versions, _, put = seen
    assert versions.headers["Authorization"] == "Token dG9rZW4tYw=="
    assert decode_token_header(put.headers["Authorization"]) == "token-c"
    assert "OCPI-from-party-id" not in versions.headers
    assert put.headers["OCPI-from-party-id"] == "VPP"
    assert put.headers["OCPI-to-party-id"] == "CPO"
    assert put.headers["X-Correlation-ID"] == "corr-1"
    assert put.headers["X-Request-ID"] != versions.headers["X-Request-ID"]
    assert str(put.url) == f"{CPO}/2.2.1/chargingprofiles/S1"
    assert json.loads(put.content)["charging_profile"]["charging_profile_period"] == [
        {"start_period": 0, "limit": 7400.0}
    ]


def test_discover_refuses_a_peer_without_2_2_1() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=envelope([{"version": "2.1.1", "url": f"{CPO}/2.1.1"}]))

    async def test(client: OcpiClient) -> None:
        with pytest.raises(OcpiProtocolError) as failure:
            await client.discover()
        assert failure.value.status_code == 3002

    run(handler, test)


def test_version_details_wrapped_in_a_list_are_accepted() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=envelope([DETAILS.to_json_dict()]))

    async def test(client: OcpiClient) -> None:
        details = await client.get_version_details(f"{CPO}/2.2.1")
        assert details.endpoint_url("sessions") == f"{CPO}/2.2.1/sessions"

    run(handler, test)


@pytest.mark.parametrize(
    ("answer", "result"),
    [
        (httpx.Response(200, json=envelope({"result": "ACCEPTED", "timeout": 30})), "ACCEPTED"),
        (httpx.Response(200, json=envelope([{"result": "ACCEPTED", "timeout": 30}])), "ACCEPTED"),
        (httpx.Response(200, json=envelope({"result": "UNKNOWN_SESSION", "timeout": 0})), "UNKNOWN_SESSION"),
        (httpx.Response(200, json=envelope([{"result": "REJECTED", "timeout": 0}], 2000)), "REJECTED"),
        (httpx.Response(404, json=envelope({"result": "UNKNOWN_SESSION", "timeout": 0}, 2000)), "UNKNOWN_SESSION"),
        (httpx.Response(200, json=envelope({"result": "TOO_OFTEN", "timeout": 0, "retry": 60})), "TOO_OFTEN"),
    ],
)
def test_profile_answers_are_typed_whatever_envelope_carries_them(answer: httpx.Response, result: str) -> None:
    async def test(client: OcpiClient) -> None:
        response = await client.set_charging_profile("S1", PROFILE, "https://vpp/r/1")
        assert response.result == ChargingProfileResponseType(result)

    run(lambda _: answer, test)


@pytest.mark.parametrize(
    ("answer", "error", "status_code"),
    [
        (httpx.Response(503, text="Service Unavailable"), OcpiHttpError, None),
        (httpx.Response(500, json=envelope(None, 3000)), OcpiHttpError, 3000),
        (httpx.Response(401, json=envelope(None, 2000)), OcpiAuthError, 2000),
        (httpx.Response(403, text="forbidden"), OcpiAuthError, None),
        (httpx.Response(200, json=envelope(None, 2001, status_message="response_url missing")), OcpiClientError, 2001),
        (httpx.Response(400, json=envelope(None, 2003)), OcpiHttpError, 2003),
        (httpx.Response(200, text="<html>oops</html>"), OcpiProtocolError, None),
        (httpx.Response(200, json=envelope({"result": "MAYBE"})), OcpiProtocolError, 1000),
    ],
)
def test_profile_failures_raise_typed_errors_with_codes(
    answer: httpx.Response, error: type[Exception], status_code: int | None
) -> None:
    async def test(client: OcpiClient) -> None:
        with pytest.raises(error) as failure:
            await client.clear_charging_profile("S1", "https://vpp/r/1")
        assert getattr(failure.value, "status_code", None) == status_code

    run(lambda _: answer, test)


def test_get_active_profile_sends_duration_and_encoded_response_url() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=envelope({"result": "ACCEPTED", "timeout": 10}))

    async def test(client: OcpiClient) -> None:
        await client.get_active_charging_profile("S1", 900, "https://vpp/r/get/1?x=1")

    run(handler, test)
    query = parse_qs(seen[0].url.query.decode())
    assert query == {"duration": ["900"], "response_url": ["https://vpp/r/get/1?x=1"]}
    assert seen[0].method == "GET"


def test_credentials_exchange_switches_token_and_maps_405() -> None:
    calls: list[tuple[str, str | None]] = []
    theirs = {
        "token": "token-from-cpo",
        "url": f"{CPO}/versions",
        "roles": [{"role": "CPO", "business_details": {"name": "CPO"}, "party_id": "CPO", "country_code": "NL"}],
    }

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append((request.method, decode_token_header(request.headers["Authorization"])))
        if request.method == "POST" and len(calls) > 1:
            return httpx.Response(405, json=envelope(None, 2000))
        if request.method == "DELETE":
            return httpx.Response(200, json=envelope())
        return httpx.Response(200, json=envelope(theirs))

    async def test(client: OcpiClient) -> None:
        own = Credentials.model_validate({**theirs, "token": "token-b", "url": "https://vpp/versions"})
        result = await client.register(own)
        assert result.token == client.token == "token-from-cpo"
        with pytest.raises(OcpiMethodNotAllowed):
            await client.register(own)
        await client.unregister()

    run(handler, test)
    assert calls == [("POST", "token-c"), ("POST", "token-from-cpo"), ("DELETE", "token-from-cpo")]


def pages_handler(
    total: int,
    page_size: int,
    *,
    link: bool = True,
    empty_link: bool = False,
    count: bool = True,
    wrap_object: bool = False,
) -> tuple[Handler, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        params = parse_qs(request.url.query.decode())
        offset = int(params.get("offset", ["0"])[0])
        limit = min(int(params.get("limit", [str(page_size)])[0]), page_size)
        items = [session(i) for i in range(offset, min(offset + limit, total))]
        headers = {"X-Limit": str(page_size)}
        if count:
            headers["X-Total-Count"] = str(total)
        if link and offset + len(items) < total:
            headers["Link"] = f'<{CPO}/2.2.1/sessions?offset={offset + len(items)}&limit={limit}>; rel="next"'
        elif empty_link:
            headers["Link"] = ""
        data: Any = items[0] if wrap_object and len(items) == 1 else items
        return httpx.Response(200, json=envelope(data), headers=headers)

    return handler, seen


def pull_all(handler: Handler, **kwargs: Any) -> list[Page[Session]]:
    pages: list[Page[Session]] = []

    async def test(client: OcpiClient) -> None:
        async for page in client.pull_pages("sessions", Session, **kwargs):
            pages.append(page)

    run(handler, test)
    return pages


def test_pull_follows_link_headers_and_keeps_the_date_filter() -> None:
    handler, seen = pages_handler(total=5, page_size=2)
    pages = pull_all(handler, date_from=datetime(2026, 1, 1, tzinfo=UTC))
    assert [len(p.items) for p in pages] == [2, 2, 1]
    assert [s.id for p in pages for s in p.items] == ["S0", "S1", "S2", "S3", "S4"]
    assert parse_qs(seen[0].url.query.decode())["date_from"] == ["2026-01-01T00:00:00Z"]
    assert pages[0].info.total_count == 5
    assert len({r.headers["X-Correlation-ID"] for r in seen}) == 1


def test_pull_without_link_uses_total_count_and_honours_x_limit() -> None:
    handler, seen = pages_handler(total=5, page_size=2, link=False)
    pages = pull_all(handler, limit=100)
    assert sum(len(p.items) for p in pages) == 5
    assert [parse_qs(r.url.query.decode())["limit"] for r in seen[1:]] == [["2"], ["2"]]


def test_pull_without_link_or_count_continues_only_after_full_pages() -> None:
    handler, seen = pages_handler(total=4, page_size=2, link=False, count=False)
    pages = pull_all(handler)
    assert [len(p.items) for p in pages] == [2, 2, 0]
    assert len(seen) == 3


def test_pull_stops_on_an_empty_link_header() -> None:
    handler, seen = pages_handler(total=2, page_size=5, empty_link=True)
    pages = pull_all(handler)
    assert [len(p.items) for p in pages] == [2]
    assert len(seen) == 1


def test_pull_accepts_a_bare_object_for_a_one_item_page_and_skips_invalid_items() -> None:
    handler, _ = pages_handler(total=1, page_size=5, wrap_object=True)
    assert [s.id for p in pull_all(handler) for s in p.items] == ["S0"]

    def broken(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=envelope([session(0), {"id": "BROKEN"}, session(2)]))

    pages = pull_all(broken)
    assert [s.id for s in pages[0].items] == ["S0", "S2"]
    assert pages[0].received == 3


def test_pull_stops_when_a_link_points_back_at_the_same_page() -> None:
    def looping(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=envelope([session(0)]), headers={"Link": f'<{request.url}>; rel="next"'})

    assert len(pull_all(looping)) == 1


def test_pull_error_envelope_raises_server_error() -> None:
    def failing(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=envelope(None, 3000, status_message="db down"))

    with pytest.raises(OcpiServerError):
        pull_all(failing)


def test_network_failures_become_http_errors_and_missing_endpoints_are_reported() -> None:
    def unreachable(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    async def test(client: OcpiClient) -> None:
        with pytest.raises(OcpiHttpError):
            await client.get_versions()
        with pytest.raises(OcpiProtocolError) as missing:
            client.endpoint_url("cdrs")
        assert missing.value.status_code == 3003

    run(unreachable, test)


def test_not_found_is_typed() -> None:
    async def test(client: OcpiClient) -> None:
        with pytest.raises(OcpiNotFound):
            await client.get_credentials()

    run(lambda _: httpx.Response(404, text="nope"), test)
