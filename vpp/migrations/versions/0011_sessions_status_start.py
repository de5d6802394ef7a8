"""charging sessions: an index on (status, start_at) for the oldest active session's start

Revision ID: 0011_sessions_status_start
Revises: 0010_sites
Create Date: 2026-12-07 03:00:00

The flexibility read (``portfolio.fleet.latest_readings``) bounds the readings it reads by the oldest active
session's start, ``min(start_at) WHERE status = 'active'``. With only ``start_at`` indexed, PostgreSQL walked that
index from the oldest session ever stored, skipping every completed session until the first active one: a walk
that grew by a day of sessions each day kept (10,000 rows a day at 10,000 cars). With ``(status, start_at)`` it
is one probe whatever the days kept. Creating it on a populated database holds writes to charging_sessions for
the time of one index build on that table (one row per session; the readings are not touched).
"""

from __future__ import annotations

from alembic import op

revision = '0011_sessions_status_start'
down_revision = '0010_sites'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_charging_sessions_status_start_at', 'charging_sessions', ['status', 'start_at'],
                    unique=False)


def downgrade() -> None:
    op.drop_index('ix_charging_sessions_status_start_at', table_name='charging_sessions')
