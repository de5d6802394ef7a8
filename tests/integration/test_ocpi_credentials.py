import asyncio
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from adapters.ocpi.v2_2_1 import registration
from adapters.ocpi.v2_2_1.transport import ocpi_response
from tests.conftest import TEST_SECRET
from tests.integration.test_ocpi_support import CPO_URL, VPP_URL, connect, token_headers, world
from vpp.db import unit_of_work
from vpp.domain.errors import ServiceUnavailable
from vpp.ocpi import service as connections


def _connection(app: FastAPI, connection_id: str) -> Any:
    with unit_of_work(app.state.session_factory) as session:
        row = connections.get_or_raise(session, connection_id)
        session.expunge(row)
        return row


def test_a_cpo_registers_with_us_with_token_a_and_then_calls_us_with_token_c(app: FastAPI) -> None:
    w = world(app)

    async def run() -> dict[str, Any]:
        with unit_of_work(app.state.session_factory) as session:
            row, token_a = connections.invite(session, name="sim", pepper=TEST_SECRET)
        peer = await w.sim.register_with(f"{VPP_URL}/ocpi/versions", token_a)
        token_c = peer.outgoing_token
        checks = {
            "token_c_sessions": (await w.http.get(f"{VPP_URL}/ocpi/2.2.1/sessions/NL/CPA/nope",
                                                  headers=token_headers(token_c))).status_code,
            "token_a_versions": (await w.http.get(f"{VPP_URL}/ocpi/versions",
                                                  headers=token_headers(token_a))).status_code,
            "credentials": (await w.http.get(f"{VPP_URL}/ocpi/2.2.1/credentials",
                                             headers=token_headers(token_c))).json(),
            "connection_id": row.id,
            "token_c": token_c,
        }
        await w.close()
        return checks

    checks = asyncio.run(run())
    row = _connection(app, checks["connection_id"])
    assert row.status == "connected" and row.initiated_by == "peer"
    assert row.roles == [{"role": "CPO", "country_code": "NL", "party_id": "CPA", "name": "Simulated CPO"}]
    assert {e["module"] for e in row.endpoints} >= {"sessions", "chargingprofiles", "locations", "cdrs"}
    assert row.outgoing_token_sealed is not None and row.token_a_hash is None
    assert checks["token_c"] not in (row.incoming_token_hash, row.outgoing_token_sealed)
    assert checks["token_c_sessions"] == 404
    assert checks["token_a_versions"] == 401
    assert checks["credentials"]["data"]["token"] == checks["token_c"]
    assert checks["credentials"]["data"]["roles"][0]["role"] == "SCSP"
    assert w.queue.tasks == [("ocpi.pull_sessions", {"connection_id": checks["connection_id"]})]


def test_we_register_with_the_sim_cpo_and_it_calls_us_with_our_token_b(app: FastAPI) -> None:
    w = world(app)

    async def run() -> str:
        token_a = w.sim.issue_token_a()
        connection_id = await registration.register_with(
            w.context, name="sim", versions_url=f"{CPO_URL}/ocpi/versions", token_a=token_a, http=w.http
        )
        await w.close()
        return connection_id

    connection_id = asyncio.run(run())
    row = _connection(app, connection_id)
    assert row.status == "connected" and row.initiated_by == "us"
    # Stored sealed, never as the token itself.
    outgoing = connections.outgoing_token_of(row, app.state.settings.token_keyring)
    assert outgoing in w.sim.connections and outgoing not in (row.outgoing_token_sealed or "")
    sim_side = w.sim.connections[outgoing]
    assert sim_side.details is not None
    assert sim_side.details.endpoint_url("sessions") == f"{VPP_URL}/ocpi/2.2.1/sessions"
    # The sim calls us with token B, which we only keep hashed.
    with TestClient(app) as client:
        answer = client.get("/ocpi/2.2.1/sessions/NL/CPA/x", headers=token_headers(sim_side.outgoing_token))
    assert answer.status_code == 404


def test_registering_with_an_unreachable_cpo_fails_and_stores_no_usable_connection(app: FastAPI) -> None:
    w = world(app)

    async def run() -> str:
        try:
            await registration.register_with(w.context, name="x", versions_url="http://nowhere.test/versions",
                                             token_a="a", http=w.http)
        except ServiceUnavailable as exc:
            return exc.message
        finally:
            await w.close()
        return ""

    assert "3001" in asyncio.run(run())
    with unit_of_work(app.state.session_factory) as session:
        assert connections.list_connections(session) == []


