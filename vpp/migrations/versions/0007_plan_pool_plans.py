"""pool plans: each pool's latest per-car plan, written by the planner and read by the dispatcher

Revision ID: 0007_plan
Revises: 0006_secrets
Create Date: 2026-12-06 14:35:00

One row per pool, replaced at every re-plan (each ISP and on events), so a dispatcher that restarts or takes a
pool over finds the plan in force.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import vpp.db

revision = '0007_plan'
down_revision = '0006_secrets'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('pool_plans',
    sa.Column('pool', sa.String(length=120), nullable=False),
    sa.Column('planned_at', vpp.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('recorded_at', vpp.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('start', vpp.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('isps', sa.Integer(), nullable=False),
    sa.Column('session_ids', sa.JSON(), nullable=False),
    sa.Column('power_kw', sa.LargeBinary(), nullable=False),
    sa.Column('departure_s', sa.LargeBinary(), nullable=False),
    sa.Column('target_kwh', sa.LargeBinary(), nullable=False),
    sa.Column('pool_kw', sa.JSON(), nullable=False),
    sa.Column('method', sa.String(length=80), nullable=False),
    sa.Column('status', sa.String(length=32), nullable=False),
    sa.Column('seconds', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('pool', name=op.f('pk_pool_plans'))
    )


def downgrade() -> None:
    op.drop_table('pool_plans')
