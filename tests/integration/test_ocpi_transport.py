import re

from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.conftest import TEST_SECRET
from tests.integration.test_ocpi_support import connect, session_body, token_headers
from vpp.db import unit_of_work
from vpp.ocpi import service as connections
from vpp.ocpi.schemas import ConnectionFlags

SESSION_URL = "/ocpi/2.2.1/sessions/NL/CPA/S1"


def test_a_missing_or_unknown_token_is_http_401_in_the_ocpi_envelope(client: TestClient) -> None:
    for headers in ({}, token_headers("nope"), {"Authorization": "Bearer whatever"}):
        answer = client.get("/ocpi/versions", headers=headers)
        assert answer.status_code == 401
        assert answer.json()["status_code"] == 2000 and "timestamp" in answer.json()


def test_token_a_is_accepted_on_versions_and_credentials_only(app: FastAPI, client: TestClient) -> None:
    with unit_of_work(app.state.session_factory) as session:
        _row, token_a = connections.invite(session, name="x", pepper=TEST_SECRET)
    headers = token_headers(token_a)
    assert client.get("/ocpi/versions", headers=headers).status_code == 200
    assert client.get("/ocpi/2.2.1", headers=headers).json()["data"]["endpoints"]
    assert client.get(SESSION_URL, headers=headers).status_code == 401
    assert client.put(SESSION_URL, json=session_body(), headers=headers).status_code == 401


def test_tokens_are_accepted_base64_encoded_or_raw(app: FastAPI, client: TestClient) -> None:
    peer = connect(app.state.session_factory, TEST_SECRET)
    assert client.get("/ocpi/versions", headers=token_headers(peer.token)).status_code == 200
    assert client.get("/ocpi/versions", headers=token_headers(peer.token, raw=True)).status_code == 200


def test_request_and_correlation_ids_are_echoed(app: FastAPI, client: TestClient) -> None:
    peer = connect(app.state.session_factory, TEST_SECRET)
    ids = {"X-Request-ID": "4f1c2b1e-1111-4a4a-9b9b-000000000001", "X-Correlation-ID": "corr-42"}
    answer = client.get("/ocpi/versions", headers={**peer.headers, **ids})
    assert answer.headers["x-request-id"] == ids["X-Request-ID"]
    assert answer.headers["x-correlation-id"] == "corr-42"


def test_timestamps_are_utc_with_z_and_at_most_three_decimals(app: FastAPI, client: TestClient) -> None:
    peer = connect(app.state.session_factory, TEST_SECRET)
    stamp = client.get("/ocpi/versions", headers=peer.headers).json()["timestamp"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,3})?Z", stamp)


def test_invalid_json_is_http_400_in_the_ocpi_envelope(app: FastAPI, client: TestClient) -> None:
    peer = connect(app.state.session_factory, TEST_SECRET)
    for content_type in ("application/json", "text/plain", None):
        headers = {**peer.headers, **({"Content-Type": content_type} if content_type else {})}
        answer = client.put(SESSION_URL, content=b'{"id": "S1",', headers=headers)
        assert answer.status_code == 400, content_type
        assert answer.json()["status_code"] == 2001


def test_a_schema_violation_is_2001_naming_the_field(app: FastAPI, client: TestClient) -> None:
    peer = connect(app.state.session_factory, TEST_SECRET)
    body = session_body()
    body["kwh"] = "lots"
    answer = client.put(SESSION_URL, json=body, headers=peer.headers)
    assert answer.status_code == 200 and answer.json()["status_code"] == 2001
    assert "kwh" in answer.json()["status_message"]


def test_unknown_json_fields_are_ignored(app: FastAPI, client: TestClient) -> None:
    peer = connect(app.state.session_factory, TEST_SECRET)
    answer = client.put(SESSION_URL, json=session_body(vendor_extension={"x": 1}), headers=peer.headers)
    assert answer.status_code == 201 and answer.json()["status_code"] == 1000


def test_unmatched_ocpi_paths_answer_in_the_envelope_while_api_keeps_its_shape(
    app: FastAPI, client: TestClient
) -> None:
    peer = connect(app.state.session_factory, TEST_SECRET)
    missing = client.get("/ocpi/2.2.1/tariffs", headers=peer.headers)
    assert missing.status_code == 404 and missing.json()["status_code"] == 2000
    not_allowed = client.post(SESSION_URL, json={}, headers=peer.headers)
    assert not_allowed.status_code == 405 and "status_code" in not_allowed.json()
    api = client.get("/api/v1/nothing")
    assert api.status_code == 404 and api.json()["error"]["code"] == "not_found"
    assert client.get("/api/v1/sessions", headers=peer.headers).status_code == 401


def test_a_trailing_slash_is_accepted(app: FastAPI, client: TestClient) -> None:
    peer = connect(app.state.session_factory, TEST_SECRET)
    assert client.get("/ocpi/2.2.1/", headers=peer.headers).status_code == 200
    assert client.put(SESSION_URL + "/", json=session_body(), headers=peer.headers).status_code == 201


def test_functional_answers_carry_routing_headers(app: FastAPI, client: TestClient) -> None:
    peer = connect(app.state.session_factory, TEST_SECRET)
    routed = {"OCPI-from-country-code": "NL", "OCPI-from-party-id": "CPA"}
    answer = client.put(SESSION_URL, json=session_body(), headers={**peer.headers, **routed})
    assert answer.headers["ocpi-to-party-id"] == "CPA" and answer.headers["ocpi-from-party-id"] == "VPP"


def test_a_flooding_connection_gets_429_while_another_still_passes(app: FastAPI, client: TestClient) -> None:
    flags = ConnectionFlags(rate_limit_per_s=1, rate_limit_burst=5)
    flooder = connect(app.state.session_factory, TEST_SECRET, name="flooder", flags=flags)
    calm = connect(app.state.session_factory, TEST_SECRET, name="calm", parties=[("NL", "CPB")])
    statuses = [client.get("/ocpi/2.2.1/sessions/NL/CPA/x", headers=flooder.headers).status_code for _ in range(8)]
    assert statuses[:5] == [404] * 5 and set(statuses[5:]) == {429}
    limited = client.get("/ocpi/2.2.1/sessions/NL/CPA/x", headers=flooder.headers)
    assert limited.json()["status_code"] == 2000 and int(limited.headers["retry-after"]) >= 1
    assert client.get("/ocpi/2.2.1/sessions/NL/CPB/x", headers=calm.headers).status_code == 404


def test_ocpi_requests_are_counted_by_module_method_and_status(app: FastAPI, client: TestClient) -> None:
    peer = connect(app.state.session_factory, TEST_SECRET)
    client.put(SESSION_URL, json=session_body(), headers=peer.headers)
    text = client.get("/metrics").text
    assert 'vpp_ocpi_requests_total{method="PUT",module="sessions",status="1000"}' in text
    assert 'vpp_ocpi_sessions_active{cpo="cpo"} 1.0' in text
    assert 'route="/ocpi/2.2.1/sessions/{country_code}/{party_id}/{session_id}"' in text