def _fake_cpo(versions: list[dict[str, str]], endpoints: list[dict[str, str]]) -> FastAPI:
    fake = FastAPI()

    @fake.get("/versions")
    def get_versions() -> dict[str, Any]:
        return ocpi_response(versions)

    @fake.get("/details")
    def get_details() -> dict[str, Any]:
        return ocpi_response({"version": "2.2.1", "endpoints": endpoints})

    return fake


def _post_registration(app: FastAPI, fake: FastAPI | None) -> dict[str, Any]:
    w = world(app)
    if fake is not None:
        w.transport.add("fake.test", fake)

    async def run() -> dict[str, Any]:
        with unit_of_work(app.state.session_factory) as session:
            _row, token_a = connections.invite(session, name="x", pepper=TEST_SECRET)
        body = {"token": "tok-b", "url": "http://fake.test/versions",
                "roles": [{"role": "CPO", "party_id": "CPA", "country_code": "NL", "business_details": {"name": "x"}}]}
        response = await w.http.post(f"{VPP_URL}/ocpi/2.2.1/credentials", json=body, headers=token_headers(token_a))
        await w.close()
        return {"http": response.status_code, **response.json()}

    return asyncio.run(run())


def test_registration_we_cannot_complete_answers_3001_3002_or_3003(app: FastAPI) -> None:
    unreachable = _post_registration(app, None)
    assert unreachable["http"] == 200 and unreachable["status_code"] == 3001
    old_only = _fake_cpo([{"version": "2.1.1", "url": "http://fake.test/details"}], [])
    assert _post_registration(app, old_only)["status_code"] == 3002
    no_profiles = _fake_cpo(
        [{"version": "2.2.1", "url": "http://fake.test/details"}],
        [{"identifier": "sessions", "role": "SENDER", "url": "http://fake.test/sessions"}],
    )
    assert _post_registration(app, no_profiles)["status_code"] == 3003


def test_credentials_post_when_registered_and_put_or_delete_with_token_a_are_405(
    app: FastAPI, client: TestClient
) -> None:
    peer = connect(app.state.session_factory, TEST_SECRET)
    with unit_of_work(app.state.session_factory) as session:
        _row, token_a = connections.invite(session, name="new", pepper=TEST_SECRET)
    body = {"token": "b", "url": "http://x/versions",
            "roles": [{"role": "CPO", "party_id": "CPA", "country_code": "NL", "business_details": {"name": "x"}}]}
    again = client.post("/ocpi/2.2.1/credentials", json=body, headers=peer.headers)
    assert again.status_code == 405 and again.json()["status_code"] == 2000
    assert client.put("/ocpi/2.2.1/credentials", json=body, headers=token_headers(token_a)).status_code == 405
    assert client.delete("/ocpi/2.2.1/credentials", headers=token_headers(token_a)).status_code == 405
    assert client.get("/ocpi/2.2.1/credentials", headers=token_headers(token_a)).status_code == 405


def test_credentials_put_rotates_our_token_and_the_old_one_stops_working(app: FastAPI) -> None:
    w = world(app)

    async def run() -> tuple[int, int, int, str]:
        with unit_of_work(app.state.session_factory) as session:
            _row, token_a = connections.invite(session, name="sim", pepper=TEST_SECRET)
        peer = await w.sim.register_with(f"{VPP_URL}/ocpi/versions", token_a)
        old = peer.outgoing_token
        ours = w.sim.own_credentials(peer.incoming_token).to_json_dict()
        put = await w.http.put(f"{VPP_URL}/ocpi/2.2.1/credentials", json=ours, headers=token_headers(old))
        new = put.json()["data"]["token"]
        old_status = (await w.http.get(f"{VPP_URL}/ocpi/2.2.1/credentials", headers=token_headers(old))).status_code
        new_status = (await w.http.get(f"{VPP_URL}/ocpi/2.2.1/credentials", headers=token_headers(new))).status_code
        await w.close()
        return put.status_code, old_status, new_status, new if new != old else ""

    put_status, old_status, new_status, new = asyncio.run(run())
    assert put_status == 200 and new
    assert old_status == 401 and new_status == 200


