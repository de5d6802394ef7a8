"""Time partitions of the fast-growing tables on PostgreSQL: one partition per UTC day, created ahead, old ones dropped.

``session_readings`` (every OCPI charging period) and the tables a dispatcher writes each 4-second cycle of a pool
(``dispatch_allocations``, ``dispatch_sends``, ``pool_responses``) are partitioned by RANGE on their timestamp
(migration ``0008_partitions``). Each has a ``<table>_default`` partition, so a row whose day has no partition
yet is stored, never refused; :func:`maintain` moves such rows into a partition of their day on its next run.
``afrr_setpoints`` grows as fast but stays one table: its de-duplication key (pool, seq) cannot include the
time, and a partitioned table's unique keys must; its rows past retention are deleted in batches instead.

Retention (``VPP_PARTITION_RETENTION_DAYS``) drops a day's partitions only when settlement no longer needs them:
every local day whose settlement may read the partition (the day itself and :data:`SETTLEMENT_REACH` around it,
since a session's readings are read whole) must have a settlement run for every pool with data on that day.
A day that is not settled keeps its partitions, and the job says which days it kept.

SQLite (the embedded default) keeps plain tables: :func:`maintain` does nothing there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, CursorResult, delete, select, text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from vpp.activations.tables import AfrrSetpoint
from vpp.db import unit_of_work
from vpp.settlement.service import pools_with_data
from vpp.settlement.tables import SettlementRun
from vpp.settlement.values import DayGrid

# Table -> its partition key (a timestamptz column).
PARTITIONED: dict[str, str] = {
    "session_readings": "start_at",
    "dispatch_allocations": "at",
    "dispatch_sends": "sent_at",
    "pool_responses": "at",
}
# Local days around a partition's UTC day whose settlement may read it (sessions longer than this are rare; their
# readings outside the reach were read by the settlement of the days they span, which must be settled too).
SETTLEMENT_REACH = timedelta(days=2)
# A partition DDL waits this long for the table's lock, then gives up until the next run (never blocks intake).
LOCK_TIMEOUT = "2s"
DELETE_BATCH = 10_000
_DAY_SUFFIX = re.compile(r"_p(\d{8})$")


def partition_name(table: str, day: date) -> str:
    """The name of ``table``'s partition of the UTC ``day``."""
    return f"{table}_p{day:%Y%m%d}"


def is_partition(name: str) -> bool:
    """True for the name of a partition of a partitioned table (schema comparisons leave them out)."""
    table, _, suffix = name.rpartition("_")
    return table in PARTITIONED and (suffix == "default" or bool(re.fullmatch(r"p\d{8}", suffix)))


def include_name(name: str | None, kind: str, _parent: object) -> bool:
    """Alembic's ``include_name``: schema comparisons leave the partitions out (the models name their parents)."""
    return not (kind == "table" and name is not None and is_partition(name))


def _day_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def is_partitioned(conn: Connection, table: str) -> bool:
    """True when ``table`` is a partitioned table (PostgreSQL, migrated to 0008)."""
    if conn.dialect.name != "postgresql":
        return False
    found = conn.execute(text(
        "SELECT 1 FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid "
        "WHERE c.relname = :table AND c.relnamespace = to_regnamespace(current_schema())::oid"), {"table": table})
    return found.first() is not None


def partition_days(conn: Connection, table: str) -> list[date]:
    """The UTC days that have a partition of ``table``, oldest first (the default partition is not a day)."""
    names = conn.scalars(text(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "JOIN pg_class p ON p.oid = i.inhparent "
        "WHERE p.relname = :table AND p.relnamespace = to_regnamespace(current_schema())::oid"), {"table": table})
    days = []
    for name in names:
        match = _DAY_SUFFIX.search(name)
        if match:
            days.append(datetime.strptime(match.group(1), "%Y%m%d").date())
    return sorted(days)


def dropped(conn: Connection, local_day: date, time_zone: str) -> bool:
    """True when retention has dropped the readings of the local day: it starts before the oldest day partition
    and the default partition holds none of its rows (rows of days never partitioned wait there)."""
    if not is_partitioned(conn, "session_readings"):
        return False
    days = partition_days(conn, "session_readings")
    grid = DayGrid.of(local_day, time_zone)
    if not days or grid.start >= _day_start(days[0]):
        return False
    waiting = conn.scalar(text(
        "SELECT EXISTS (SELECT 1 FROM session_readings_default WHERE start_at >= :start AND start_at < :end)"),
        {"start": grid.start, "end": grid.end})
    return not waiting


def create_partition(conn: Connection, table: str, day: date) -> int:
    """Create ``table``'s partition of ``day`` if missing; rows of that day in the default partition move in.

    Returns the number of rows moved. A plain ``PARTITION OF`` would fail while the default partition holds rows
    of the day, so the partition is built beside the table, filled from the default, then attached.
    """
    key = PARTITIONED[table]
    name = partition_name(table, day)
    low, high = _day_start(day), _day_start(day + timedelta(days=1))
    if conn.scalar(text("SELECT to_regclass(:name)"), {"name": name}) is not None:
        return 0
    bounds = {"low": low, "high": high}
    default = f"{table}_default"
    waiting = conn.scalar(text(f"SELECT count(*) FROM {default} WHERE {key} >= :low AND {key} < :high"), bounds)
    if not waiting:
        conn.execute(text(
            f"CREATE TABLE {name} PARTITION OF {table} FOR VALUES FROM ('{low.isoformat()}') TO ('{high.isoformat()}')"
        ))
        return 0
    conn.execute(text(f"CREATE TABLE {name} (LIKE {table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"))
    conn.execute(text(f"LOCK TABLE {default} IN ACCESS EXCLUSIVE MODE"))
    moved = conn.execute(text(
        f"WITH gone AS (DELETE FROM {default} WHERE {key} >= :low AND {key} < :high RETURNING *) "
        f"INSERT INTO {name} SELECT * FROM gone"), bounds).rowcount
    conn.execute(text(
        f"ALTER TABLE {table} ATTACH PARTITION {name} "
        f"FOR VALUES FROM ('{low.isoformat()}') TO ('{high.isoformat()}')"))
    return int(moved or 0)


