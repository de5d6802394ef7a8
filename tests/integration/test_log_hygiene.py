"""No token or API key ever appears in a log line: a realistic flow with every logger captured at DEBUG."""

import asyncio
import logging
import traceback
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import select

from adapters.ocpi.v2_2_1 import registration, sync
from adapters.ocpi.v2_2_1.network import OcpiChargePointNetwork
from adapters.ocpi.v2_2_1.transport import encode_token
from tests.conftest import TEST_SECRET, make_key
from tests.integration.test_ocpi_support import CPO_URL, VPP_URL, session_body, token_headers, world
from vpp.db import unit_of_work
from vpp.ocpi import service as connections
from vpp.ports import SessionLimit
from vpp.sessions.tables import ChargingSession


def _record_text(record: logging.LogRecord) -> str:
    parts = [record.getMessage(), repr(record.args), repr({k: v for k, v in record.__dict__.items() if k != "args"})]
    if record.exc_info and record.exc_info[1] is not None:
        parts.append("".join(traceback.format_exception(record.exc_info[1])))
    return "\n".join(parts)


def test_a_day_of_handshakes_pushes_profiles_rotations_and_errors_logs_no_token_or_key(
    app: FastAPI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    # configure_logging (called in-process by other tests of the same worker) quiets these to WARNING: hear them all.
    for noisy in ("uvicorn.access", "httpx", "httpcore", "alembic"):
        caplog.set_level(logging.DEBUG, logger=noisy)
    w = world(app, evses=3, callback_delay_s=1)
    factory = app.state.session_factory
    keyring = app.state.settings.token_keyring
    secrets_seen: set[str] = {TEST_SECRET}

    admin_key = make_key(factory, "admin")
    trader_key = make_key(factory, "trader")
    secrets_seen |= {admin_key, trader_key}
    admin = {"Authorization": f"Bearer {admin_key}"}

    async def run() -> None:
        # Handshake 1: the CPO registers with us (token A, then B/C); it pushes sessions and their progress.
        invited = (await w.http.post(f"{VPP_URL}/api/v1/ocpi/connections", json={"name": "sim"},
                                     headers=admin)).json()
        secrets_seen.add(invited["token_a"])
        await w.sim.register_with(f"{VPP_URL}/ocpi/versions", invited["token_a"])
        connection_id = invited["connection_id"]
        await sync.pull_locations(w.context, connection_id, http=w.http)
        for _ in range(2):
            w.sim.plug_in(energy_kwh=30)
        await w.sim.flush()
        await w.sim.step(900)
        await w.sim.flush()
        # Profiles to the CPO, and their asynchronous results back.
        with factory() as session:
            ids = list(session.scalars(select(ChargingSession.id)))
        network = OcpiChargePointNetwork(w.context, http=w.http)
        await network.set_limits([SessionLimit(sid, 3.7) for sid in ids])
        await w.sim.step(5)
        await network.set_limits([SessionLimit(sid, float("inf")) for sid in ids])
        await w.sim.step(5)
        for connection in w.sim.connections.values():
            secrets_seen.update({connection.incoming_token, connection.outgoing_token})

        # Rotation from our side, through the admin API; then the CPO uses its new token.
        old_token = next(iter(w.sim.connections.values())).outgoing_token
        rotated = await w.http.post(f"{VPP_URL}/api/v1/ocpi/connections/{connection_id}/credentials/rotate",
                                    headers=admin)
        assert rotated.status_code == 200
        for connection in w.sim.connections.values():
            secrets_seen.update({connection.incoming_token, connection.outgoing_token})
        w.sim.plug_in(energy_kwh=10)
        await w.sim.flush()

        # Handshake 2: we register with the CPO using the token A it gave us.
        token_a = w.sim.issue_token_a()
        secrets_seen.add(token_a)
        ours = await registration.register_with(w.context, name="outbound", versions_url=f"{CPO_URL}/ocpi/versions",
                                                token_a=token_a, http=w.http)
        with unit_of_work(factory) as session:
            for cid in (connection_id, ours):
                secrets_seen.add(connections.peer_access(session, cid, keyring).outgoing_token)
        for connection in w.sim.connections.values():
            secrets_seen.update({connection.incoming_token, connection.outgoing_token})

        # Errors: old and unknown tokens, malformed bodies, unknown sessions, bad and revoked keys, a flood.
        answers = [
            await w.http.get(f"{VPP_URL}/ocpi/2.2.1/sessions/NL/CPA/S", headers=token_headers(old_token)),
            await w.http.get(f"{VPP_URL}/ocpi/versions", headers={"Authorization": f"Token {old_token}"}),
            await w.http.put(f"{VPP_URL}/ocpi/2.2.1/sessions/NL/CPA/S1", headers=token_headers(invited["token_a"]),
                             json=session_body()),
            await w.http.get(f"{VPP_URL}/api/v1/sessions", headers={"Authorization": f"Bearer {admin_key}x"}),
            await w.http.get(f"{VPP_URL}/api/v1/sessions", headers={"Authorization": f"Basic {trader_key}"}),
            await w.http.post(f"{VPP_URL}/api/v1/apikeys", headers=admin, content=b"{not json"),
            await w.http.post(f"{VPP_URL}/api/v1/ocpi/connections/nope/credentials/rotate", headers=admin),
        ]
        assert all(a.status_code >= 400 for a in answers), [a.status_code for a in answers]
        prefix = trader_key.split("_")[1]
        await w.http.delete(f"{VPP_URL}/api/v1/apikeys/{prefix}", headers=admin)
        app.state.authenticator.forget()
        revoked = await w.http.get(f"{VPP_URL}/api/v1/sessions", headers={"Authorization": f"Bearer {trader_key}"})
        assert revoked.status_code == 401
        limited = make_key(factory, "partner")
        secrets_seen.add(limited)
        app.state.settings.__dict__["api_rate_limit_per_role"] = {"partner": 2}
        flood = [(await w.http.get(f"{VPP_URL}/api/v1/sessions", headers={"Authorization": f"Bearer {limited}"}))
                 .status_code for _ in range(4)]
        assert 429 in flood
        # The CPO's view of a failed push: a PATCH of a session we never saw.
        sim_token = next(iter(w.sim.connections.values())).outgoing_token
        await w.http.patch(f"{VPP_URL}/ocpi/2.2.1/sessions/NL/CPA/unknown", headers=token_headers(sim_token),
                           json={"kwh": 1.0, "last_updated": "2026-03-02T09:00:00Z"})
        await w.close()

    asyncio.run(run())

    values: set[str] = set()
    for secret in secrets_seen - {"-", ""}:
        values |= {secret, encode_token(secret)}
        if secret.startswith("vpp_"):
            values.add(secret.split("_", 2)[2])
    assert len(values) >= 20, "the flow must have produced tokens and keys to look for"
    records = caplog.records
    assert len(records) > 50, "the flow must have logged (requests, handshakes, errors)"
    leaks: list[Any] = []
    for record in records:
        text = _record_text(record)
        leaks.extend((record.name, record.getMessage()[:200]) for value in values if value in text)
    assert leaks == []
