"""api keys and job runs

Revision ID: 0001
Revises: 
Create Date: 2026-11-27 09:22:17.348296
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import vpp.db

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('api_keys',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('prefix', sa.String(length=16), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('secret_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', vpp.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_used_at', vpp.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('revoked_at', vpp.db.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_keys')),
    sa.UniqueConstraint('prefix', name=op.f('uq_api_keys_prefix'))
    )
    op.create_table('job_runs',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('started_at', vpp.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('finished_at', vpp.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('detail', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_job_runs'))
    )
    with op.batch_alter_table('job_runs', schema=None) as batch_op:
        batch_op.create_index('ix_job_runs_name_started_at', ['name', 'started_at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('job_runs', schema=None) as batch_op:
        batch_op.drop_index('ix_job_runs_name_started_at')

    op.drop_table('job_runs')
    op.drop_table('api_keys')
