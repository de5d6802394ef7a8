"""Hostile HTTP input at the edge: each gets a clear 4xx with a reason (never a 500), and nothing is written.

Every test runs on SQLite and on PostgreSQL (which refuses NUL and integers beyond 64 bits outright).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from vpp.api.deps import MAX_OFFSET
from vpp.api.middleware import MAX_BODY_BYTES
from vpp.observability import request_id_var


def _sites(client: TestClient, headers: dict[str, str]) -> list[str]:
    return [p["pool"] for p in client.get("/api/v1/portfolio/pools", headers=headers).json()
            if p["pool"].startswith("site:")]


def test_an_offset_beyond_the_bound_is_refused_with_422_not_a_database_error(
    client: TestClient, trader_headers: dict[str, str]
) -> None:
    for path in ("/api/v1/sessions", "/api/v1/ui/pools/zone:NL/sessions"):
        huge = client.get(path, params={"offset": "837450211191931670112988299264"}, headers=trader_headers)
        assert huge.status_code == 422, huge.text
        assert huge.json()["error"]["details"][0]["loc"] == ["query", "offset"]
        assert client.get(path, params={"offset": MAX_OFFSET}, headers=trader_headers).status_code == 200
        assert client.get(path, params={"offset": MAX_OFFSET + 1}, headers=trader_headers).status_code == 422


def test_a_huge_page_size_is_refused_with_the_bound_in_the_reason(
    client: TestClient, trader_headers: dict[str, str]
) -> None:
    for path in ("/api/v1/sessions", "/api/v1/bids", "/api/v1/congestion/messages", "/api/v1/congestion/orders"):
        answer = client.get(path, params={"limit": 10**30}, headers=trader_headers)
        assert answer.status_code == 422, (path, answer.text)
        assert "less than or equal to 1000" in answer.json()["error"]["message"]


class _RequestIds(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, str | None]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.append((record.getMessage(), request_id_var.get()))


@pytest.fixture
def logged() -> Iterator[_RequestIds]:
    handler = _RequestIds()
    logger = logging.getLogger("vpp.api")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def test_an_unhandled_error_answers_500_with_the_request_id_the_log_line_carries(
    app: FastAPI, logged: _RequestIds
) -> None:
    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("broken on purpose")

    with TestClient(app, raise_server_exceptions=False) as client:
        answer = client.get("/boom")
        given = client.get("/boom", headers={"X-Request-ID": "trace-me-1"})
    assert answer.status_code == 500
    body = answer.json()
    assert body["error"]["code"] == "internal_error" and "broken" not in answer.text
    assert body["request_id"] and body["request_id"] == answer.headers["x-request-id"]
    assert ("unhandled error", body["request_id"]) in logged.seen
    assert given.json()["request_id"] == "trace-me-1" and ("unhandled error", "trace-me-1") in logged.seen


def test_a_body_over_the_limit_is_413_and_nothing_is_written(client: TestClient, admin_headers: dict[str, str]) -> None:
    big = '{"name": "' + "x" * MAX_BODY_BYTES + '"}'
    declared = client.put("/api/v1/portfolio/sites/big", content=big,
                          headers={**admin_headers, "Content-Type": "application/json"})
    assert declared.status_code == 413, declared.text
    assert declared.json()["error"]["code"] == "content_too_large" and declared.json()["request_id"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield b'{"name": "'
        for _ in range(MAX_BODY_BYTES // 65536 + 1):
            yield b"x" * 65536
        yield b'"}'

    streamed = client.put("/api/v1/portfolio/sites/big", content=chunks(),
                          headers={**admin_headers, "Content-Type": "application/json"})
    assert streamed.status_code == 413, streamed.text
    assert "site:big" not in _sites(client, admin_headers)


def test_malformed_and_deeply_nested_json_are_400_with_the_reason_and_nothing_is_written(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    headers = {**admin_headers, "Content-Type": "application/json"}
    broken = client.put("/api/v1/portfolio/sites/broken", content=b'{"name": "x",', headers=headers)
    assert broken.status_code == 400
    assert broken.json()["error"]["code"] == "malformed_json"
    deep = client.put("/api/v1/portfolio/sites/deep/load", content=b"[" * 100_000 + b"]" * 100_000,
                      headers=headers)
    assert deep.status_code == 400, deep.text
    assert deep.json()["error"]["code"] == "malformed_json" and "nested" in deep.json()["error"]["message"]
    nested = client.put("/api/v1/portfolio/sites/nested", content=b'{"name": ' + b"[" * 500 + b"]" * 500 + b"}",
                        headers=headers)
    assert nested.status_code == 422
    assert _sites(client, admin_headers) == []


def test_unicode_and_nul_in_ids_are_not_found_never_a_server_error(
    client: TestClient, trader_headers: dict[str, str]
) -> None:
    for session_id in ("✓😀", "ünïcødé-ïd", "a%00b", "%00"):
        answer = client.get(f"/api/v1/sessions/{session_id}", headers=trader_headers)
        assert answer.status_code == 404, (session_id, answer.text)
        assert answer.json()["request_id"]
    nul_filter = client.get("/api/v1/sessions", params={"location": "a\x00b"}, headers=trader_headers)
    assert nul_filter.status_code == 422
    pool = client.get("/api/v1/bids", params={"pool": "zone:N\x00L"}, headers=trader_headers)
    assert pool.status_code == 422


def test_numbers_dates_and_names_are_what_the_document_says(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    def put_load(point: dict[str, object]) -> int:
        return client.put("/api/v1/portfolio/sites/s1/load", json=[point], headers=admin_headers).status_code

    assert client.put("/api/v1/portfolio/sites/s1", json={"name": "Depot"}, headers=admin_headers).status_code == 200
    assert put_load({"isp_start": "2025-06-01T00:00:00Z", "load_kw": False}) == 422
    assert put_load({"isp_start": "2025-06-01T00:00:00Z", "load_kw": "12"}) == 422
    assert put_load({"isp_start": 0, "load_kw": 12}) == 422
    assert put_load({"isp_start": "2025-06-01T00:00:00", "load_kw": 12}) == 422
    assert put_load({"isp_start": "2025-06-01T00:00:00Z", "load_kw": 12}) == 200
    blank = client.post("/api/v1/apikeys", json={"name": "\u001c ", "role": "trader"}, headers=admin_headers)
    assert blank.status_code == 422 and blank.json()["error"]["details"][0]["loc"] == ["body", "name"]
    numeric_time = client.get("/api/v1/congestion/messages", params={"until": "0.5"}, headers=admin_headers)
    assert numeric_time.status_code == 422


def test_a_key_request_takes_a_date_time_and_an_integer_as_the_document_says(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    # Schemathesis at 100 examples found POST /api/v1/apikeys accepting what its schema refuses: a Unix number
    # as expires_at, a numeric string or a boolean as rate_limit_per_minute. Refused, and no key is made.
    def create(extra: dict[str, object]) -> int:
        body = {"name": "probe", "role": "trader", **extra}
        return client.post("/api/v1/apikeys", json=body, headers=admin_headers).status_code

    before = len(client.get("/api/v1/apikeys", headers=admin_headers).json())
    for bad in ({"expires_at": 4102444800}, {"expires_at": "4102444800"}, {"expires_at": "2100-01-01T00:00:00"},
                {"rate_limit_per_minute": "60"}, {"rate_limit_per_minute": True},
                {"rate_limit_per_minute": 60.5}, {"rate_limit_per_minute": 0},
                {"rate_limit_per_minute": 10_000_001}):
        assert create(bad) == 422, bad
    assert len(client.get("/api/v1/apikeys", headers=admin_headers).json()) == before
    assert create({"expires_at": "2100-01-01T00:00:00Z", "rate_limit_per_minute": 60.0}) == 201


def test_options_and_undeclared_methods_answer_with_every_allowed_method(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    options = client.options("/api/v1/apikeys")
    assert options.status_code == 204
    assert options.headers["allow"] == "GET, POST, OPTIONS"
    need = client.options("/api/v1/sessions/abc/charging-need")
    assert need.headers["allow"] == "GET, PUT, OPTIONS"
    trace = client.request("TRACE", "/api/v1/bids/some-bid", headers=admin_headers)
    assert trace.status_code == 405 and trace.headers["allow"] == "GET, PATCH, OPTIONS"
    run = client.get("/api/v1/settlement/days/2025-06-01/run", headers=admin_headers)
    assert run.status_code == 405 and run.headers["allow"] == "POST, OPTIONS"
    assert client.options("/no/such/path").status_code == 404


def test_a_dso_limit_over_a_month_is_refused_before_anything_is_built(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    answer = client.post("/api/v1/dso/curtailments", headers=admin_headers, json={
        "devices": ["site:a"], "start": "0096-08-11T09:44:32Z", "end": "2026-01-01T00:00:00Z",
        "max_kw_per_device": 5.0})
    assert answer.status_code == 422 and "31 days" in answer.json()["error"]["message"]
