"""change marks: a token the database replaces in every transaction that writes the grid topology

Revision ID: 0013_change_marks
Revises: 0012_site_series_marks
Create Date: 2026-12-07 21:30:00

Issue 15 (speed). The sites of the CPO locations (``site_frame``) and the connectors' powers (``connector_frame``)
were read again by every fleet read, every completed-history read and every learned-end-of-charge read: in a
simulation a few times per step, each a join of every location, although they change only when a CPO's locations
or the sites are written. The OCPI intake writes locations from processes of its own, so a process-local flag
cannot say so: triggers on those tables replace the ``topology`` mark's token in the writing transaction, and a
reader that kept the frames under the token it reads now skips the read (``vpp.portfolio.fleet.TOPOLOGY``).
Only the columns those reads read move the mark (an EVSE's status, pushed on every plug-in, does not).

SQLite: row triggers replace the token with a random one (writes there are serialised by the database's write
lock). PostgreSQL: a deferred constraint trigger sets it to the transaction's id once, at commit, after every row
lock the transaction takes, so it adds no lock-order cycle to concurrent writers; TRUNCATE marks by a statement
trigger. Other dialects get the table without triggers; readers there never keep frames.
"""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from alembic import op

revision = '0013_change_marks'
down_revision = '0012_site_series_marks'
branch_labels = None
depends_on = None

# Table -> the columns whose update moves the ``topology`` mark (None: any column); inserts and deletes always do.
TOPOLOGY: dict[str, tuple[str, ...] | None] = {
    "charging_locations": ("id", "connection_id", "party_key", "external_key"),
    "charging_evses": ("id", "location_pk", "uid_key", "capabilities"),
    "charging_connectors": ("id", "evse_pk", "external_key", "max_power_kw"),
    "sites": None,
    "site_locations": None,
}
MARK = "topology"


def _update_of(columns: tuple[str, ...] | None) -> str:
    return "UPDATE" if columns is None else f"UPDATE OF {', '.join(columns)}"


def _sqlite_triggers() -> list[tuple[str, str]]:
    """(name, statement) of every SQLite trigger."""
    bump = f"BEGIN UPDATE change_marks SET token = random() WHERE name = '{MARK}'; END"
    out = []
    for table, columns in TOPOLOGY.items():
        for event, clause in (("insert", "INSERT"), ("update", _update_of(columns)), ("delete", "DELETE")):
            name = f"mark_{MARK}_{table}_{event}"
            out.append((name, f"CREATE TRIGGER {name} AFTER {clause} ON {table} {bump}"))
    return out


def _postgresql_statements() -> list[str]:
    function = """
        CREATE FUNCTION mark_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            UPDATE change_marks SET token = txid_current()
             WHERE name = TG_ARGV[0] AND token IS DISTINCT FROM txid_current();
            RETURN NULL;
        END $$"""
    out = [function]
    for table, columns in TOPOLOGY.items():
        out.append(f"CREATE CONSTRAINT TRIGGER mark_{MARK} AFTER INSERT OR {_update_of(columns)} OR DELETE ON {table} "
                   f"DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION mark_change('{MARK}')")
        # TRUNCATE fires no row trigger (and holds the table exclusively anyway).
        out.append(f"CREATE TRIGGER mark_{MARK}_truncate AFTER TRUNCATE ON {table} FOR EACH STATEMENT "
                   f"EXECUTE FUNCTION mark_change('{MARK}')")
    return out


def upgrade() -> None:
    op.create_table('change_marks',
    sa.Column('name', sa.String(length=32), nullable=False),
    sa.Column('token', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_change_marks'))
    )
    # A random first token: a reader that kept frames of a database dropped and made again must not match it.
    op.execute(f"INSERT INTO change_marks (name, token) VALUES ('{MARK}', {secrets.randbits(62)})")
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for _name, statement in _sqlite_triggers():
            op.execute(statement)
    elif dialect == "postgresql":
        for statement in _postgresql_statements():
            op.execute(statement)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for name, _statement in _sqlite_triggers():
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    elif dialect == "postgresql":
        for table in TOPOLOGY:
            op.execute(f"DROP TRIGGER IF EXISTS mark_{MARK} ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS mark_{MARK}_truncate ON {table}")
        op.execute("DROP FUNCTION IF EXISTS mark_change()")
    op.drop_table('change_marks')