def _stranded_days(conn: Connection, table: str) -> list[date]:
    """UTC days of the rows waiting in the default partition (at most a year's worth per run)."""
    key = PARTITIONED[table]
    return list(conn.scalars(text(
        f"SELECT DISTINCT CAST(date_trunc('day', {key} AT TIME ZONE 'UTC') AS date) AS day "
        f"FROM {table}_default ORDER BY day LIMIT 366")))


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """How far ahead partitions exist and how long rows are kept."""

    retention_days: int
    ahead_days: int
    time_zone: str


class SettledDays:
    """Which local days settlement has finished: every pool with data on the day has a run (memoised per day)."""

    def __init__(self, db: Session, time_zone: str) -> None:
        self._db = db
        self._zone = time_zone
        self._open: dict[date, bool] = {}

    def is_open(self, local: date) -> bool:
        """True when a pool has data on the local day but no settlement run."""
        if local not in self._open:
            pools = set(pools_with_data(self._db, DayGrid.of(local, self._zone)))
            settled = set(self._db.scalars(select(SettlementRun.pool).where(SettlementRun.day == local))) \
                if pools else set()
            self._open[local] = bool(pools - settled)
        return self._open[local]

    def needing(self, day: date) -> list[str]:
        """The open local days whose settlement may read rows of the UTC ``day``."""
        reach = SETTLEMENT_REACH.days + 1
        around = [day + timedelta(days=k) for k in range(-reach, reach + 1)]
        return [local.isoformat() for local in around if self.is_open(local)]


def maintain(factory: sessionmaker[Session], policy: RetentionPolicy, *, now: datetime) -> dict[str, Any]:
    """Create the partitions of today and ``ahead_days`` ahead, re-home rows stranded in the default partitions,
    drop partitions older than the retention whose days are settled, and delete expired unpartitioned setpoints.

    Idempotent: a second run creates, moves and drops nothing more. What settlement needs is read first; then each
    table's DDL commits on its own, quickly and with a lock timeout, so the intake waits at most that long and a
    table whose lock is not granted is left for the next run without undoing the others.
    """
    with unit_of_work(factory) as db:
        conn = db.connection()
        if conn.dialect.name != "postgresql":
            return {"skipped": "partitions exist on PostgreSQL only"}
        tables = [table for table in PARTITIONED if is_partitioned(conn, table)]
        today = now.astimezone(UTC).date()
        horizon = today - timedelta(days=policy.retention_days)
        old_days = sorted({day for table in tables for day in partition_days(conn, table) if day < horizon})
        settled = SettledDays(db, policy.time_zone)
        needed = {day: settled.needing(day) for day in old_days}
    detail: dict[str, Any] = {"created": [], "moved_rows": 0, "dropped": [], "kept": {}, "failed": {}}
    for table in tables:
        done: dict[str, Any] = {"created": [], "moved_rows": 0, "dropped": [], "kept": {}}
        try:
            with unit_of_work(factory) as db:
                conn = db.connection()
                conn.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
                wanted = sorted({today + timedelta(days=k) for k in range(policy.ahead_days + 1)}
                                | set(_stranded_days(conn, table)))
                existing = partition_days(conn, table)
                for day in wanted:
                    if day not in existing:
                        done["moved_rows"] += create_partition(conn, table, day)
                        done["created"].append(partition_name(table, day))
                for day in existing:
                    if day >= horizon or day not in needed:
                        continue
                    if needed[day]:
                        done["kept"][partition_name(table, day)] = needed[day]
                        continue
                    conn.execute(text(f"DROP TABLE {partition_name(table, day)}"))
                    done["dropped"].append(partition_name(table, day))
        except SQLAlchemyError as exc:  # a lock timeout or a DDL error: this table waits for the next run
            detail["failed"][table] = str(exc.orig if isinstance(exc, DBAPIError) else exc).splitlines()[0]
            continue
        detail["created"] += done["created"]
        detail["moved_rows"] += done["moved_rows"]
        detail["dropped"] += done["dropped"]
        detail["kept"].update(done["kept"])
    with unit_of_work(factory) as db:
        detail["deleted_setpoints"] = _delete_old_setpoints(db, horizon, SettledDays(db, policy.time_zone))
    detail["created"].sort()
    detail["dropped"].sort()
    return detail


def _delete_old_setpoints(db: Session, horizon: date, settled: SettledDays) -> int:
    """Delete setpoints older than the horizon, day by day up to the first day settlement still needs, in batches."""
    oldest = db.scalar(select(AfrrSetpoint.timestamp).order_by(AfrrSetpoint.timestamp).limit(1))
    if oldest is None:
        return 0
    day, deleted = oldest.astimezone(UTC).date(), 0
    while day < horizon and not settled.needing(day):
        end = _day_start(day + timedelta(days=1))
        while True:
            batch = select(AfrrSetpoint.id).where(AfrrSetpoint.timestamp < end).limit(DELETE_BATCH)
            result: CursorResult[Any] = db.execute(  # type: ignore[assignment]
                delete(AfrrSetpoint).where(AfrrSetpoint.id.in_(batch.scalar_subquery())))
            gone = int(result.rowcount or 0)
            deleted += gone
            if gone < DELETE_BATCH:
                break
        day += timedelta(days=1)
    return deleted
