"""The limits sent, as a re-plan reads them (``limits_sent_at``), are folded incrementally across calls and always
equal the fold of every cycle since the last full one: after new cycles, a new full cycle, a cycle committed late
among those folded, and a call for an earlier moment."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from vpp.activations.tables import DispatchAllocation
from vpp.db import unit_of_work
from vpp.dispatch import service
from vpp.dispatch.service import LimitsSentCache

POOL = "zone:NL"
T0 = datetime(2024, 6, 12, 15, 30, tzinfo=UTC)


def _cycle(factory: sessionmaker[Session], seconds: float, limits: dict[str, float], *, full: bool = False) -> None:
    with unit_of_work(factory) as db:
        db.add(DispatchAllocation(
            pool=POOL, at=T0 + timedelta(seconds=seconds), setpoint_mw=0.0, target_kw=0.0, total_kw=0.0,
            baseline_kw=0.0, measured_kw=0.0, sessions=len(limits), changed=len(limits), full=full,
            items={"s": list(limits), "kw": list(limits.values())}, owner="d1", fence=1))


def _whole(factory: sessionmaker[Session], until: datetime | None) -> dict[str, tuple[float, datetime]]:
    """The fold of every cycle since the last full one, by a cache that kept nothing."""
    with factory() as db:
        return LimitsSentCache().read(db, POOL, until)


def test_the_incremental_fold_equals_the_whole_one(session_factory: sessionmaker[Session]) -> None:
    cache = LimitsSentCache()

    def check(until: datetime | None) -> dict[str, tuple[float, datetime]]:
        with session_factory() as db:
            kept = cache.read(db, POOL, until)
        assert kept == _whole(session_factory, until)
        return kept

    assert check(None) == {}
    _cycle(session_factory, 0, {"a": 11.0, "b": 7.0, "c": 3.7}, full=True)
    assert check(T0) == {"a": (11.0, T0), "b": (7.0, T0), "c": (3.7, T0)}
    for k in range(1, 6):
        _cycle(session_factory, 4 * k, {"a": 11.0 - k})
        check(T0 + timedelta(seconds=4 * k))
    assert (cache.full_reads, cache.partial_reads) == (1, 5)
    # Two cycles of one moment, the second committed after a call had folded the first.
    _cycle(session_factory, 24, {"b": 5.0})
    check(T0 + timedelta(seconds=24))
    _cycle(session_factory, 24, {"c": 2.0})
    assert check(T0 + timedelta(seconds=24))["c"] == (2.0, T0 + timedelta(seconds=24))
    # A cycle committed late, before the moment already folded: counted, and everything is read again.
    reads = cache.full_reads
    _cycle(session_factory, 6, {"d": 1.0})
    assert check(T0 + timedelta(seconds=24))["d"] == (1.0, T0 + timedelta(seconds=6))
    assert cache.full_reads == reads + 1
    # A call for an earlier moment, then the latest again.
    check(T0 + timedelta(seconds=8))
    check(None)
    # A new owner's full cycle restates the limits: those unchanged keep when they were sent.
    _cycle(session_factory, 40, {"a": 6.0, "b": 5.0, "c": 2.0, "d": 0.0}, full=True)
    latest = check(T0 + timedelta(seconds=40))
    assert latest["a"][1] == T0 + timedelta(seconds=40) and latest["a"][0] == 6.0
    _cycle(session_factory, 44, {"b": 9.0})
    assert check(T0 + timedelta(seconds=44))["b"] == (9.0, T0 + timedelta(seconds=44))


def test_limits_sent_at_reads_through_the_kept_fold(session_factory: sessionmaker[Session]) -> None:
    _cycle(session_factory, 0, {"a": 11.0}, full=True)
    _cycle(session_factory, 4, {"a": 7.0})
    with session_factory() as db:
        assert service.limits_sent_at(db, POOL, until=T0 + timedelta(seconds=4)) == {
            "a": (7.0, T0 + timedelta(seconds=4))}
        assert service.limits_sent_at(db, POOL, until=T0) == {"a": (11.0, T0)}
