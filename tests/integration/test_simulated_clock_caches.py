"""The portfolio's caches age on the service's clock, not the wall clock: in a simulation (a ManualClock that runs
far faster than the wall) what the dispatcher sees must not depend on how fast the machine runs it."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from sim.cpo.clock import ManualClock
from tests.integration.portfolio_support import add_cpo, add_location, add_session
from vpp.db import unit_of_work
from vpp.portfolio.fleet import NeedDefaultsCache
from vpp.portfolio.service import PortfolioConfig, PortfolioService

START = datetime(2024, 6, 12, 17, 0, tzinfo=UTC)


def test_the_cached_fleet_expires_in_the_services_time_not_in_wall_time(
    session_factory: sessionmaker[Session],
) -> None:
    clock = ManualClock(START)
    portfolio = PortfolioService(session_factory, clock=clock, config=PortfolioConfig(fleet_cache_seconds=0.05))
    cid = add_cpo(session_factory)
    add_location(session_factory, cid, location_id="LOC1", evses=2, at=START - timedelta(days=1))
    add_session(session_factory, cid, session_id="S1", location_id="LOC1", evse=0, start=START - timedelta(hours=1))
    with unit_of_work(session_factory) as db:
        assert len(portfolio.fleet(db).session_ids) == 1
    # A session arrives over OCPI (not through the portfolio, so nothing invalidates the cache) ...
    add_session(session_factory, cid, session_id="S2", location_id="LOC1", evse=1, start=START)
    time.sleep(0.2)
    # ... and wall time passes: the service's clock stood still, so the fleet read at its moment is still fresh.
    assert portfolio.fleet_age_s() == 0.0
    with unit_of_work(session_factory) as db:
        assert len(portfolio.fleet(db).session_ids) == 1
    clock.advance(0.05)
    assert portfolio.fleet_age_s() == 0.05
    with unit_of_work(session_factory) as db:
        assert len(portfolio.fleet(db).session_ids) == 2
    assert portfolio.fleet_age_s() == 0.0


def test_need_defaults_are_learned_again_after_their_ttl_of_the_time_asked_for(
    session_factory: sessionmaker[Session],
) -> None:
    cache = NeedDefaultsCache(ttl_seconds=0.05)
    cid = add_cpo(session_factory)
    add_location(session_factory, cid, location_id="LOC1", evses=1, at=START - timedelta(days=3))
    add_session(session_factory, cid, session_id="S1", location_id="LOC1", evse=0, start=START - timedelta(days=2),
                delivered_kwh=10.0, status="completed", end=START - timedelta(days=2) + timedelta(hours=5))
    with unit_of_work(session_factory) as db:
        first = cache.get(db, START)
        time.sleep(0.2)
        assert cache.get(db, START) is first
        assert cache.get(db, START + timedelta(seconds=0.05)) is first
        # Past the TTL with the same completed sessions: the same defaults, not learned again.
        assert cache.get(db, START + timedelta(seconds=1)) is first
        assert cache.learned == 1
    # A session completes: past the TTL again, they are learned from the new history.
    add_session(session_factory, cid, session_id="S2", location_id="LOC1", evse=0, start=START - timedelta(days=1),
                delivered_kwh=30.0, status="completed", end=START - timedelta(days=1) + timedelta(hours=9))
    with unit_of_work(session_factory) as db:
        assert cache.get(db, START + timedelta(seconds=1.04)) is first
        again = cache.get(db, START + timedelta(seconds=2))
        assert again is not first and cache.learned == 2
