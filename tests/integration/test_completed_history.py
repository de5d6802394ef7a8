"""The completed sessions the forecast and the need learner read are kept between reads, and always the same as
reading them afresh: after new completions, changes, a session no longer completed, and deletions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
from sqlalchemy import delete
from sqlalchemy.orm import Session, sessionmaker

from tests.integration.portfolio_support import add_cpo, add_location, add_session
from vpp.db import unit_of_work
from vpp.portfolio.fleet import CompletedHistoryCache
from vpp.sessions.tables import ChargingSession

NOW = datetime(2024, 6, 12, 12, 0, tzinfo=UTC)


def _fresh(factory: sessionmaker[Session], days: int) -> pd.DataFrame:
    with factory() as db:
        return CompletedHistoryCache().read(db, NOW, days)


def _kept(cache: CompletedHistoryCache, factory: sessionmaker[Session], days: int) -> pd.DataFrame:
    with factory() as db:
        return cache.read(db, NOW, days)


def test_kept_history_equals_a_fresh_read_after_completions_changes_and_deletions(
    session_factory: sessionmaker[Session],
) -> None:
    cid = add_cpo(session_factory)
    add_location(session_factory, cid, location_id="LOC1", evses=4, at=NOW - timedelta(days=30))

    def completed(name: str, start: datetime, kwh: float, status: str = "completed") -> str:
        return add_session(session_factory, cid, session_id=name, location_id="LOC1", evse=0, start=start,
                           delivered_kwh=kwh, status=status, end=start + timedelta(hours=3))

    for day in range(1, 6):
        completed(f"H{day}", NOW - timedelta(days=day, hours=2), 10.0 + day)
    cache = CompletedHistoryCache()
    first = _kept(cache, session_factory, 28)
    assert len(first) == 5 and cache.full_reads == 1
    pd.testing.assert_frame_equal(first, _fresh(session_factory, 28))
    # Nothing written: nothing read but the count.
    pd.testing.assert_frame_equal(_kept(cache, session_factory, 28), first)
    assert (cache.full_reads, cache.partial_reads) == (1, 0)

    # A new completion and a change to a kept one: read incrementally, the same as afresh.
    completed("N1", NOW - timedelta(hours=5), 7.0)
    add_session(session_factory, cid, session_id="H2", location_id="LOC1", evse=0,
                start=NOW - timedelta(days=2, hours=2), delivered_kwh=99.0, status="completed",
                end=NOW - timedelta(days=2) + timedelta(hours=2))
    kept = _kept(cache, session_factory, 28)
    assert (cache.full_reads, cache.partial_reads) == (1, 1)
    pd.testing.assert_frame_equal(kept, _fresh(session_factory, 28))
    assert len(kept) == 6 and 99.0 in kept["energy_kwh"].tolist()
    assert kept["arrival"].is_monotonic_increasing

    # A shorter period of the same kept rows, and one session no longer completed.
    pd.testing.assert_frame_equal(_kept(cache, session_factory, 3), _fresh(session_factory, 3))
    add_session(session_factory, cid, session_id="N1", location_id="LOC1", evse=0, start=NOW - timedelta(hours=1),
                delivered_kwh=8.0, status="active")
    pd.testing.assert_frame_equal(_kept(cache, session_factory, 28), _fresh(session_factory, 28))
    assert len(_kept(cache, session_factory, 28)) == 5

    # Deleted sessions (retention): the count disagrees and everything is read again.
    with unit_of_work(session_factory) as db:
        db.execute(delete(ChargingSession).where(ChargingSession.external_id.in_(["H4", "H5"])))
    full = cache.full_reads
    pd.testing.assert_frame_equal(_kept(cache, session_factory, 28), _fresh(session_factory, 28))
    assert cache.full_reads == full + 1 and len(_kept(cache, session_factory, 28)) == 3


def test_a_partial_read_skips_the_active_sessions_written_since(session_factory: sessionmaker[Session]) -> None:
    """Active sessions are written at every period they report: a partial read takes only the completed sessions
    written since, and a kept session that is no longer completed is caught by the count (read afresh)."""
    from unittest.mock import patch

    from vpp.portfolio import fleet as fleet_module

    cid = add_cpo(session_factory)
    add_location(session_factory, cid, location_id="LOC1", evses=4, at=NOW - timedelta(days=30))
    for day in range(1, 4):
        add_session(session_factory, cid, session_id=f"H{day}", location_id="LOC1", evse=0,
                    start=NOW - timedelta(days=day, hours=2), delivered_kwh=10.0, status="completed",
                    end=NOW - timedelta(days=day))
    cache = CompletedHistoryCache()
    _kept(cache, session_factory, 28)
    for k in range(5):
        add_session(session_factory, cid, session_id=f"A{k}", location_id="LOC1", evse=1,
                    start=NOW - timedelta(hours=1, minutes=k), delivered_kwh=1.0)
    add_session(session_factory, cid, session_id="N1", location_id="LOC1", evse=2, start=NOW - timedelta(hours=4),
                delivered_kwh=5.0, status="completed", end=NOW - timedelta(hours=1))
    seen: list[int] = []
    real = fleet_module._history_rows

    def counting(*args: object, **kwargs: object) -> pd.DataFrame:
        rows = real(*args, **kwargs)  # type: ignore[arg-type]
        seen.append(len(rows))
        return rows

    with patch.object(fleet_module, "_history_rows", counting):
        kept = _kept(cache, session_factory, 28)
    # The new completion (and the kept ones written within the margin), none of the five active sessions.
    assert (cache.full_reads, cache.partial_reads) == (1, 1) and seen == [4]
    pd.testing.assert_frame_equal(kept, _fresh(session_factory, 28))

    # A kept session no longer completed is not among the rows read: the count disagrees, all is read again.
    # (Its update is newer than its completion, or it would be ignored as stale.)
    add_session(session_factory, cid, session_id="H1", location_id="LOC1", evse=0,
                start=NOW - timedelta(minutes=30), delivered_kwh=10.0, status="active")
    kept = _kept(cache, session_factory, 28)
    assert cache.full_reads == 2
    pd.testing.assert_frame_equal(kept, _fresh(session_factory, 28))
    assert len(kept) == 3


def test_a_partial_read_that_finds_nothing_keeps_the_column_types(session_factory: sessionmaker[Session]) -> None:
    """A partial read whose query returns no rows keeps the kept rows as they are: concatenated with a frame of
    no rows (no column types), their energies and times became objects, and the forecast's sums over them moved."""
    cid = add_cpo(session_factory)
    add_location(session_factory, cid, location_id="LOC1", evses=4, at=NOW - timedelta(days=30))
    for day in range(1, 4):
        add_session(session_factory, cid, session_id=f"H{day}", location_id="LOC1", evse=0,
                    start=NOW - timedelta(days=day, hours=2), delivered_kwh=10.0 + day, status="completed",
                    end=NOW - timedelta(days=day))
    cache = CompletedHistoryCache()
    first = _kept(cache, session_factory, 28)
    # The latest write as kept is later than the database's: the partial read asks from after every write.
    for kept in cache._kept.values():
        kept[28].newest = kept[28].newest + timedelta(hours=1)
    again = _kept(cache, session_factory, 28)
    assert (cache.full_reads, cache.partial_reads) == (1, 1)
    pd.testing.assert_frame_equal(again, first)
    assert again["energy_kwh"].dtype == "float64"