def test_a_peer_that_missed_our_answer_posts_again_with_token_a_until_it_calls_with_token_c(app: FastAPI) -> None:
    """The simulated CPO's registration POST timed out after we had registered it (CI, a loaded host): it never got
    token C, so its retry with token A must succeed, and token A must die once token C is in use."""
    w = world(app)

    async def run() -> dict[str, Any]:
        with unit_of_work(app.state.session_factory) as session:
            row, token_a = connections.invite(session, name="sim", pepper=TEST_SECRET)
        missed = (await w.sim.register_with(f"{VPP_URL}/ocpi/versions", token_a)).outgoing_token
        retry = await w.sim.register_with(f"{VPP_URL}/ocpi/versions", token_a)
        sessions_url = f"{VPP_URL}/ocpi/2.2.1/sessions/NL/CPA/nope"
        checks = {
            "new_token": retry.outgoing_token != missed,
            "missed": (await w.http.get(sessions_url, headers=token_headers(missed))).status_code,
            "retry": (await w.http.get(sessions_url, headers=token_headers(retry.outgoing_token))).status_code,
            "token_a_after_use": (await w.http.get(f"{VPP_URL}/ocpi/versions",
                                                   headers=token_headers(token_a))).status_code,
        }
        # A second invitation, registered and never called with token C, outlives the grace.
        with unit_of_work(app.state.session_factory) as session:
            late, late_a = connections.invite(session, name="late", pepper=TEST_SECRET)
        await w.sim.register_with(f"{VPP_URL}/ocpi/versions", late_a)
        with unit_of_work(app.state.session_factory) as session:
            stale = connections.get_or_raise(session, late.id)
            assert stale.registered_at is not None
            stale.registered_at -= connections.REGISTRATION_RETRY_GRACE
        checks["token_a_after_grace"] = (await w.http.get(f"{VPP_URL}/ocpi/versions",
                                                         headers=token_headers(late_a))).status_code
        checks["connection_id"] = row.id
        await w.close()
        return checks

    checks = asyncio.run(run())
    assert checks["new_token"] and checks["missed"] == 401 and checks["retry"] == 404
    assert checks["token_a_after_use"] == 401 and checks["token_a_after_grace"] == 401
    assert _connection(app, checks["connection_id"]).token_a_hash is None


def test_credentials_delete_unregisters_and_the_token_stops_working(app: FastAPI, client: TestClient) -> None:
    peer = connect(app.state.session_factory, TEST_SECRET)
    deleted = client.delete("/ocpi/2.2.1/credentials", headers=peer.headers)
    assert deleted.status_code == 200 and deleted.json()["status_code"] == 1000 and "data" not in deleted.json()
    assert client.get("/ocpi/versions", headers=peer.headers).status_code == 401
    assert _connection(app, peer.connection_id).status == "unregistered"


def test_a_registration_with_a_malformed_credentials_body_is_2001_naming_the_field(
    app: FastAPI, client: TestClient
) -> None:
    with unit_of_work(app.state.session_factory) as session:
        _row, token_a = connections.invite(session, name="x", pepper=TEST_SECRET)
    answer = client.post("/ocpi/2.2.1/credentials", json={"token": "b", "url": "http://x"},
                         headers=token_headers(token_a))
    assert answer.status_code == 200 and answer.json()["status_code"] == 2001
    assert "roles" in answer.json()["status_message"]


def test_an_admin_invites_a_cpo_and_lists_connections_without_tokens(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    created = client.post("/api/v1/ocpi/connections", json={"name": "cpo-x"}, headers=admin_headers)
    assert created.status_code == 201
    assert created.json()["versions_url"].endswith("/ocpi/versions") and created.json()["token_a"]
    listed = client.get("/api/v1/ocpi/connections", headers=admin_headers).json()
    assert [c["status"] for c in listed] == ["invited"]
    assert created.json()["token_a"] not in str(listed) and not {"token_a_hash", "outgoing_token"} & set(listed[0])
    flagged = client.patch(f"/api/v1/ocpi/connections/{listed[0]['id']}", json={"flags": {"raw_token": True}},
                           headers=admin_headers)
    assert flagged.json()["flags"]["raw_token"] is True
