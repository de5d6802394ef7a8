"""Group commit of Session PATCHes (PostgreSQL and SQLite): PATCHes share a transaction, yet each is answered after
its commit with its own outcome, and one bad PATCH fails alone."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from adapters.ocpi.v2_2_1.transport import format_datetime
from tests.conftest import TEST_SECRET
from tests.integration.test_ocpi_support import T0, Peer, connect, session_body
from vpp.domain.errors import InvalidInput, NotFound
from vpp.ocpi.schemas import ConnectionFlags
from vpp.sessions import intake
from vpp.sessions.intake import PatchBatcher, PatchItem, prepare, write_batch
from vpp.sessions.tables import ChargingSession, SessionReading
from vpp.sessions.values import Reading, SessionChanges

SESSIONS = ("S1", "S2", "S3")


@pytest.fixture
def postgres(database_url: str) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("group commit is PostgreSQL's")


@pytest.fixture
def peer(app: FastAPI) -> Peer:
    flags = ConnectionFlags(rate_limit_per_s=1e5, rate_limit_burst=1e5)
    peer = connect(app.state.session_factory, TEST_SECRET, flags=flags)
    with TestClient(app) as client:
        for session_id in SESSIONS:
            url = f"/ocpi/2.2.1/sessions/NL/CPA/{session_id}"
            assert client.put(url, json=session_body(session_id, periods=()), headers=peer.headers).status_code == 201
    return peer


def _changes(n: int, **fields: object) -> SessionChanges:
    return SessionChanges(fields={"energy_kwh": float(n), **fields}, last_updated=T0 + timedelta(minutes=n),
                          readings=(Reading(T0 + timedelta(minutes=5 * n), power_kw=float(n)),))


def _item(peer: Peer, session_id: str, n: int, dialect: str = "postgresql", **fields: object) -> PatchItem:
    return prepare(PatchItem(peer.connection_id, "NL", "CPA", session_id, _changes(n, **fields)), dialect)


def _readings(engine: Engine, session_id: str) -> list[float]:
    with engine.connect() as connection:
        rows = connection.execute(
            select(SessionReading.power_kw).join(ChargingSession, ChargingSession.id == SessionReading.session_id)
            .where(ChargingSession.external_id == session_id).order_by(SessionReading.start_at)
        )
        return [float(power) for (power,) in rows]


def _session(engine: Engine, session_id: str) -> tuple[float, str]:
    with engine.connect() as connection:
        row = connection.execute(select(ChargingSession.energy_kwh, ChargingSession.location_id)
                                 .where(ChargingSession.external_id == session_id)).one()
        return float(row[0]), str(row[1])


def test_a_bad_patch_in_a_batch_fails_alone_and_the_others_are_written(
    postgres: None, peer: Peer, engine: Engine
) -> None:
    items = [
        _item(peer, "S1", 1),
        _item(peer, "S2", 2, location_id=None),  # NOT NULL: PostgreSQL refuses it, and so the whole batch at first
        _item(peer, "S9", 3),  # unknown session
        _item(peer, "S3", 4),
        _item(peer, "S3", 5),
        _item(peer, "S2", 6, location_id="L" * 37),  # longer than the column
    ]
    outcomes = write_batch(engine, items)
    assert outcomes[0] == "updated"
    assert isinstance(outcomes[1], InvalidInput) and "location_id" in outcomes[1].message
    assert isinstance(outcomes[2], NotFound)
    assert outcomes[3:5] == ["updated", "updated"]
    assert isinstance(outcomes[5], InvalidInput) and "too long" in outcomes[5].message
    assert _readings(engine, "S1") == [1.0]
    assert _readings(engine, "S2") == []  # nothing half-written: neither its fields nor its reading
    assert _session(engine, "S2") == (0.0, "LOC1")
    assert _readings(engine, "S3") == [4.0, 5.0]
    assert _session(engine, "S3")[0] == 5.0


def test_on_sqlite_a_refused_patch_fails_alone_and_the_others_are_written(peer: Peer, engine: Engine) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip("SQLite's batch")
    items = [
        _item(peer, "S1", 1, dialect="sqlite"),
        _item(peer, "S2", 2, dialect="sqlite", location_id=None),  # NOT NULL: SQLite refuses it too
        _item(peer, "S9", 3, dialect="sqlite"),  # unknown session
        _item(peer, "S3", 4, dialect="sqlite"),
        _item(peer, "S3", 5, dialect="sqlite"),
    ]
    outcomes = write_batch(engine, items)
    assert outcomes[0] == "updated"
    assert isinstance(outcomes[1], InvalidInput) and "location_id" in outcomes[1].message
    assert isinstance(outcomes[2], NotFound)
    assert outcomes[3:] == ["updated", "updated"]
    assert _readings(engine, "S1") == [1.0]
    assert _readings(engine, "S2") == []  # nothing half-written: neither its fields nor its reading
    assert _session(engine, "S2") == (0.0, "LOC1")
    assert _readings(engine, "S3") == [4.0, 5.0]
    assert _session(engine, "S3")[0] == 5.0


def test_patches_of_one_session_in_one_batch_keep_their_order(peer: Peer, engine: Engine) -> None:
    dialect = engine.dialect.name
    items = [_item(peer, "S1", 3, dialect), _item(peer, "S1", 1, dialect), _item(peer, "S1", 2, dialect)]
    assert write_batch(engine, items) == ["updated", "stale", "stale"]
    assert _session(engine, "S1")[0] == 3.0  # the newest fields, all three readings
    assert _readings(engine, "S1") == [1.0, 2.0, 3.0]


def test_each_patch_is_answered_after_its_commit_and_batches_form(peer: Peer, engine: Engine) -> None:
    batcher = PatchBatcher(engine, writers=2, max_batch=16)
    seen_committed: list[bool] = []

    async def one(n: int) -> str:
        session_id = SESSIONS[n % len(SESSIONS)]
        outcome = await batcher.submit(peer.connection_id, "NL", "CPA", session_id, _changes(n))
        # Answered: another connection must see the reading already (committed, not merely written).
        seen_committed.append(float(n) in _readings(engine, session_id))
        return outcome

    async def main() -> list[str]:
        return list(await asyncio.gather(*(one(n) for n in range(1, 91))))

    outcomes = asyncio.run(main())
    assert set(outcomes) <= {"updated", "stale"}
    assert seen_committed == [True] * 90
    assert batcher.patches == 90 and batcher.batches < 90  # PATCHes really shared transactions
    assert sorted(_readings(engine, "S1") + _readings(engine, "S2") + _readings(engine, "S3")) == [
        float(n) for n in range(1, 91)
    ]
    assert [_session(engine, s)[0] for s in SESSIONS] == [90.0, 88.0, 89.0]  # the newest of each session


def test_a_failed_commit_acknowledges_nothing(
    peer: Peer, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(_connection: object) -> None:
        raise RuntimeError("the commit failed")

    monkeypatch.setattr(intake, "before_commit", fail)
    batcher = PatchBatcher(engine, writers=1)

    async def one(n: int) -> object:
        try:
            return await batcher.submit(peer.connection_id, "NL", "CPA", SESSIONS[n % 3], _changes(n))
        except RuntimeError as exc:
            return exc

    async def main() -> list[object]:
        return list(await asyncio.gather(*(one(n) for n in range(1, 21))))

    outcomes = asyncio.run(main())
    assert all(isinstance(o, RuntimeError) for o in outcomes)
    with engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(SessionReading)) == 0


def test_over_http_one_hostile_patch_among_concurrent_ones_gets_2001_and_the_others_1000(
    peer: Peer, app: FastAPI, engine: Engine
) -> None:
    def body(n: int, **extra: object) -> dict[str, object]:
        start = T0 + timedelta(minutes=5 * n)
        return {"kwh": float(n), "last_updated": format_datetime(start + timedelta(minutes=5)),
                "charging_periods": [{"start_date_time": format_datetime(start),
                                      "dimensions": [{"type": "POWER", "volume": float(n)}]}], **extra}

    async def main() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://vpp.test") as client:
            requests = [
                client.patch(f"/ocpi/2.2.1/sessions/NL/CPA/{SESSIONS[n % 3]}", json=body(n), headers=peer.headers)
                for n in range(1, 41)
            ]
            requests.insert(20, client.patch("/ocpi/2.2.1/sessions/NL/CPA/S1", json=body(100, location_id=None),
                                             headers=peer.headers))
            return list(await asyncio.gather(*requests))

    answers = asyncio.run(main())
    codes = [(a.status_code, a.json()["status_code"]) for a in answers]
    assert codes[20] == (200, 2001) and "location_id" in answers[20].json()["status_message"]
    assert codes[:20] + codes[21:] == [(200, 1000)] * 40
    assert 100.0 not in _readings(engine, "S1")
    assert len(_readings(engine, "S1") + _readings(engine, "S2") + _readings(engine, "S3")) == 40
    batcher: PatchBatcher = app.state.ocpi_app.state.ocpi_patch_batcher
    assert batcher.patches == 41


def test_the_batch_statement_is_the_single_patch_statement(postgres: None, engine: Engine) -> None:
    # The batch and the single-PATCH path (SQLite fallback aside) must not drift apart: same SQL, other placeholders.
    from vpp.sessions.service import _patch_statement

    single = str(_patch_statement(("energy_kwh", "status")))
    batched = intake.patch_sql(("energy_kwh", "status"))
    assert batched.replace("%(", ":").replace(")s", "").strip() == single.strip()
