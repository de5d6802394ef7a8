"""Time partitions on PostgreSQL: the migration of a populated database both ways, and the beat job that creates
partitions ahead, re-homes stranded rows and drops only settled days past retention. SQLite stays plain."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from vpp import migrate
from vpp.activations.tables import AfrrSetpoint, DispatchAllocation, DispatchSend, PoolResponse
from vpp.config import Settings
from vpp.db import new_id, unit_of_work
from vpp.jobs import partitions
from vpp.ocpi.tables import OcpiConnection
from vpp.sessions.tables import ChargingSession, SessionReading
from vpp.settlement.tables import SettlementRun

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
POOL = "portfolio:nl"
POLICY = partitions.RetentionPolicy(retention_days=30, ahead_days=3, time_zone="Europe/Amsterdam")


def _require_postgres(engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("partitions exist on PostgreSQL only")


def _fill(factory: sessionmaker[Session], moments: list[datetime]) -> str:
    """A session with a reading, an allocation, a send, a pool response and a setpoint at each moment."""
    with unit_of_work(factory) as db:
        connection = OcpiConnection(name="cpo")
        db.add(connection)
        db.flush()
        session = ChargingSession(
            connection_id=connection.id, country_code="NL", party_id="CPO", party_key="nl|cpo", external_id="S1",
            external_key="s1", status="active", start_at=moments[0], location_id="L", evse_uid="E",
            connector_id="1", currency="EUR", last_updated=moments[0])
        db.add(session)
        db.flush()
        for k, at in enumerate(moments):
            allocation = new_id()
            db.add_all([
                SessionReading(session_id=session.id, start_at=at, power_kw=7.0 + k, energy_kwh=1.0),
                DispatchAllocation(id=allocation, pool=POOL, at=at, setpoint_mw=0.0, target_kw=1.0, total_kw=1.0,
                                   baseline_kw=1.0, measured_kw=1.0, sessions=1, changed=1, owner="t", fence=1),
                DispatchSend(allocation_id=allocation, pool=POOL, batch="b", sent_at=at, completed_at=at),
                PoolResponse(pool=POOL, at=at, requested_mw=0.0, supplied_mw=0.0, target_kw=1.0, measured_kw=1.0,
                             baseline_kw=1.0, supplied_kw=0.0),
                AfrrSetpoint(pool=POOL, seq=k, timestamp=at, requested_mw=0.0, setpoint_mw=0.0,
                             capacity_up_mw=1.0, capacity_down_mw=1.0),
            ])
        return session.id


def _rows(engine: Engine) -> dict[str, list[tuple[object, ...]]]:
    found = {}
    with engine.connect() as conn:
        for table, key in partitions.PARTITIONED.items():
            found[table] = [tuple(r) for r in conn.execute(text(f"SELECT * FROM {table} ORDER BY {key}"))]
    return found


def _homes(engine: Engine, table: str) -> list[str]:
    key = partitions.PARTITIONED[table]
    with engine.connect() as conn:
        return list(conn.scalars(text(f"SELECT tableoid::regclass::text FROM {table} ORDER BY {key}")))


def test_the_migration_partitions_a_populated_database_and_the_downgrade_restores_plain_tables(
    engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    _require_postgres(engine)
    migrate.downgrade(engine, "0007_plan")
    try:
        moments = [NOW - timedelta(days=40), NOW - timedelta(days=1, hours=3), NOW]
        _fill(session_factory, moments)
        before = _rows(engine)
        assert all(len(rows) == 3 for rows in before.values())
        with engine.connect() as conn:
            assert not any(partitions.is_partitioned(conn, table) for table in partitions.PARTITIONED)

        migrate.upgrade(engine, "0008_partitions")
        assert _rows(engine) == before
        with engine.connect() as conn:
            assert all(partitions.is_partitioned(conn, table) for table in partitions.PARTITIONED)
            days = partitions.partition_days(conn, "session_readings")
        assert {m.date() for m in moments} <= set(days)
        for table in partitions.PARTITIONED:
            assert _homes(engine, table) == [partitions.partition_name(table, m.date()) for m in moments]

        migrate.downgrade(engine, "0007_plan")
        assert _rows(engine) == before
        with engine.connect() as conn:
            assert not any(partitions.is_partitioned(conn, table) for table in partitions.PARTITIONED)
            leftovers = conn.scalars(text("SELECT relname FROM pg_class WHERE relname LIKE 'session_readings_p%'"))
            assert list(leftovers) == []
        # The plain tables keep their keys: a duplicate reading is still refused.
        with pytest.raises(Exception, match="pk_session_readings"), engine.begin() as conn:
            conn.execute(text("INSERT INTO session_readings (session_id, start_at) "
                              "SELECT session_id, start_at FROM session_readings LIMIT 1"))
    finally:
        migrate.upgrade(engine)
    assert migrate.current_revision(engine) == migrate.head_revision()


def test_the_job_creates_partitions_ahead_and_rehomes_rows_of_a_day_without_one(
    engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    _require_postgres(engine)
    far = NOW + timedelta(days=60)
    _fill(session_factory, [NOW, far])
    assert _homes(engine, "session_readings")[-1] == "session_readings_default"

    detail = partitions.maintain(session_factory, POLICY, now=NOW)
    assert detail["failed"] == {}
    for k in range(POLICY.ahead_days + 1):
        assert partitions.partition_name("session_readings", NOW.date() + timedelta(days=k)) in \
            _partition_names(engine, "session_readings")
    assert detail["moved_rows"] == len(partitions.PARTITIONED)
    for table in partitions.PARTITIONED:
        assert _homes(engine, table) == [partitions.partition_name(table, d) for d in (NOW.date(), far.date())]

    again = partitions.maintain(session_factory, POLICY, now=NOW)
    assert (again["created"], again["moved_rows"], again["dropped"]) == ([], 0, [])


def _partition_names(engine: Engine, table: str) -> set[str]:
    with engine.connect() as conn:
        return {partitions.partition_name(table, d) for d in partitions.partition_days(conn, table)}


def test_retention_drops_old_days_only_once_settlement_has_run_for_them(
    engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    _require_postgres(engine)
    old = NOW - timedelta(days=45)
    _fill(session_factory, [old, NOW])
    partitions.maintain(session_factory, POLICY, now=old)  # the old day's partitions (and its neighbours) exist
    old_name = partitions.partition_name("pool_responses", old.date())

    kept = partitions.maintain(session_factory, POLICY, now=NOW)
    assert old.date().isoformat() in kept["kept"][old_name]
    assert old_name in _partition_names(engine, "pool_responses")
    assert kept["deleted_setpoints"] == 0

    with unit_of_work(session_factory) as db:
        day = old.date() - timedelta(days=4)
        while day <= old.date() + timedelta(days=4):
            db.add(SettlementRun(day=day, pool=POOL, status="settled", baseline_method="test"))
            day += timedelta(days=1)
    dropped = partitions.maintain(session_factory, POLICY, now=NOW)
    assert old_name in dropped["dropped"]
    assert dropped["deleted_setpoints"] == 1
    for table in partitions.PARTITIONED:
        assert partitions.partition_name(table, old.date()) not in _partition_names(engine, table)
        assert _homes(engine, table) == [partitions.partition_name(table, NOW.date())]
    with unit_of_work(session_factory) as db:
        assert db.query(AfrrSetpoint).count() == 1
        # A late CDR no longer recomputes the dropped day (its settled run stands); today is still there.
        assert partitions.dropped(db.connection(), old.date(), POLICY.time_zone)
        assert not partitions.dropped(db.connection(), NOW.date(), POLICY.time_zone)


def test_sqlite_keeps_plain_tables_and_the_job_does_nothing(
    engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip("the SQLite side")
    _fill(session_factory, [NOW])
    assert partitions.maintain(session_factory, POLICY, now=NOW) == {"skipped": "partitions exist on PostgreSQL only"}
    with session_factory() as db:
        assert not partitions.dropped(db.connection(), (NOW - timedelta(days=400)).date(), POLICY.time_zone)
    assert not partitions.is_partition("session_readings")
    assert partitions.is_partition("session_readings_p20261206") and partitions.is_partition("pool_responses_default")


def test_the_partition_task_runs_and_records_an_ok_run_on_each_backend(
    settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    from vpp.jobs import service as jobs
    from workers.runtime import InProcessTaskQueue, Runtime

    queue = InProcessTaskQueue(Runtime(settings=settings, session_factory=session_factory))
    queue.enqueue("housekeeping.partitions")
    queue.shutdown()
    with session_factory() as db:
        runs = jobs.last_runs(db, "housekeeping.partitions")
    assert [run.status for run in runs] == ["ok"]
    if settings.resolved_database_url.startswith("postgresql"):
        with session_factory() as db:
            days = partitions.partition_days(db.connection(), "session_readings")
        today = datetime.now(UTC).date()
        assert {today + timedelta(days=k) for k in range(settings.partition_ahead_days + 1)} <= set(days)


def test_beat_runs_the_partition_job() -> None:
    from workers.schedule import periodic_jobs

    jobs = {job.task_name: job.every_seconds for job in periodic_jobs(Settings(partition_interval_seconds=600.0))}
    assert jobs["housekeeping.partitions"] == 600.0


def test_flexibility_reads_the_latest_reading_of_each_active_session_only(
    engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    from vpp.portfolio.fleet import latest_readings

    active = _fill(session_factory, [NOW - timedelta(hours=2), NOW - timedelta(minutes=5), NOW - timedelta(hours=1)])
    with unit_of_work(session_factory) as db:
        done = ChargingSession(
            connection_id=db.get_one(ChargingSession, active).connection_id, country_code="NL", party_id="CPO",
            party_key="nl|cpo", external_id="S2", external_key="s2", status="completed", start_at=NOW,
            location_id="L", evse_uid="E2", connector_id="1", currency="EUR", last_updated=NOW)
        db.add(done)
        db.flush()
        db.add(SessionReading(session_id=done.id, start_at=NOW + timedelta(minutes=1), power_kw=1.0))
    with session_factory() as db:
        frame = latest_readings(db)
    assert list(frame["id"]) == [active]
    assert frame["current_kw"].iloc[0] == 8.0  # the reading at NOW - 5 min (the second one filled)
    assert frame["reading_start"].iloc[0] == NOW - timedelta(minutes=5)


def _session_rows(connection_id: str, first: int, count: int, status: str, start: datetime) -> list[dict[str, object]]:
    return [{"id": f"S{k:031d}", "connection_id": connection_id, "country_code": "NL", "party_id": "CPO",
             "party_key": "nl|cpo", "external_id": f"S{k}", "external_key": f"s{k}", "status": status,
             "start_at": start, "location_id": "L", "evse_uid": f"E{k}", "connector_id": "1", "currency": "EUR",
             "last_updated": NOW} for k in range(first, first + count)]


def test_flexibility_finds_the_latest_reading_across_day_partitions_and_of_a_session_left_active_for_days(
    engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    """A session plugged in a week ago (its readings in old day partitions and today's), one whose newest reading
    lies in tomorrow's partition, and one with no reading yet: each gets its own newest reading, on each backend."""
    from sqlalchemy import insert

    from vpp.portfolio.fleet import latest_readings

    week_ago = NOW - timedelta(days=7)
    for day in range(9):  # a partition for each day (PostgreSQL; the job skips SQLite)
        partitions.maintain(session_factory, POLICY, now=week_ago + timedelta(days=day))
    with unit_of_work(session_factory) as db:
        connection = OcpiConnection(name="cpo")
        db.add(connection)
        db.flush()
        db.execute(insert(ChargingSession), [*_session_rows(connection.id, 0, 1, "active", week_ago),
                                             *_session_rows(connection.id, 1, 2, "active", NOW - timedelta(hours=2))])
        old, late, bare = (f"S{k:031d}" for k in range(3))
        db.execute(insert(SessionReading), [
            *({"session_id": old, "start_at": week_ago + timedelta(hours=h), "power_kw": 1.0}
              for h in range(0, 168, 6)),
            {"session_id": old, "start_at": NOW - timedelta(minutes=10), "power_kw": 4.0, "soc_pct": 40.0},
            {"session_id": late, "start_at": NOW - timedelta(hours=1), "power_kw": 2.0},
            {"session_id": late, "start_at": NOW + timedelta(hours=13), "power_kw": 6.0, "soc_pct": 60.0},
        ])
    with session_factory() as db:
        frame = latest_readings(db).set_index("id")
    assert sorted(frame.index) == sorted([old, late])  # no reading, no row: the fleet leaves its reading empty
    assert frame.loc[old, "current_kw"] == 4.0 and frame.loc[old, "soc_pct"] == 40.0
    assert frame.loc[old, "reading_start"] == NOW - timedelta(minutes=10)
    assert frame.loc[late, "current_kw"] == 6.0 and frame.loc[late, "soc_pct"] == 60.0
    assert frame.loc[late, "reading_start"] == NOW + timedelta(hours=13)
    assert bare not in frame.index


def _rows_read(plan: dict[str, object], prefix: str) -> float:
    """Rows the scans of tables named ``prefix``* returned or filtered out, over all their loops."""
    loops = float(plan.get("Actual Loops", 1))  # type: ignore[arg-type]
    own = 0.0
    if str(plan.get("Relation Name", "")).startswith(prefix):
        per_loop = float(plan.get("Actual Rows", 0)) + float(plan.get("Rows Removed by Filter", 0))  # type: ignore[arg-type]
        own = per_loop * loops
    children = plan.get("Plans", [])
    return own + sum(_rows_read(child, prefix) for child in children)  # type: ignore[union-attr]


def test_the_flexibility_read_takes_one_reading_per_active_session_whatever_else_is_stored(
    engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    """Per active session one probe that stops at its newest reading: neither the session's older readings nor the
    completed sessions' readings of the same days are read. Joining the readings to a ``max(start_at)`` per session
    let the planner hash every reading since the oldest active start, or evaluate the max twice per session, as the
    statistics moved (``vpp bench partitions`` at 10,000 cars: 689 ms at day 2, 1,621 ms at day 30)."""
    from sqlalchemy import insert
    from sqlalchemy.dialects import postgresql

    from vpp.portfolio.fleet import OLDEST_ACTIVE_START, READING_BEFORE_START, _latest_by_probe

    _require_postgres(engine)
    start = NOW - timedelta(hours=10)
    partitions.maintain(session_factory, POLICY, now=start)
    with unit_of_work(session_factory) as db:
        connection = OcpiConnection(name="cpo")
        db.add(connection)
        db.flush()
        db.execute(insert(ChargingSession), [*_session_rows(connection.id, 0, 40, "active", start),
                                             *_session_rows(connection.id, 40, 200, "completed", start)])
        db.execute(insert(SessionReading), [
            {"session_id": f"S{k:031d}", "start_at": start + timedelta(minutes=5 * m), "power_kw": float(m % 11)}
            for k in range(240) for m in range(60 if k < 40 else 20)])
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE charging_sessions"))
        conn.execute(text("ANALYZE session_readings"))
        since = conn.scalar(OLDEST_ACTIVE_START) - READING_BEFORE_START
        compiled = _latest_by_probe(since).compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True})
        rows = conn.execute(text(str(compiled))).all()
        plan = conn.scalar(text(f"EXPLAIN (ANALYZE, FORMAT JSON) {compiled}"))
    assert len(rows) == 40 and {row[1] for row in rows} == {59.0 % 11}
    assert {row[3] for row in rows} == {start + timedelta(minutes=5 * 59)}
    # 40 rows, one per session; 2,400 readings of the active sessions and 4,000 of the completed ones are stored.
    assert _rows_read(plan[0]["Plan"], "session_readings") <= 40, plan


