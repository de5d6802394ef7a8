"""partitions: readings and the 4-second dispatch tables partitioned by day on PostgreSQL

Revision ID: 0008_partitions
Revises: 0007_plan
Create Date: 2026-12-06 17:40:00

On PostgreSQL each table becomes a table partitioned by RANGE on its timestamp, with one partition per UTC day
that has rows, today and a week ahead, and a default partition; the rows move
in. A partitioned table's primary key must hold the partition key, so the id-keyed tables get (id, timestamp).
The downgrade builds the plain tables again and moves the rows back. SQLite keeps its plain tables.

The upgrade copies every row once in one transaction and holds the tables' locks meanwhile: on a large database
run it in a maintenance window (docs/operations.md, "Data retention and partitions").
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import NamedTuple

from alembic import op
from sqlalchemy import Connection, text

from vpp.jobs.partitions import PARTITIONED, partition_name

revision = '0008_partitions'
down_revision = '0007_plan'
branch_labels = None
depends_on = None

# Partitions made ahead by the upgrade; beat's partition job keeps VPP_PARTITION_AHEAD_DAYS from then on.
AHEAD_DAYS = 7


class Shape(NamedTuple):
    """What a table carries beside its columns: primary key, unique keys, indexes and foreign keys."""

    primary_key: tuple[str, ...]
    unique: dict[str, tuple[str, ...]]
    indexes: dict[str, tuple[str, ...]]
    foreign_keys: dict[str, str]


SHAPES = {
    "session_readings": Shape(
        ("session_id", "start_at"), {}, {"ix_session_readings_start_at": ("start_at",)},
        {"fk_session_readings_session_id_charging_sessions": "(session_id) REFERENCES charging_sessions (id)"}),
    "dispatch_allocations": Shape(("id",), {}, {"ix_dispatch_allocations_pool_at": ("pool", "at")}, {}),
    "dispatch_sends": Shape(("id",), {}, {"ix_dispatch_sends_pool_sent_at": ("pool", "sent_at")}, {}),
    "pool_responses": Shape(("id",), {"uq_pool_responses_pool_at": ("pool", "at")}, {}, {}),
}


def _add_keys(conn: Connection, table: str, shape: Shape, *, partition_key: str | None) -> None:
    """Primary key (with the partition key when partitioned), unique keys, indexes and foreign keys."""
    primary = list(shape.primary_key)
    if partition_key and partition_key not in primary:
        primary.append(partition_key)
    conn.execute(text(f"ALTER TABLE {table} ADD CONSTRAINT pk_{table} PRIMARY KEY ({', '.join(primary)})"))
    for name, columns in shape.unique.items():
        conn.execute(text(f"ALTER TABLE {table} ADD CONSTRAINT {name} UNIQUE ({', '.join(columns)})"))
    for name, columns in shape.indexes.items():
        conn.execute(text(f"CREATE INDEX {name} ON {table} ({', '.join(columns)})"))
    for name, reference in shape.foreign_keys.items():
        conn.execute(text(f"ALTER TABLE {table} ADD CONSTRAINT {name} FOREIGN KEY {reference}"))


def _drop_keys(conn: Connection, table: str, shape: Shape) -> None:
    """Free the key and index names of ``table`` (renamed aside) for the table that replaces it."""
    for name in shape.foreign_keys:
        conn.execute(text(f"ALTER TABLE {table} DROP CONSTRAINT {name}"))
    for name in shape.indexes:
        conn.execute(text(f"DROP INDEX {name}"))
    for name in (*shape.unique, f"pk_{table.removesuffix('_old')}"):
        conn.execute(text(f"ALTER TABLE {table} DROP CONSTRAINT {name}"))


def _days_with_rows(conn: Connection, table: str, key: str) -> list[date]:
    return list(conn.scalars(text(
        f"SELECT DISTINCT CAST(date_trunc('day', {key} AT TIME ZONE 'UTC') AS date) FROM {table}")))


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "postgresql":
        return
    today = datetime.now(UTC).date()
    for table, key in PARTITIONED.items():
        shape = SHAPES[table]
        conn.execute(text(f"ALTER TABLE {table} RENAME TO {table}_old"))
        _drop_keys(conn, f"{table}_old", shape)
        conn.execute(text(f"CREATE TABLE {table} (LIKE {table}_old INCLUDING DEFAULTS INCLUDING CONSTRAINTS) "
                          f"PARTITION BY RANGE ({key})"))
        conn.execute(text(f"CREATE TABLE {table}_default PARTITION OF {table} DEFAULT"))
        days = set(_days_with_rows(conn, f"{table}_old", key)) | {today + timedelta(days=k) for k in range(AHEAD_DAYS + 1)}
        for day in sorted(days):
            low = datetime(day.year, day.month, day.day, tzinfo=UTC)
            conn.execute(text(
                f"CREATE TABLE {partition_name(table, day)} PARTITION OF {table} "
                f"FOR VALUES FROM ('{low.isoformat()}') TO ('{(low + timedelta(days=1)).isoformat()}')"))
        conn.execute(text(f"INSERT INTO {table} SELECT * FROM {table}_old"))
        conn.execute(text(f"DROP TABLE {table}_old"))
        _add_keys(conn, table, shape, partition_key=key)


def downgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "postgresql":
        return
    for table in PARTITIONED:
        shape = SHAPES[table]
        conn.execute(text(f"ALTER TABLE {table} RENAME TO {table}_old"))
        _drop_keys(conn, f"{table}_old", shape)
        conn.execute(text(f"CREATE TABLE {table} (LIKE {table}_old INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"))
        conn.execute(text(f"INSERT INTO {table} SELECT * FROM {table}_old"))
        conn.execute(text(f"DROP TABLE {table}_old"))
        _add_keys(conn, table, shape, partition_key=None)
