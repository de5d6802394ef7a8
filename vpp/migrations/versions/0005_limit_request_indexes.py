"""limit requests: indexes for outstanding requests per session and for sessions backing off

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 13:25:00

A dispatch cycle supersedes the outstanding requests of thousands of sessions and asks which of them are backing
off after TOO_OFTEN; with only (session_id, created_at) both walked every session's whole request history.
"""

from __future__ import annotations

from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_charging_profile_requests_session_status', 'charging_profile_requests',
                    ['session_id', 'status'], unique=False)
    op.create_index('ix_charging_profile_requests_retry_at', 'charging_profile_requests', ['retry_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_charging_profile_requests_retry_at', table_name='charging_profile_requests')
    op.drop_index('ix_charging_profile_requests_session_status', table_name='charging_profile_requests')