def test_the_oldest_active_start_is_one_index_probe_whatever_the_completed_sessions_kept(
    engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    """The flexibility read's lower bound (``min(start_at)`` of the active sessions) must not walk the completed
    sessions stored before the first active one. With ``start_at`` alone indexed PostgreSQL did: one active session
    in ten looks as if the first would come after ten rows, but every active session started after every completed
    one (a day of sessions more to walk for each day kept: the flexibility read took 1.47x as long at day 30 as at
    day 2 in ``vpp bench partitions``)."""
    from sqlalchemy import insert
    from sqlalchemy.dialects import postgresql

    from vpp.portfolio.fleet import OLDEST_ACTIVE_START

    _require_postgres(engine)
    with unit_of_work(session_factory) as db:
        connection = OcpiConnection(name="cpo")
        db.add(connection)
        db.flush()
        first = NOW - timedelta(days=30)
        db.execute(insert(ChargingSession), [
            {"connection_id": connection.id, "country_code": "NL", "party_id": "CPO", "party_key": "nl|cpo",
             "external_id": f"S{k}", "external_key": f"s{k}", "status": "completed" if k < 3000 else "active",
             "start_at": first + timedelta(minutes=k), "location_id": "L", "evse_uid": "E", "connector_id": "1",
             "currency": "EUR", "last_updated": NOW}
            for k in range(3300)])
    compiled = OLDEST_ACTIVE_START.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True})
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE charging_sessions"))  # as autovacuum leaves a table it has visited
        assert conn.scalar(OLDEST_ACTIVE_START) == first + timedelta(minutes=3000)
        plan = conn.scalar(text(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {compiled}"))
    top = plan[0]["Plan"]
    # A probe reads an index root and leaf and checks a heap tuple; the walk reads 3,000 rows (a scan, 300 or more).
    assert top["Shared Hit Blocks"] + top["Shared Read Blocks"] <= 10, plan
