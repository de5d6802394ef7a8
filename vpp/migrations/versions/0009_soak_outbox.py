"""task outbox: background tasks that must run at least once, whatever happens to Redis

Revision ID: 0009_soak_outbox
Revises: 0008_partitions
Create Date: 2026-12-06 17:50:00

Redis keeps nothing on disk, so a restart drops the Celery queues: a task that must not be lost (the settlement
recompute a new CDR asks for) is written here in the same transaction, marked done by the task and sent again by
the periodic ``jobs.redeliver_outbox`` while it is not.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import vpp.db

revision = '0009_soak_outbox'
down_revision = '0008_partitions'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('task_outbox',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('task_name', sa.String(length=100), nullable=False),
    sa.Column('kwargs', sa.JSON(), nullable=False),
    sa.Column('created_at', vpp.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('next_attempt_at', vpp.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('done_at', vpp.db.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_task_outbox'))
    )
    with op.batch_alter_table('task_outbox', schema=None) as batch_op:
        batch_op.create_index('ix_task_outbox_done_next', ['done_at', 'next_attempt_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('task_outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_task_outbox_done_next')
    op.drop_table('task_outbox')
