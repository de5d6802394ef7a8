"""Secrets and access: sealed tokens (and their migration), key rotation, credentials rotation from our side,
API key expiry, per-key rate limits and the admin audit."""

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from tests.conftest import TEST_SECRET, make_key
from tests.integration.test_ocpi_support import VPP_URL, connect, sim_registers_with_us, token_headers, world
from vpp import migrate
from vpp.apikeys import service as apikeys
from vpp.apikeys.tables import ApiKey
from vpp.db import unit_of_work, utcnow
from vpp.keyring import Keyring, generate_key, is_sealed, parse_key
from vpp.ocpi import service as connections
from vpp.ocpi.tables import OcpiConnection

PLAINTEXT = "legacy-plaintext-token-of-a-cpo-0123456789"


def _audit(client: TestClient, headers: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    answer = client.get("/api/v1/audit", headers=headers, params=params)
    assert answer.status_code == 200, answer.text
    entries: list[dict[str, Any]] = answer.json()
    return entries


# ----------------------------------------------------------------------------------------- sealed at rest


def test_the_migration_seals_stored_plaintext_tokens_and_the_downgrade_restores_them(engine: Engine) -> None:
    keyring = Keyring.of(parse_key(generate_key()))
    migrate.downgrade(engine, "0005", token_keyring=keyring)
    try:
        with engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO ocpi_connections (id, name, status, initiated_by, outgoing_token, endpoints, roles, flags,"
                " created_at, updated_at) VALUES ('c-legacy', 'legacy', 'connected', 'us', :token, '[]', '[]', '{}',"
                " :now, :now)"), {"token": PLAINTEXT, "now": utcnow()})
            conn.execute(text(
                "INSERT INTO ocpi_connections (id, name, status, initiated_by, endpoints, roles, flags, created_at,"
                " updated_at) VALUES ('c-none', 'none', 'unregistered', 'us', '[]', '[]', '{}', :now, :now)"),
                {"now": utcnow()})
        migrate.upgrade(engine, token_keyring=keyring)
        with engine.connect() as conn:
            stored = dict(conn.execute(text("SELECT id, outgoing_token_sealed FROM ocpi_connections")).all())
        assert stored["c-none"] is None
        assert is_sealed(stored["c-legacy"]) and PLAINTEXT not in stored["c-legacy"]
        assert keyring.open(stored["c-legacy"]) == PLAINTEXT

        migrate.downgrade(engine, "0005", token_keyring=keyring)
        with engine.connect() as conn:
            restored = dict(conn.execute(text("SELECT id, outgoing_token FROM ocpi_connections")).all())
        assert restored == {"c-legacy": PLAINTEXT, "c-none": None}
    finally:
        migrate.upgrade(engine, token_keyring=keyring)
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM ocpi_connections WHERE id IN ('c-legacy', 'c-none')"))
    assert migrate.current_revision(engine) == migrate.head_revision()


