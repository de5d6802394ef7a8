"""Transport helpers: timestamps, tokens, envelopes, pagination headers, routing and URL joining."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from adapters.ocpi.v2_2_1.schemas import ChargingProfileResponse, ChargingProfileResponseType
from adapters.ocpi.v2_2_1.transport import (
    OcpiClientError,
    OcpiHubError,
    OcpiServerError,
    OcpiStatus,
    PageInfo,
    PartyRef,
    Routing,
    authorization_header,
    decode_token_header,
    encode_token,
    ensure_list,
    error_for_status,
    format_datetime,
    is_success,
    join_url,
    match_token,
    ocpi_response,
    pagination_headers,
    parse_datetime,
    parse_link_header,
    routing_headers,
    token_candidates,
    unwrap_single,
    with_query,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "2026-01-02T03:04:05Z"),
        (datetime(2026, 1, 2, 3, 4, 5, 999999, tzinfo=UTC), "2026-01-02T03:04:05.999Z"),
        (datetime(2026, 1, 2, 3, 4, 5, 1000, tzinfo=UTC), "2026-01-02T03:04:05.001Z"),
        (datetime(2026, 1, 2, 4, 4, 5, tzinfo=timezone(timedelta(hours=1))), "2026-01-02T03:04:05Z"),
        (datetime(2026, 1, 2, 3, 4, 5), "2026-01-02T03:04:05Z"),
    ],
)
def test_format_datetime_emits_utc_with_z_and_at_most_three_decimals(value: datetime, expected: str) -> None:
    assert format_datetime(value) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2015-06-29T20:39:09Z", datetime(2015, 6, 29, 20, 39, 9, tzinfo=UTC)),
        ("2015-06-29T20:39:09", datetime(2015, 6, 29, 20, 39, 9, tzinfo=UTC)),
        ("2015-06-29T20:39:09.2Z", datetime(2015, 6, 29, 20, 39, 9, 200000, tzinfo=UTC)),
        ("2015-06-29T20:39:09.123456789Z", datetime(2015, 6, 29, 20, 39, 9, 123456, tzinfo=UTC)),
        ("2015-06-29T22:39:09+02:00", datetime(2015, 6, 29, 20, 39, 9, tzinfo=UTC)),
        ("2015-06-29T20:39:09+00:00", datetime(2015, 6, 29, 20, 39, 9, tzinfo=UTC)),
        ("2015-06-29T18:39:09-0200", datetime(2015, 6, 29, 20, 39, 9, tzinfo=UTC)),
        ("2015-06-29 20:39:09z", datetime(2015, 6, 29, 20, 39, 9, tzinfo=UTC)),
        ("2015-06-29T20:39Z", datetime(2015, 6, 29, 20, 39, tzinfo=UTC)),
        ("1970-1-1T00:00:00Z", datetime(1970, 1, 1, tzinfo=UTC)),
    ],
)
def test_parse_datetime_is_lenient_and_always_returns_aware_utc(text: str, expected: datetime) -> None:
    parsed = parse_datetime(text)
    assert parsed == expected
    assert parsed.utcoffset() == timedelta(0)


@pytest.mark.parametrize("text", ["", "yesterday", "2015-06-29", "29-06-2015T20:39:09Z"])
def test_parse_datetime_rejects_garbage(text: str) -> None:
    with pytest.raises(ValueError):
        parse_datetime(text)


def test_encode_token_is_plain_base64_without_the_spec_examples_newline() -> None:
    assert encode_token("example-token") == "ZXhhbXBsZS10b2tlbg=="
    assert authorization_header("example-token") == "Token ZXhhbXBsZS10b2tlbg=="
    assert authorization_header("example-token", raw=True) == "Token example-token"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Token ZXhhbXBsZS10b2tlbg==", "example-token"),
        ("Token ZXhhbXBsZS10b2tlbgo=", "example-token"),  # the spec example: base64 of token + "\n"
        ("Token example-token", "example-token"),
        ("token   ZXhhbXBsZS10b2tlbg==", "example-token"),
        ("Bearer ZXhhbXBsZS10b2tlbg==", "example-token"),
        ("Token 5b2c1f0e-2b87-4a4a-9f0e-1d2c3b4a5f60", "5b2c1f0e-2b87-4a4a-9f0e-1d2c3b4a5f60"),
        (None, None),
        ("", None),
        ("Token ", None),
    ],
)
def test_decode_token_header_accepts_base64_or_raw(header: str | None, expected: str | None) -> None:
    assert decode_token_header(header) == expected


def test_a_raw_token_that_looks_like_base64_still_matches_a_stored_token() -> None:
    raw = "abcd1234ABCD"  # valid base64 alphabet and length, decodes to non-printable bytes
    assert match_token(f"Token {raw}", {raw: 1}) == raw
    plausible = "dGVzdA=="  # raw token that also decodes to "test"
    assert token_candidates(f"Token {plausible}") == ("test", plausible)
    assert match_token(f"Token {plausible}", {plausible: 1}) == plausible
    assert match_token("Token nope", {"other": 1}) is None


def test_envelope_builder_omits_data_when_none_and_serialises_models() -> None:
    stamp = datetime(2026, 1, 1, tzinfo=UTC)
    assert ocpi_response(timestamp=stamp) == {"status_code": 1000, "timestamp": "2026-01-01T00:00:00Z"}
    body = ocpi_response(
        ChargingProfileResponse(result=ChargingProfileResponseType.ACCEPTED, timeout=30), timestamp=stamp
    )
    assert body["data"] == {"result": "ACCEPTED", "timeout": 30}
    assert ocpi_response([], include_data=True, timestamp=stamp)["data"] == []
    error = ocpi_response(None, 2001, "last_updated missing", timestamp=stamp)
    assert error["status_message"] == "last_updated missing"


def test_status_codes_map_to_typed_errors() -> None:
    assert is_success(1000)
    assert is_success(1901)
    assert not is_success(2000)
    assert isinstance(error_for_status(OcpiStatus.INVALID_OR_MISSING_PARAMETERS, "x"), OcpiClientError)
    assert isinstance(error_for_status(OcpiStatus.UNSUPPORTED_VERSION, "x"), OcpiServerError)
    assert isinstance(error_for_status(OcpiStatus.UNKNOWN_RECEIVER, "x"), OcpiHubError)
    error = error_for_status(3001, "cannot reach you", http_status=200)
    assert (error.status_code, error.http_status, error.message) == (3001, 200, "cannot reach you")


def test_unwrap_and_ensure_list_tolerate_peer_shapes() -> None:
    assert unwrap_single([{"a": 1}]) == {"a": 1}
    assert unwrap_single({"a": 1}) == {"a": 1}
    assert unwrap_single([1, 2]) == [1, 2]
    assert ensure_list(None) == []
    assert ensure_list({"a": 1}) == [{"a": 1}]


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ('<https://cpo/sessions?offset=50&limit=50>; rel="next"', "https://cpo/sessions?offset=50&limit=50"),
        ("<https://cpo/s?offset=5>; rel=next", "https://cpo/s?offset=5"),
        ('<https://cpo/s?p=1>; rel="prev", <https://cpo/s?p=3>; rel="next"', "https://cpo/s?p=3"),
        ("", None),
        ('<>; rel="next"', None),
        ("garbage", None),
    ],
)
def test_link_header_parsing(header: str, expected: str | None) -> None:
    assert parse_link_header(header).get("next") == expected


def test_page_info_reads_counts_case_insensitively_and_ignores_bad_numbers() -> None:
    info = PageInfo.from_headers({"Link": '<https://x?offset=2>; rel="next"', "X-Total-Count": "7", "X-Limit": "x"})
    assert info == PageInfo(next_url="https://x?offset=2", total_count=7, limit=None)


def test_pagination_headers_keep_filters_and_stop_on_the_last_page() -> None:
    url = "https://cpo/sessions?date_from=2026-01-01T00:00:00Z&offset=0&limit=2"
    headers = pagination_headers(url, offset=0, limit=2, returned=2, total_count=5, max_limit=50)
    next_url = parse_link_header(headers["Link"])["next"]
    assert "date_from=2026-01-01T00:00:00Z" in next_url
    assert "offset=2" in next_url
    assert "limit=2" in next_url
    assert headers["X-Total-Count"] == "5"
    assert headers["X-Limit"] == "50"
    last = pagination_headers(url, offset=4, limit=2, returned=1, total_count=5, max_limit=50)
    assert "Link" not in last


def test_routing_headers_and_reply_swap() -> None:
    vpp, cpo = PartyRef.parse("nl/vpp"), PartyRef.parse("NL-CPA")
    headers = routing_headers(vpp, cpo)
    assert headers == {
        "OCPI-from-country-code": "NL",
        "OCPI-from-party-id": "VPP",
        "OCPI-to-country-code": "NL",
        "OCPI-to-party-id": "CPA",
    }
    routing = Routing.from_headers(headers)
    assert routing.reply_headers()["OCPI-from-party-id"] == "CPA"
    assert Routing.from_headers({}).sender is None
    assert PartyRef("nl", "cpa").same_as(cpo)
    with pytest.raises(ValueError):
        PartyRef.parse("NLD/CP")


@pytest.mark.parametrize(
    ("base", "segments", "expected"),
    [
        ("https://cpo/ocpi/2.2.1/sessions", ("NL", "CPA", "S1"), "https://cpo/ocpi/2.2.1/sessions/NL/CPA/S1"),
        ("https://cpo/ocpi/2.2.1/sessions/", ("NL", "CPA", "S1"), "https://cpo/ocpi/2.2.1/sessions/NL/CPA/S1"),
        ("https://cpo/cp/", ("/S1",), "https://cpo/cp/S1"),
        ("https://cpo/cp?x=1", ("S1",), "https://cpo/cp/S1?x=1"),
    ],
)
def test_join_url_copes_with_trailing_slashes(base: str, segments: tuple[str, ...], expected: str) -> None:
    assert join_url(base, *segments) == expected


def test_with_query_appends_parameters() -> None:
    assert with_query("https://x/a?b=1", {"c": 2, "d": None}) == "https://x/a?b=1&c=2"
