"""The topology frames (the locations' sites, the connectors' powers) are kept while the database's ``topology``
change mark stays, and every write of another connection (another process's, as the OCPI intake's) that changes
what they read is seen: the kept frames equal fresh reads."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from sqlalchemy import Engine, update
from sqlalchemy.orm import Session, sessionmaker

from tests.integration.portfolio_support import add_cpo, add_location
from vpp.db import create_db_engine, create_session_factory, unit_of_work
from vpp.locations.tables import ChargingConnector, ChargingEvse
from vpp.portfolio import fleet
from vpp.portfolio.fleet import TOPOLOGY, connector_frame, site_frame
from vpp.portfolio.tables import Site, SiteLocation

NOW = datetime(2024, 6, 12, 12, 0, tzinfo=UTC)


@pytest.fixture
def other(database_url: str, engine: Engine) -> Iterator[sessionmaker[Session]]:
    """Sessions on a second engine of the same database: another process's connections."""
    second = create_db_engine(database_url, pool_size=2)
    yield create_session_factory(second)
    second.dispose()


def _frames(factory: sessionmaker[Session], cid: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    with factory() as db:
        return site_frame(db), connector_frame(db, [cid])


def _fresh(factory: sessionmaker[Session], cid: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    with factory() as db:
        return fleet._read_site_frame(db), fleet._read_connector_frame(db, [cid])


def _check(factory: sessionmaker[Session], cid: str, *, read: bool | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The kept frames, read again (``read``) or not (None: either), equal to fresh reads."""
    before = TOPOLOGY.reads
    sites, connectors = _frames(factory, cid)
    if read is not None:
        assert TOPOLOGY.reads == before + (2 if read else 0)
    fresh_sites, fresh_connectors = _fresh(factory, cid)
    pd.testing.assert_frame_equal(sites, fresh_sites)
    pd.testing.assert_frame_equal(connectors, fresh_connectors)
    return sites, connectors


def test_kept_topology_sees_writes_of_another_connection(
    session_factory: sessionmaker[Session], other: sessionmaker[Session],
) -> None:
    cid = add_cpo(session_factory)
    add_location(session_factory, cid, location_id="LOC1", evses=2, at=NOW - timedelta(days=1))
    _frames(session_factory, cid)
    sites, connectors = _check(session_factory, cid, read=False)
    assert sites.empty and len(connectors) == 2
    # A caller's changes to its copy stay its own.
    connectors.loc[:, "max_kw"] = 0.0
    assert (_check(session_factory, cid, read=False)[1]["max_kw"] > 0).all()

    # A site and its location, from the other engine.
    with unit_of_work(other) as db:
        db.add(Site(id="S1", capacity_kw=50.0))
        db.flush()
        db.add(SiteLocation(party_key="nl*cpa", location_key="loc1", site_id="S1"))
    assert _check(session_factory, cid, read=True)[0]["site_id"].tolist() == ["S1"]
    with unit_of_work(other) as db:
        db.execute(update(Site).where(Site.id == "S1").values(capacity_kw=40.0))
    assert _check(session_factory, cid, read=True)[0]["site_capacity_kw"].tolist() == [40.0]
    # A new EVSE (a Location PUT) and a connector's power.
    add_location(other, cid, location_id="LOC2", evses=1, at=NOW)
    assert len(_check(session_factory, cid, read=True)[1]) == 3
    with unit_of_work(other) as db:
        db.execute(update(ChargingConnector).values(max_power_kw=7.4))
    assert set(_check(session_factory, cid, read=True)[1]["max_kw"]) == {7.4}
    # An EVSE's status (pushed on every plug-in) is not read, and does not move the mark.
    with unit_of_work(other) as db:
        db.execute(update(ChargingEvse).values(status="CHARGING"))
    _check(session_factory, cid, read=False)
    with unit_of_work(other) as db:
        db.execute(update(ChargingEvse).values(capabilities=["V2G_CAPABLE"]))
    assert _check(session_factory, cid, read=True)[1]["v2g_capable"].all()


def test_topology_read_inside_a_writing_transaction_is_not_kept_past_its_rollback(
    session_factory: sessionmaker[Session],
) -> None:
    cid = add_cpo(session_factory)
    add_location(session_factory, cid, location_id="LOC1", evses=1, at=NOW - timedelta(days=1))
    _check(session_factory, cid, read=True)
    with session_factory() as db:
        db.execute(update(ChargingConnector).values(max_power_kw=3.7))
        # The transaction sees its own write ...
        assert connector_frame(db, [cid])["max_kw"].tolist() == [3.7]
        db.rollback()
    # ... and once it rolled back, nobody does (SQLite kept the frame under the rolled-back token, PostgreSQL did not
    # keep it: either reads the committed frame).
    assert _check(session_factory, cid, read=None)[1]["max_kw"].tolist() != [3.7]
