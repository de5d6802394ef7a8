"""change marks: a token the database replaces in every transaction that writes what the fleet read reads

Revision ID: 0013_change_marks
Revises: 0012_site_series_marks
Create Date: 2026-12-07 21:00:00

Issue 15 (speed). The fleet read (``vpp.portfolio.fleet.load_fleet``) reads every active session with its
connector, site, need and latest reading; in a simulation's aFRR window it ran on most 4-s steps although the
sessions had not changed since. The OCPI intake writes from processes of its own, so a process-local flag cannot
say so: triggers on the tables the read reads replace the ``fleet`` mark's token in the writing transaction, and a
reader that kept the rows under the token it reads now skips the read. SQLite: a row trigger replaces the token
with a random one (writes there are serialised by the database's write lock). PostgreSQL: a deferred constraint
trigger sets it to the transaction's id once, at commit, after every row lock the transaction takes, so it adds no
lock-order cycle to concurrent writers (and it is cloned to every partition of ``session_readings``). Other
dialects get the table without triggers; the reader then never keeps rows.
"""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from alembic import op

revision = '0013_change_marks'
down_revision = '0012_site_series_marks'
branch_labels = None
depends_on = None

# Every table ``load_fleet`` reads and keeps (the bookings and congestion limits it reads afresh on every call).
FLEET_TABLES = ("charging_sessions", "session_readings", "charging_needs", "charging_locations", "charging_evses",
                "charging_connectors", "sites", "site_locations")
# Of ``ocpi_connections`` only the flags are read (its other columns change on every token use).
FLAGGED = "ocpi_connections"


def _sqlite_triggers() -> list[str]:
    bump = "BEGIN UPDATE change_marks SET token = random() WHERE name = 'fleet'; END"
    out = [f"CREATE TRIGGER mark_fleet_{table}_{event.lower()} AFTER {event} ON {table} {bump}"
           for table in FLEET_TABLES for event in ("INSERT", "UPDATE", "DELETE")]
    out += [f"CREATE TRIGGER mark_fleet_{FLAGGED}_insert AFTER INSERT ON {FLAGGED} {bump}",
            f"CREATE TRIGGER mark_fleet_{FLAGGED}_update AFTER UPDATE OF flags ON {FLAGGED} {bump}",
            f"CREATE TRIGGER mark_fleet_{FLAGGED}_delete AFTER DELETE ON {FLAGGED} {bump}"]
    return out


def _postgresql_triggers() -> list[str]:
    function = """
        CREATE FUNCTION mark_fleet() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            UPDATE change_marks SET token = txid_current()
             WHERE name = 'fleet' AND token IS DISTINCT FROM txid_current();
            RETURN NULL;
        END $$"""
    events = {table: "INSERT OR UPDATE OR DELETE" for table in FLEET_TABLES}
    events[FLAGGED] = "INSERT OR UPDATE OF flags OR DELETE"
    # TRUNCATE fires no row trigger: a statement trigger marks it (it holds the table exclusively anyway).
    return [function] + [
        f"CREATE CONSTRAINT TRIGGER mark_fleet AFTER {on} ON {table} DEFERRABLE INITIALLY DEFERRED "
        "FOR EACH ROW EXECUTE FUNCTION mark_fleet()" for table, on in events.items()] + [
        f"CREATE TRIGGER mark_fleet_truncate AFTER TRUNCATE ON {table} FOR EACH STATEMENT "
        "EXECUTE FUNCTION mark_fleet()" for table in events]


def upgrade() -> None:
    op.create_table('change_marks',
    sa.Column('name', sa.String(length=32), nullable=False),
    sa.Column('token', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_change_marks'))
    )
    # A random first token: a reader that kept rows of a database dropped and made again must not match it.
    op.execute(f"INSERT INTO change_marks (name, token) VALUES ('fleet', {secrets.randbits(62)})")
    dialect = op.get_bind().dialect.name
    statements = (_sqlite_triggers() if dialect == "sqlite" else _postgresql_triggers() if dialect == "postgresql"
                  else [])
    for statement in statements:
        op.execute(statement)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for statement in _sqlite_triggers():
            name = statement.split()[2]
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    elif dialect == "postgresql":
        for table in (*FLEET_TABLES, FLAGGED):
            op.execute(f"DROP TRIGGER IF EXISTS mark_fleet ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS mark_fleet_truncate ON {table}")
        op.execute("DROP FUNCTION IF EXISTS mark_fleet()")
    op.drop_table('change_marks')
