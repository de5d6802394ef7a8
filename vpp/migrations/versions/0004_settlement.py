"""settlement: runs per (day, pool) with ISP, activation, order and session results

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 10:06:00.945587
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import vpp.db

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('settlement_runs',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('pool', sa.String(length=120), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('baseline_method', sa.String(length=40), nullable=False),
    sa.Column('parameters', sa.JSON(), nullable=False),
    sa.Column('summary', sa.JSON(), nullable=False),
    sa.Column('computed_at', vpp.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_at', vpp.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_settlement_runs')),
    sa.UniqueConstraint('day', 'pool', name=op.f('uq_settlement_runs_day_pool'))
    )
    op.create_table('settlement_activation_results',
    sa.Column('run_id', sa.String(length=32), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('reference', sa.String(length=120), nullable=False),
    sa.Column('start_at', vpp.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('end_at', vpp.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('direction', sa.String(length=4), nullable=False),
    sa.Column('requested_mwh', sa.Float(), nullable=False),
    sa.Column('delivered_mwh', sa.Float(), nullable=False),
    sa.Column('shortfall_mwh', sa.Float(), nullable=False),
    sa.Column('revenue_eur', sa.Float(), nullable=False),
    sa.Column('penalty_eur', sa.Float(), nullable=False),
    sa.Column('attributed_revenue_eur', sa.Float(), nullable=False),
    sa.Column('attributed_penalty_eur', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['settlement_runs.id'],
                            name=op.f('fk_settlement_activation_results_run_id_settlement_runs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('run_id', 'seq', name=op.f('pk_settlement_activation_results'))
    )
    op.create_table('settlement_isp_results',
    sa.Column('run_id', sa.String(length=32), nullable=False),
    sa.Column('isp_start', vpp.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('isp', sa.Integer(), nullable=False),
    sa.Column('afrr_requested_mwh', sa.Float(), nullable=False),
    sa.Column('afrr_delivered_mwh', sa.Float(), nullable=False),
    sa.Column('afrr_shortfall_mwh', sa.Float(), nullable=False),
    sa.Column('afrr_counted_shortfall_mwh', sa.Float(), nullable=False),
    sa.Column('afrr_missing_steps', sa.Integer(), nullable=False),
    sa.Column('afrr_flagged_steps', sa.Integer(), nullable=False),
    sa.Column('afrr_price_eur_per_mwh', sa.Float(), nullable=False),
    sa.Column('afrr_price_source', sa.String(length=16), nullable=False),
    sa.Column('afrr_payment_eur', sa.Float(), nullable=False),
    sa.Column('afrr_penalty_eur', sa.Float(), nullable=False),
    sa.Column('counterfactual_mwh', sa.Float(), nullable=False),
    sa.Column('scheduled_mwh', sa.Float(), nullable=True),
    sa.Column('metered_mwh', sa.Float(), nullable=True),
    sa.Column('gap_sessions', sa.Integer(), nullable=False),
    sa.Column('imbalance_mwh', sa.Float(), nullable=True),
    sa.Column('imbalance_price_eur_per_mwh', sa.Float(), nullable=False),
    sa.Column('imbalance_cost_eur', sa.Float(), nullable=True),
    sa.ForeignKeyConstraint(['run_id'], ['settlement_runs.id'],
                            name=op.f('fk_settlement_isp_results_run_id_settlement_runs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('run_id', 'isp_start', name=op.f('pk_settlement_isp_results'))
    )
    op.create_table('settlement_order_results',
    sa.Column('run_id', sa.String(length=32), nullable=False),
    sa.Column('reference', sa.String(length=120), nullable=False),
    sa.Column('isp_start', vpp.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('isp', sa.Integer(), nullable=False),
    sa.Column('baseline_method', sa.String(length=40), nullable=False),
    sa.Column('baseline_kw', sa.Float(), nullable=True),
    sa.Column('ordered_kw', sa.Float(), nullable=False),
    sa.Column('actual_kw', sa.Float(), nullable=True),
    sa.Column('delivered_kw', sa.Float(), nullable=True),
    sa.Column('deficiency_kw', sa.Float(), nullable=True),
    sa.Column('price_eur_per_mw', sa.Float(), nullable=False),
    sa.Column('penalty_eur_per_mw', sa.Float(), nullable=False),
    sa.Column('net_eur', sa.Float(), nullable=True),
    sa.Column('dso_status', sa.String(length=16), nullable=True),
    sa.Column('dso_net_eur', sa.Float(), nullable=True),
    sa.Column('dso_reason', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['run_id'], ['settlement_runs.id'],
                            name=op.f('fk_settlement_order_results_run_id_settlement_runs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('run_id', 'reference', 'isp_start', name=op.f('pk_settlement_order_results'))
    )
    op.create_table('settlement_session_results',
    sa.Column('run_id', sa.String(length=32), nullable=False),
    sa.Column('session_id', sa.String(length=32), nullable=False),
    sa.Column('charger', sa.String(length=160), nullable=False),
    sa.Column('baseline_method', sa.String(length=40), nullable=False),
    sa.Column('counterfactual_kwh', sa.Float(), nullable=False),
    sa.Column('metered_kwh', sa.Float(), nullable=True),
    sa.Column('contribution_kwh', sa.Float(), nullable=True),
    sa.Column('activation_kwh', sa.JSON(), nullable=False),
    sa.Column('revenue_eur', sa.Float(), nullable=False),
    sa.Column('penalty_eur', sa.Float(), nullable=False),
    sa.Column('net_eur', sa.Float(), nullable=False),
    sa.Column('charger_value_eur_per_month', sa.Float(), nullable=False),
    sa.Column('cdr_energy_kwh', sa.Float(), nullable=True),
    sa.Column('session_metered_kwh', sa.Float(), nullable=True),
    sa.Column('cdr_difference_kwh', sa.Float(), nullable=True),
    sa.Column('flags', sa.JSON(), nullable=False),
    sa.Column('excluded', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['settlement_runs.id'],
                            name=op.f('fk_settlement_session_results_run_id_settlement_runs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('run_id', 'session_id', name=op.f('pk_settlement_session_results'))
    )


def downgrade() -> None:
    op.drop_table('settlement_session_results')
    op.drop_table('settlement_order_results')
    op.drop_table('settlement_isp_results')
    op.drop_table('settlement_activation_results')
    op.drop_table('settlement_runs')
