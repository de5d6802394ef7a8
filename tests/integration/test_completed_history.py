"""The completed sessions the forecast and the need learner read are kept between reads, and always the same as
reading them afresh: after new completions, changes, a session no longer completed, and deletions."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pandas as pd
from sqlalchemy import delete, select
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


def _history(factory: sessionmaker[Session], days: range, kwh: Callable[[int], float]) -> str:
    """A CPO with one location and, for each of ``days``, a session completed that many days ago; the CPO's id."""
    cid = add_cpo(factory)
    add_location(factory, cid, location_id="LOC1", evses=4, at=NOW - timedelta(days=30))
    for day in days:
        add_session(factory, cid, session_id=f"H{day}", location_id="LOC1", evse=0,
                    start=NOW - timedelta(days=day, hours=2), delivered_kwh=kwh(day), status="completed",
                    end=NOW - timedelta(days=day))
    return cid


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

    cid = _history(session_factory, range(1, 4), lambda day: 10.0)
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
    # The new completion read whole; the kept ones written within the margin are known by their stamps; none of
    # the five active sessions.
    assert (cache.full_reads, cache.partial_reads) == (1, 1) and seen == [1]
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
    _history(session_factory, range(1, 4), lambda day: 10.0 + day)
    cache = CompletedHistoryCache()
    first = _kept(cache, session_factory, 28)
    # The latest write as kept is later than the database's: the partial read asks from after every write.
    for kept in cache._kept.values():
        kept[28].newest = kept[28].newest + timedelta(hours=1)
    again = _kept(cache, session_factory, 28)
    assert (cache.full_reads, cache.partial_reads) == (1, 1)
    pd.testing.assert_frame_equal(again, first)
    assert again["energy_kwh"].dtype == "float64"


def test_a_partial_read_reads_whole_only_the_sessions_whose_stamp_moved(
    session_factory: sessionmaker[Session],
) -> None:
    """Within the commit margin every kept session is seen again by id and stamp; only a new completion and a kept
    session written again (a later stamp) are read whole, and the result is a fresh read's."""
    from unittest.mock import patch

    from vpp.portfolio import fleet as fleet_module

    cid = _history(session_factory, range(1, 6), lambda day: 10.0 + day)
    cache = CompletedHistoryCache()
    _kept(cache, session_factory, 28)
    # H3 written again (a CDR's energy, say: a later last_updated and a new stamp), and a new completion.
    add_session(session_factory, cid, session_id="H3", location_id="LOC1", evse=0,
                start=NOW - timedelta(days=3, hours=2), delivered_kwh=42.5, status="completed",
                end=NOW - timedelta(days=3) + timedelta(minutes=5))
    add_session(session_factory, cid, session_id="N1", location_id="LOC1", evse=1, start=NOW - timedelta(hours=4),
                delivered_kwh=5.0, status="completed", end=NOW - timedelta(hours=1))
    read_whole: list[list[str]] = []
    real = fleet_module._history_rows

    def counting(db: Session, since: datetime, ids: list[str]) -> pd.DataFrame:
        read_whole.append(sorted(ids))
        return real(db, since, ids)

    with patch.object(fleet_module, "_history_rows", counting):
        kept = _kept(cache, session_factory, 28)
    with session_factory() as db:
        ids = dict(db.execute(select(ChargingSession.external_id, ChargingSession.id)).all())
    assert read_whole == [sorted([ids["H3"], ids["N1"]])]
    assert (cache.full_reads, cache.partial_reads) == (1, 1)
    pd.testing.assert_frame_equal(kept, _fresh(session_factory, 28))
    assert 42.5 in kept["energy_kwh"].tolist() and len(kept) == 6


def test_a_narrower_window_is_served_by_the_wider_one_kept(session_factory: sessionmaker[Session]) -> None:
    """The need learner keeps 90 days, the forecast asks for 28: the 28 days come from the 90 kept (one partial
    read keeps both up to date) and are a fresh 28-day read's, before and after a change."""
    cid = add_cpo(session_factory)
    add_location(session_factory, cid, location_id="LOC1", evses=4, at=NOW - timedelta(days=80))
    for day in (1, 2, 10, 27, 29, 40, 60):
        add_session(session_factory, cid, session_id=f"H{day}", location_id="LOC1", evse=day % 4,
                    start=NOW - timedelta(days=day, hours=2), delivered_kwh=float(day), status="completed",
                    end=NOW - timedelta(days=day))
    cache = CompletedHistoryCache()
    wide = _kept(cache, session_factory, 90)
    pd.testing.assert_frame_equal(wide, _fresh(session_factory, 90))
    narrow = _kept(cache, session_factory, 28)
    pd.testing.assert_frame_equal(narrow, _fresh(session_factory, 28))
    assert len(wide) == 7 and len(narrow) == 4 and cache.full_reads == 1
    add_session(session_factory, cid, session_id="N1", location_id="LOC1", evse=1, start=NOW - timedelta(hours=4),
                delivered_kwh=5.0, status="completed", end=NOW - timedelta(hours=1))
    add_session(session_factory, cid, session_id="H10", location_id="LOC1", evse=2,
                start=NOW - timedelta(days=10, hours=2), delivered_kwh=77.0, status="completed",
                end=NOW - timedelta(days=10) + timedelta(minutes=5))
    pd.testing.assert_frame_equal(_kept(cache, session_factory, 90), _fresh(session_factory, 90))
    narrow = _kept(cache, session_factory, 28)
    pd.testing.assert_frame_equal(narrow, _fresh(session_factory, 28))
    assert (cache.full_reads, cache.partial_reads) == (1, 1)
    assert len(narrow) == 5 and 77.0 in narrow["energy_kwh"].tolist()
    # Asked for first, a narrower window keeps its own rows until a wider one is kept, which then serves it.
    other = CompletedHistoryCache()
    pd.testing.assert_frame_equal(_kept(other, session_factory, 28), _fresh(session_factory, 28))
    pd.testing.assert_frame_equal(_kept(other, session_factory, 90), _fresh(session_factory, 90))
    pd.testing.assert_frame_equal(_kept(other, session_factory, 28), _fresh(session_factory, 28))
    assert other.full_reads == 2 and all(set(kept) == {90} for kept in other._kept.values())
