"""The fleet read keeps the active sessions' frame while the database's ``fleet`` change mark stays, and sees every
write of another connection (another process's, as the OCPI intake's): the kept fleet equals a fresh read."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import Engine, update
from sqlalchemy.orm import Session, sessionmaker

from tests.integration.portfolio_support import add_cpo, add_location, add_session
from vpp.db import create_db_engine, create_session_factory, unit_of_work
from vpp.ocpi.tables import OcpiConnection
from vpp.portfolio import fleet as fleet_module
from vpp.portfolio.fleet import ACTIVE_FRAMES, ActiveFrameCache, Fleet, load_fleet
from vpp.portfolio.tables import ChargingNeedRow
from vpp.sessions.tables import ChargingSession

NOW = datetime(2024, 6, 12, 12, 0, tzinfo=UTC)


@pytest.fixture
def other(database_url: str, engine: Engine) -> Iterator[sessionmaker[Session]]:
    """Sessions on a second engine of the same database: another process's connections."""
    second = create_db_engine(database_url, pool_size=2)
    yield create_session_factory(second)
    second.dispose()


def _kept(factory: sessionmaker[Session]) -> Fleet:
    with factory() as db:
        return load_fleet(db, NOW)


def _fresh(factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch) -> Fleet:
    with monkeypatch.context() as patch, factory() as db:
        patch.setattr(fleet_module, "ACTIVE_FRAMES", ActiveFrameCache())
        return load_fleet(db, NOW)


def _same(a: Fleet, b: Fleet) -> None:
    assert a.session_ids == b.session_ids
    for name in ("delivered_kwh", "energy_needed_kwh", "max_kw", "discharge_kw", "current_kw", "soc_kwh",
                 "battery_kwh", "reading_start_s", "reading_end_s"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert list(a.departure) == list(b.departure)
    assert list(a.site_pool) == list(b.site_pool) and list(a.need_source) == list(b.need_source)


def test_the_kept_frame_sees_writes_of_another_connection(
    session_factory: sessionmaker[Session], other: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch,
) -> None:
    cid = add_cpo(session_factory)
    add_location(session_factory, cid, location_id="LOC1", evses=4, at=NOW - timedelta(days=1))
    add_session(session_factory, cid, session_id="S1", location_id="LOC1", evse=0, start=NOW - timedelta(hours=1),
                delivered_kwh=3.0, power_kw=7.0)
    first = _kept(session_factory)
    assert first.session_ids and ACTIVE_FRAMES.reads >= 1
    reads, reuses = ACTIVE_FRAMES.reads, ACTIVE_FRAMES.reuses
    # Nothing written: the frame is not read again, and the fleet is the same.
    _same(_kept(session_factory), first)
    assert (ACTIVE_FRAMES.reads, ACTIVE_FRAMES.reuses) == (reads, reuses + 1)

    def step(write: object) -> Fleet:
        """After a write through the other engine, the kept fleet is read afresh and equals a fresh read."""
        before = ACTIVE_FRAMES.reads
        kept = _kept(session_factory)
        assert ACTIVE_FRAMES.reads == before + 1, write
        _same(kept, _fresh(session_factory, monkeypatch))
        return kept

    # A new session (the intake's PUT), from the other engine.
    s2 = add_session(other, cid, session_id="S2", location_id="LOC1", evse=1, start=NOW - timedelta(minutes=30),
                     delivered_kwh=1.0, power_kw=11.0)
    assert len(step("new session").session_ids) == 2
    # A PATCH with a new reading of a kept session.
    add_session(other, cid, session_id="S1", location_id="LOC1", evse=0, start=NOW - timedelta(hours=1),
                delivered_kwh=4.5, power_kw=3.7)
    assert 4.5 in step("new reading").delivered_kwh.tolist()
    # A stated need.
    with unit_of_work(other) as db:
        db.add(ChargingNeedRow(session_id=s2, departure_at=NOW + timedelta(hours=3), energy_kwh=20.0))
    assert "explicit" in step("need").need_source.tolist()
    # The connection's flags are read; its other columns are not, and do not move the mark.
    with unit_of_work(other) as db:
        db.execute(update(OcpiConnection).where(OcpiConnection.id == cid).values(name="renamed"))
    reads = ACTIVE_FRAMES.reads
    _kept(session_factory)
    assert ACTIVE_FRAMES.reads == reads
    with unit_of_work(other) as db:
        db.execute(update(OcpiConnection).where(OcpiConnection.id == cid).values(
            flags={"discharge_profiles": True}))
    step("flags")
    # The session leaves.
    add_session(other, cid, session_id="S1", location_id="LOC1", evse=0, start=NOW - timedelta(hours=1),
                delivered_kwh=5.0, status="completed", end=NOW - timedelta(minutes=1))
    assert len(step("completed").session_ids) == 1


def test_a_frame_read_inside_a_writing_transaction_is_not_kept_past_its_rollback(
    session_factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch,
) -> None:
    cid = add_cpo(session_factory)
    add_location(session_factory, cid, location_id="LOC1", evses=2, at=NOW - timedelta(days=1))
    add_session(session_factory, cid, session_id="S1", location_id="LOC1", evse=0, start=NOW - timedelta(hours=1),
                delivered_kwh=3.0, power_kw=7.0)
    assert _kept(session_factory).delivered_kwh.tolist() == [3.0]
    with session_factory() as db:
        db.execute(update(ChargingSession).values(energy_kwh=99.0))
        # The transaction sees its own write ...
        assert load_fleet(db, NOW).delivered_kwh.tolist() == [99.0]
        db.rollback()
    # ... and once it rolled back, nobody does.
    _same(_kept(session_factory), _fresh(session_factory, monkeypatch))
    assert _kept(session_factory).delivered_kwh.tolist() == [3.0]
