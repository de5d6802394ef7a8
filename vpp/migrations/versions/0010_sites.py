"""sites behind the meter: equipment (connection, PV, battery, tariff), PV/meter series, grid signals, site plans

Revision ID: 0010_sites
Revises: 0009_soak_outbox
Create Date: 2026-12-06 17:40:00

Issue 19. The building load keeps its table (site_loads); PV and the grid meter's import/export go to
site_series; grid-stress and outage signals to site_signals; each equipped site's latest plan to site_plans.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import vpp.db

revision = '0010_sites'
down_revision = '0009_soak_outbox'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('site_equipment',
    sa.Column('site_id', sa.String(length=64), nullable=False),
    sa.Column('import_max_kw', sa.Float(), nullable=True),
    sa.Column('export_max_kw', sa.Float(), nullable=True),
    sa.Column('subscription_kva', sa.Float(), nullable=True),
    sa.Column('power_factor', sa.Float(), nullable=False),
    sa.Column('pv_kwp', sa.Float(), nullable=False),
    sa.Column('battery_capacity_kwh', sa.Float(), nullable=True),
    sa.Column('battery_power_kw', sa.Float(), nullable=True),
    sa.Column('battery_efficiency', sa.Float(), nullable=True),
    sa.Column('battery_min_soc_kwh', sa.Float(), nullable=True),
    sa.Column('battery_max_soc_kwh', sa.Float(), nullable=True),
    sa.Column('battery_cycle_eur_per_kwh', sa.Float(), nullable=True),
    sa.Column('battery_soc_kwh', sa.Float(), nullable=True),
    sa.Column('battery_soc_at', vpp.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('tariff', sa.JSON(), nullable=True),
    sa.Column('updated_at', vpp.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['site_id'], ['sites.id'], name=op.f('fk_site_equipment_site_id_sites'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('site_id', name=op.f('pk_site_equipment'))
    )
    op.create_table('site_series',
    sa.Column('site_id', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('isp_start', vpp.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('power_kw', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['site_id'], ['sites.id'], name=op.f('fk_site_series_site_id_sites'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('site_id', 'kind', 'isp_start', name=op.f('pk_site_series'))
    )
    op.create_table('site_signals',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('site_id', sa.String(length=64), nullable=True),
    sa.Column('bidding_zone', sa.String(length=16), nullable=True),
    sa.Column('start_at', vpp.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('end_at', vpp.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('mode', sa.String(length=16), nullable=False),
    sa.Column('created_at', vpp.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['site_id'], ['sites.id'], name=op.f('fk_site_signals_site_id_sites'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_site_signals'))
    )
    op.create_index('ix_site_signals_kind_end_at', 'site_signals', ['kind', 'end_at'], unique=False)
    op.create_table('site_plans',
    sa.Column('site_id', sa.String(length=64), nullable=False),
    sa.Column('planned_at', vpp.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('start', vpp.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('battery_kw', sa.JSON(), nullable=False),
    sa.Column('battery_soc_kwh', sa.JSON(), nullable=False),
    sa.Column('import_kw', sa.JSON(), nullable=False),
    sa.Column('export_kw', sa.JSON(), nullable=False),
    sa.Column('cars_kw', sa.JSON(), nullable=False),
    sa.Column('bill_eur', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=32), nullable=False),
    sa.ForeignKeyConstraint(['site_id'], ['sites.id'], name=op.f('fk_site_plans_site_id_sites'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('site_id', name=op.f('pk_site_plans'))
    )


def downgrade() -> None:
    op.drop_table('site_plans')
    op.drop_index('ix_site_signals_kind_end_at', table_name='site_signals')
    op.drop_table('site_signals')
    op.drop_table('site_series')
    op.drop_table('site_equipment')