def test_rotate_key_reseals_every_token_with_the_new_key_and_is_audited(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from vpp.cli import main

    monkeypatch.setenv("VPP_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("VPP_SECRET_KEY", TEST_SECRET)
    for name in ("VPP_DATABASE_URL", "VPP_REDIS_URL", "VPP_TOKEN_KEY", "VPP_TOKEN_KEYS_PREVIOUS"):
        monkeypatch.delenv(name, raising=False)
    # Two connections sealed with the key derived from the secret (no VPP_TOKEN_KEY yet).
    assert main(["migrate"]) == 0
    from vpp.config import Settings
    from vpp.db import create_db_engine, create_session_factory

    before = Settings()
    eng = create_db_engine(before.resolved_database_url)
    factory = create_session_factory(eng)
    ids = [connect(factory, TEST_SECRET, name=f"cpo{n}").connection_id for n in range(2)]
    capsys.readouterr()

    new_key = generate_key()
    monkeypatch.setenv("VPP_TOKEN_KEY", new_key)
    assert main(["secrets", "rotate-key", "--json"]) == 0
    import json

    first = json.loads(capsys.readouterr().out)
    assert main(["secrets", "rotate-key", "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert (first["resealed"], first["already_current"]) == (2, 0)
    assert (again["resealed"], again["already_current"]) == (0, 2)

    only_new = Keyring.of(parse_key(new_key))
    with unit_of_work(factory) as session:
        tokens = [connections.peer_access(session, cid, only_new).outgoing_token for cid in ids]
        audit_rows = session.execute(text("SELECT action, actor FROM admin_audit")).all()
    eng.dispose()
    assert tokens == ["token-b-cpo0", "token-b-cpo1"]
    assert [tuple(r) for r in audit_rows].count(("secrets.rotate_key", "cli")) == 2
    assert new_key not in json.dumps(first)


# ----------------------------------------------------------------------------------------- credentials rotation


def test_an_admin_rotates_a_cpos_credentials_from_our_side_and_the_old_tokens_stop_working(
    app: FastAPI, admin_headers: dict[str, str]
) -> None:
    w = world(app)

    async def run() -> dict[str, Any]:
        connection_id = await sim_registers_with_us(w, TEST_SECRET)
        sim_connection = next(iter(w.sim.connections.values()))
        old_theirs = sim_connection.outgoing_token  # what the CPO called us with
        with unit_of_work(app.state.session_factory) as session:
            old_ours = connections.peer_access(session, connection_id, app.state.settings.token_keyring).outgoing_token
        rotated = await w.http.post(f"{VPP_URL}/api/v1/ocpi/connections/{connection_id}/credentials/rotate",
                                    headers=admin_headers)
        sim_after = next(c for c in w.sim.connections.values() if c.versions_url == sim_connection.versions_url)
        with unit_of_work(app.state.session_factory) as session:
            new_ours = connections.peer_access(session, connection_id, app.state.settings.token_keyring).outgoing_token
        checks = {
            "rotated": rotated.status_code, "body": rotated.json(),
            "old_theirs": (await w.http.get(f"{VPP_URL}/ocpi/2.2.1/credentials",
                                            headers=token_headers(old_theirs))).status_code,
            "new_theirs": (await w.http.get(f"{VPP_URL}/ocpi/2.2.1/credentials",
                                            headers=token_headers(sim_after.outgoing_token))).status_code,
            "ours_changed": new_ours != old_ours, "ours_known_to_sim": new_ours in w.sim.connections,
            "unknown": (await w.http.post(f"{VPP_URL}/api/v1/ocpi/connections/nope/credentials/rotate",
                                          headers=admin_headers)).status_code,
            "connection_id": connection_id,
        }
        await w.close()
        return checks

    checks = asyncio.run(run())
    assert checks["rotated"] == 200 and checks["body"]["status"] == "connected"
    assert checks["old_theirs"] == 401 and checks["new_theirs"] == 200
    assert checks["ours_changed"] and checks["ours_known_to_sim"]
    assert checks["unknown"] == 404
    with TestClient(app) as client:
        [entry] = _audit(client, admin_headers, action="ocpi.rotate_credentials")
    assert entry["target"] == checks["connection_id"] and entry["actor"] == "test admin (admin)"


def test_a_rotation_the_cpo_cannot_take_answers_503_and_the_current_tokens_keep_working(
    app: FastAPI, client: TestClient, admin_headers: dict[str, str]
) -> None:
    # The peer is not reachable (nothing serves cpo.test here): the PUT fails, nothing changes.
    peer = connect(app.state.session_factory, TEST_SECRET)
    answer = client.post(f"/api/v1/ocpi/connections/{peer.connection_id}/credentials/rotate", headers=admin_headers)
    assert answer.status_code == 503, answer.text
    assert client.get("/ocpi/2.2.1/credentials", headers=peer.headers).status_code == 200
    with unit_of_work(app.state.session_factory) as session:
        access = connections.peer_access(session, peer.connection_id, app.state.settings.token_keyring)
    assert access.outgoing_token == "token-b-cpo"
    [entry] = _audit(client, admin_headers, action="ocpi.rotate_credentials")
    assert entry["detail"]["outcome"] == "failed"
    # Not connected: a conflict, before anyone is called.
    with unit_of_work(app.state.session_factory) as session:
        connections.unregister(session, peer.connection_id)
    gone = client.post(f"/api/v1/ocpi/connections/{peer.connection_id}/credentials/rotate", headers=admin_headers)
    assert gone.status_code == 409


def test_only_an_admin_may_rotate_credentials(app: FastAPI, client: TestClient,
                                              trader_headers: dict[str, str]) -> None:
    peer = connect(app.state.session_factory, TEST_SECRET)
    answer = client.post(f"/api/v1/ocpi/connections/{peer.connection_id}/credentials/rotate", headers=trader_headers)
    assert answer.status_code == 403


# ----------------------------------------------------------------------------------------- API keys


def test_an_expired_key_answers_401_saying_it_expired(
    client: TestClient, session_factory: sessionmaker[Session], admin_headers: dict[str, str]
) -> None:
    created = client.post("/api/v1/apikeys", headers=admin_headers, json={
        "name": "temp", "role": "trader", "expires_at": (utcnow() + timedelta(hours=1)).isoformat()})
    assert created.status_code == 201 and created.json()["expires_at"] is not None
    key = created.json()["key"]
    assert client.get("/api/v1/sessions", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    with unit_of_work(session_factory) as session:
        row = session.get(ApiKey, created.json()["id"])
        assert row is not None
        row.expires_at = utcnow() - timedelta(seconds=1)
    client.app.state.authenticator.forget()  # type: ignore[attr-defined]
    expired = client.get("/api/v1/sessions", headers={"Authorization": f"Bearer {key}"})
    assert expired.status_code == 401 and "expired" in expired.json()["error"]["message"]
    assert key not in expired.text


@pytest.mark.parametrize("expires_at", ["2020-01-01T00:00:00Z", "2030-01-01T00:00:00", "tomorrow"])
def test_a_key_cannot_be_created_expired_or_with_an_ambiguous_expiry(
    client: TestClient, admin_headers: dict[str, str], expires_at: str
) -> None:
    answer = client.post("/api/v1/apikeys", headers=admin_headers,
                         json={"name": "x", "role": "trader", "expires_at": expires_at})
    assert answer.status_code == 422
    assert [k["name"] for k in client.get("/api/v1/apikeys", headers=admin_headers).json()] == ["test admin"]


def test_a_revoked_key_is_refused_mid_stream_with_its_reason(
    client: TestClient, session_factory: sessionmaker[Session], admin_headers: dict[str, str]
) -> None:
    key = make_key(session_factory, "trader")
    headers = {"Authorization": f"Bearer {key}"}
    assert client.get("/api/v1/sessions", headers=headers).status_code == 200
    prefix = key.split("_")[1]
    assert client.delete(f"/api/v1/apikeys/{prefix}", headers=admin_headers).status_code == 200
    refused = client.get("/api/v1/sessions", headers=headers)
    assert refused.status_code == 401 and refused.json()["error"]["message"] == "revoked API key"
    unknown = client.get("/api/v1/sessions", headers={"Authorization": f"Bearer vpp_{prefix}_wrong"})
    assert unknown.json()["error"]["message"] == "unknown API key"


def test_a_key_over_its_rate_limit_gets_429_with_retry_after_and_other_keys_do_not(
    client: TestClient, session_factory: sessionmaker[Session], admin_headers: dict[str, str]
) -> None:
    created = client.post("/api/v1/apikeys", headers=admin_headers,
                          json={"name": "slow", "role": "trader", "rate_limit_per_minute": 3})
    assert created.json()["rate_limit_per_minute"] == 3
    headers = {"Authorization": f"Bearer {created.json()['key']}"}
    statuses = [client.get("/api/v1/sessions", headers=headers).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    limited = client.get("/api/v1/sessions", headers=headers)
    assert limited.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(limited.headers["Retry-After"]) <= 20
    other = {"Authorization": f"Bearer {make_key(session_factory, 'trader')}"}
    assert client.get("/api/v1/sessions", headers=other).status_code == 200


def test_a_per_role_limit_applies_to_keys_without_their_own(
    settings: Any, engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    from vpp.api.app import create_app

    limited = settings.model_copy(update={"api_rate_limit_per_role": {"trader": 1}})
    app = create_app(limited, engine=engine, session_factory=session_factory, background=False)
    trader = {"Authorization": f"Bearer {make_key(session_factory, 'trader')}"}
    admin = {"Authorization": f"Bearer {make_key(session_factory, 'admin')}"}
    with TestClient(app) as client:
        assert [client.get("/api/v1/sessions", headers=trader).status_code for _ in range(2)] == [200, 429]
        assert [client.get("/api/v1/sessions", headers=admin).status_code for _ in range(2)] == [200, 200]


# ----------------------------------------------------------------------------------------- audit


def test_admin_actions_are_audited_without_secrets_and_only_admins_read_the_audit(
    client: TestClient, admin_headers: dict[str, str], trader_headers: dict[str, str]
) -> None:
    created = client.post("/api/v1/apikeys", headers=admin_headers, json={"name": "ops", "role": "dso"}).json()
    client.delete(f"/api/v1/apikeys/{created['id']}", headers=admin_headers)
    invited = client.post("/api/v1/ocpi/connections", headers=admin_headers, json={"name": "cpo x"}).json()
    client.patch(f"/api/v1/ocpi/connections/{invited['connection_id']}", headers=admin_headers,
                 json={"name": "cpo y"})
    # A refused action leaves no entry.
    assert client.delete("/api/v1/apikeys/nope", headers=admin_headers).status_code == 404

    entries = _audit(client, admin_headers)
    assert [e["action"] for e in entries] == ["ocpi.update", "ocpi.invite", "apikey.revoke", "apikey.create"]
    assert {e["actor"] for e in entries} == {"test admin (admin)"}
    assert all(e["request_id"] for e in entries)
    assert entries[3]["detail"]["role"] == "dso" and entries[3]["target"] == created["id"]
    text_of_audit = str(entries)
    assert created["key"] not in text_of_audit and invited["token_a"] not in text_of_audit
    assert [e["action"] for e in _audit(client, admin_headers, action="apikey.revoke")] == ["apikey.revoke"]
    assert client.get("/api/v1/audit", headers=trader_headers).status_code == 403
    naive = client.get("/api/v1/audit", headers=admin_headers, params={"since": "2026-01-01T00:00:00"})
    assert naive.status_code == 422
    assert client.get("/api/v1/audit", headers=admin_headers, params={"limit": 10**9}).status_code == 422


def test_the_cli_audits_key_creation_with_its_expiry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from vpp.cli import main

    monkeypatch.setenv("VPP_DATA_DIR", str(tmp_path))
    for name in ("VPP_DATABASE_URL", "VPP_REDIS_URL", "VPP_SECRET_KEY", "VPP_TOKEN_KEY"):
        monkeypatch.delenv(name, raising=False)
    assert main(["apikey", "create", "--role", "trader", "--name", "batch", "--expires", "30d", "--json"]) == 0
    created = json.loads(capsys.readouterr().out)
    assert created["expires_at"] is not None
    assert main(["apikey", "list"]) == 0
    [listed] = json.loads(capsys.readouterr().out)
    assert listed["expires_at"] is not None and "key" not in listed
    assert main(["apikey", "create", "--role", "trader", "--name", "x", "--expires", "2001-01-01"]) == 2
    assert "future" in capsys.readouterr().err


def test_keys_are_never_stored_in_clear(session_factory: sessionmaker[Session]) -> None:
    with unit_of_work(session_factory) as session:
        _row, key = apikeys.create(session, name="k", role="admin", pepper=TEST_SECRET)
        _peer_row, token_a = connections.invite(session, name="p", pepper=TEST_SECRET)
    with session_factory() as session:
        dump = str([tuple(r) for r in session.execute(text("SELECT * FROM api_keys")).all()])
        conns = str([tuple(r) for r in session.execute(text("SELECT * FROM ocpi_connections")).all()])
    assert "'k'" in dump and "'p'" in conns
    assert key.split("_", 2)[2] not in dump and token_a not in conns
    assert OcpiConnection.__table__.c.get("outgoing_token") is None


@pytest.mark.parametrize("ref", ["%F0%9F%94%A5-\u00e9t\u00e9", "x" * 5000, "..%2F..%2Fetc"])
def test_hostile_ids_on_the_secret_routes_are_a_clear_404(
    client: TestClient, admin_headers: dict[str, str], ref: str
) -> None:
    rotated = client.post(f"/api/v1/ocpi/connections/{ref}/credentials/rotate", headers=admin_headers)
    revoked = client.delete(f"/api/v1/apikeys/{ref}", headers=admin_headers)
    assert (rotated.status_code, revoked.status_code) == (404, 404)
    assert _audit(client, admin_headers) == []
