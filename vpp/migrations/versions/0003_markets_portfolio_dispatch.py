"""commitments, portfolio, activations and dispatch, congestion, bids

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 09:51:43.237802
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import vpp.db

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('afrr_setpoints',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('pool', sa.String(length=120), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('timestamp', vpp.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('requested_mw', sa.Float(), nullable=False),
    sa.Column('setpoint_mw', sa.Float(), nullable=False),
    sa.Column('clipped', sa.Boolean(), nullable=False),
    sa.Column('capacity_up_mw', sa.Float(), nullable=False),
    sa.Column('capacity_down_mw', sa.Float(), nullable=False),
    sa.Column('stale', sa.Boolean(), nullable=False),
    sa.Column('received_at', vpp.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_afrr_setpoints')),
    sa.UniqueConstraint('pool', 'seq', name=op.f('uq_afrr_setpoints_pool_seq'))
    )
    op.create_table('bids',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('market', sa.String(length=16), nullable=False),
    sa.Column('product', sa.String(length=32), nullable=False),
    sa.Column('pool', sa.String(length=120), nullable=False),
    sa.Column('period_start', vpp.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('period_end', vpp.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('delivery_day', sa.Date(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('edited', sa.Boolean(), nullable=False),
    sa.Column('gate_closure_at', vpp.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('content', sa.JSON(), nullable=False),
    sa.Column('params', sa.JSON(), nullable=False),
    sa.Column('created_by', sa.String(length=200), nullable=False),
    sa.Column('created_at', vpp.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', vpp.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('submitted_at', vpp.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('awarded_at', vpp.db.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_bids')),
    sa.UniqueConstraint('market', 'product', 'pool', 'period_start', 'period_end', name=op.f('uq_bids_market_product_pool_period_start_period_end'))
    )
    with op.batch_alter_table('bids', schema=None) as batch_op:
        batch_op.create_index('ix_bids_market_pool_status', ['market', 'pool', 'status'], unique=False)

    op.create_table('bookings',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('vehicle_id', sa.String(length=64), nullable=False),
    sa.Column('vehicle_key', sa.String(length=64), nullable=False),
    sa.Column('start_at', vpp.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('end_at', vpp.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('energy_kwh', sa.Float(), nullable=True),
    sa.Column('cancelled', sa.Boolean(), nullable=False),
    sa.Column('updated_at', vpp.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_bookings'))
    )
    with op.batch_alter_table('bookings', schema=None) as batch_op:
        batch_op.create_index('ix_bookings_vehicle_key_start_at', ['vehicle_key', 'start_at'], unique=False)

    op.create_table('commitments',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('pool', sa.String(length=120), nullable=False),
    sa.Column('isp_start', vpp.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('power_kw', sa.Float(), nullable=False),
    sa.Column('price_eur_per_mwh', sa.Float(), nullable=True),
    sa.Column('source', sa.String(length=32), nullable=False),
    sa.Column('reference', sa.String(length=120), nullable=False),
    sa.Column('created_at', vpp.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', vpp.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_commitments')),
    sa.UniqueConstraint('pool', 'isp_start', 'kind', 'reference', name=op.f('uq_commitments_pool_isp_start_kind_reference'))
    )
    with op.batch_alter_table('commitments', schema=None) as batch_op:
        batch_op.create_index('ix_commitments_pool_isp_start', ['pool', 'isp_start'], unique=False)

    op.create_table('congestion_offers',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('message_id', sa.String(length=64), nullable=False),
    sa.Column('flex_request_message_id', sa.String(length=64), nullable=False),
    sa.Column('conversation_id', sa.String(length=64), nullable=False),
    sa.Column('dso_domain', sa.String(length=253), nullable=False),
    sa.Column('congestion_point', sa.String(length=120), nullable=False),
    sa.Column('period', sa.Date(), nullable=False),
    sa.Column('option_reference', sa.String(length=64), nullable=False),
    sa.Column('price_eur', sa.Numeric(precision=18, scale=4), nullable=False),
    sa.Column('min_activation_factor', sa.Numeric(precision=4, scale=2), nullable=False),
    sa.Column('d_prognosis_message_id', sa.String(length=64), nullable=True),
    sa.Column('isps', sa.JSON(), nullable=False),
    sa.Column('expires_at', vpp.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', vpp.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_congestion_offers')),
    sa.UniqueConstraint('message_id', name=op.f('uq_congestion_offers_message_id'))
    )
    op.create_table('congestion_points',
    sa.Column('ean', sa.String(length=64), nullable=False),
    sa.Column('dso', sa.String(length=120), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=True),
    sa.Column('max_kw', sa.Float(), nullable=True),
    sa.Column('created_at', vpp.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', vpp.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('ean', name=op.f('pk_congestion_points'))
    )
    op.create_table('congestion_prognoses',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('message_id', sa.String(length=64), nullable=False),
    sa.Column('dso_domain', sa.String(length=253), nullable=False),
    sa.Column('congestion_point', sa.String(length=120), nullable=False),
    sa.Column('period', sa.Date(), nullable=False),
    sa.Column('revision', sa.Integer(), nullable=False),
    sa.Column('power_kw', sa.JSON(), nullable=False),
    sa.Column('created_at', vpp.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_congestion_prognoses')),
    sa.UniqueConstraint('congestion_point', 'period', 'revision', name=op.f('uq_congestion_prognoses_congestion_point_period_revision')),
    sa.UniqueConstraint('message_id', name=op.f('uq_congestion_prognoses_message_id'))
    )
    op.create_table('dispatch_allocations',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('pool', sa.String(length=120), nullable=False),
    sa.Column('at', vpp.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('setpoint_seq', sa.BigInteger(), nullable=True),
    sa.Column('setpoint_mw', sa.Float(), nullable=False),
    sa.Column('target_kw', sa.Float(), nullable=False),
    sa.Column('total_kw', sa.Float(), nullable=False),
    sa.Column('baseline_kw', sa.Float(), nullable=False),
    sa.Column('measured_kw', sa.Float(), nullable=False),
    sa.Column('sessions', sa.Integer(), nullable=False),
    sa.Column('changed', sa.Integer(), nullable=False),
    sa.Column('full', sa.Boolean(), nullable=False),
    sa.Column('flags', sa.JSON(), nullable=False),
    sa.Column('items', sa.JSON(), nullable=False),
    sa.Column('owner', sa.String(length=64), nullable=False),
    sa.Column('fence', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dispatch_allocations'))
    )
    with op.batch_alter_table('dispatch_allocations', schema=None) as batch_op:
        batch_op.create_index('ix_dispatch_allocations_pool_at', ['pool', 'at'], unique=False)

    op.create_table('dispatch_fences',
    sa.Column('pool', sa.String(length=120), nullable=False),
    sa.Column('fence', sa.BigInteger(), nullable=False),
    sa.Column('owner', sa.String(length=64), nullable=False),
    sa.Column('updated_at', vpp.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('pool', name=op.f('pk_dispatch_fences'))
    )
    op.create_table('dispatch_sends',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('allocation_id', sa.String(length=32), nullable=False),
    sa.Column('pool', sa.String(length=120), nullable=False),
    sa.Column('batch', sa.String(length=120), nullable=False),
    sa.Column('sent_at', vpp.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('completed_at', vpp.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('items', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dispatch_sends'))
    )
    with op.batch_alter_table('dispatch_sends', schema=None) as batch_op:
        batch_op.create_index('ix_dispatch_sends_pool_sent_at', ['pool', 'sent_at'], unique=False)

    op.create_table('pool_responses',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('pool', sa.String(length=120), nullable=False),
    sa.Column('at', vpp.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('setpoint_seq', sa.BigInteger(), nullable=True),
    sa.Column('requested_mw', sa.Float(), nullable=False),
    sa.Column('supplied_mw', sa.Float(), nullable=False),
    sa.Column('target_kw', sa.Float(), nullable=False),
    sa.Column('measured_kw', sa.Float(), nullable=False),
    sa.Column('baseline_kw', sa.Float(), nullable=False),
    sa.Column('supplied_kw', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_pool_responses')),
    sa.UniqueConstraint('pool', 'at', name=op.f('uq_pool_responses_pool_at'))
    )
    op.create_table('uftp_messages',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('direction', sa.String(length=8), nullable=False),
    sa.Column('message_type', sa.String(length=40), nullable=False),
    sa.Column('message_id', sa.String(length=64), nullable=False),
    sa.Column('conversation_id', sa.String(length=64), nullable=False),
    sa.Column('sender_domain', sa.String(length=253), nullable=False),
    sa.Column('recipient_domain', sa.String(length=253), nullable=False),
    sa.Column('xml', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('created_at', vpp.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', vpp.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_uftp_messages')),
    sa.UniqueConstraint('direction', 'sender_domain', 'message_id', name=op.f('uq_uftp_messages_direction_sender_domain_message_id'))
    )
    with op.batch_alter_table('uftp_messages', schema=None) as batch_op:
        batch_op.create_index('ix_uftp_messages_conversation_id', ['conversation_id'], unique=False)
        batch_op.create_index('ix_uftp_messages_created_at', ['created_at'], unique=False)

    op.create_table('uftp_participants',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('domain', sa.String(length=253), nullable=False),
    sa.Column('role', sa.String(length=8), nullable=False),
    sa.Column('public_key_b64', sa.String(length=64), nullable=False),
    sa.Column('endpoint_url', sa.String(length=500), nullable=False),
    sa.Column('penalty_eur_per_mw', sa.Float(), nullable=False),
    sa.Column('created_at', vpp.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', vpp.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_uftp_participants')),
    sa.UniqueConstraint('domain', name=op.f('uq_uftp_participants_domain'))
    )
    op.create_table('bid_audit',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('bid_id', sa.String(length=32), nullable=False),
    sa.Column('at', vpp.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('action', sa.String(length=32), nullable=False),
    sa.Column('actor_key_id', sa.String(length=32), nullable=True),
    sa.Column('actor_name', sa.String(length=200), nullable=False),
    sa.Column('before', sa.JSON(), nullable=True),
    sa.Column('after', sa.JSON(), nullable=True),
    sa.ForeignKeyConstraint(['bid_id'], ['bids.id'], name=op.f('fk_bid_audit_bid_id_bids'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_bid_audit'))
    )
    with op.batch_alter_table('bid_audit', schema=None) as batch_op:
        batch_op.create_index('ix_bid_audit_bid_id_at', ['bid_id', 'at'], unique=False)

    op.create_table('congestion_orders',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('message_id', sa.String(length=64), nullable=False),
    sa.Column('order_reference', sa.String(length=120), nullable=False),
    sa.Column('offer_id', sa.String(length=32), nullable=False),
    sa.Column('dso_domain', sa.String(length=253), nullable=False),
    sa.Column('congestion_point', sa.String(length=120), nullable=False),
    sa.Column('period', sa.Date(), nullable=False),
    sa.Column('price_eur', sa.Numeric(precision=18, scale=4), nullable=False),
    sa.Column('activation_factor', sa.Numeric(precision=4, scale=2), nullable=False),
    sa.Column('isps', sa.JSON(), nullable=False),
    sa.Column('settlement_status', sa.String(length=16), nullable=False),
    sa.Column('settlement_reason', sa.Text(), nullable=True),
    sa.Column('settlement_message_id', sa.String(length=64), nullable=True),
    sa.Column('our_net_eur', sa.Float(), nullable=True),
    sa.Column('their_net_eur', sa.Float(), nullable=True),
    sa.Column('settled_at', vpp.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', vpp.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['offer_id'], ['congestion_offers.id'], name=op.f('fk_congestion_orders_offer_id_congestion_offers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_congestion_orders')),
    sa.UniqueConstraint('dso_domain', 'order_reference', name=op.f('uq_congestion_orders_dso_domain_order_reference'))
    )
    op.create_table('sites',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=True),
    sa.Column('capacity_kw', sa.Float(), nullable=True),
    sa.Column('congestion_point_ean', sa.String(length=64), nullable=True),
    sa.Column('bidding_zone', sa.String(length=16), nullable=False),
    sa.Column('category', sa.String(length=16), nullable=False),
    sa.Column('created_at', vpp.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', vpp.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['congestion_point_ean'], ['congestion_points.ean'], name=op.f('fk_sites_congestion_point_ean_congestion_points')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sites'))
    )
    op.create_table('uftp_congestion_points',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('congestion_point', sa.String(length=120), nullable=False),
    sa.Column('participant_id', sa.String(length=32), nullable=False),
    sa.Column('created_at', vpp.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['participant_id'], ['uftp_participants.id'], name=op.f('fk_uftp_congestion_points_participant_id_uftp_participants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_uftp_congestion_points')),
    sa.UniqueConstraint('congestion_point', name=op.f('uq_uftp_congestion_points_congestion_point'))
    )
    op.create_table('uftp_outbox',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('message_row_id', sa.String(length=32), nullable=False),
    sa.Column('recipient_domain', sa.String(length=253), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', vpp.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('claimed_until', vpp.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('delivered_at', vpp.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', vpp.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['message_row_id'], ['uftp_messages.id'], name=op.f('fk_uftp_outbox_message_row_id_uftp_messages'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_uftp_outbox')),
    sa.UniqueConstraint('message_row_id', name=op.f('uq_uftp_outbox_message_row_id'))
    )
    with op.batch_alter_table('uftp_outbox', schema=None) as batch_op:
        batch_op.create_index('ix_uftp_outbox_status_next_attempt_at', ['status', 'next_attempt_at'], unique=False)

    op.create_table('charging_needs',
    sa.Column('session_id', sa.String(length=32), nullable=False),
    sa.Column('departure_at', vpp.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('energy_kwh', sa.Float(), nullable=True),
    sa.Column('target_soc_pct', sa.Float(), nullable=True),
    sa.Column('battery_kwh', sa.Float(), nullable=True),
    sa.Column('discharge_allowed', sa.Boolean(), nullable=False),
    sa.Column('min_soc_pct', sa.Float(), nullable=True),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('confidence', sa.Float(), nullable=False),
    sa.Column('updated_at', vpp.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['session_id'], ['charging_sessions.id'], name=op.f('fk_charging_needs_session_id_charging_sessions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('session_id', name=op.f('pk_charging_needs'))
    )
    op.create_table('site_loads',
    sa.Column('site_id', sa.String(length=64), nullable=False),
    sa.Column('isp_start', vpp.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('load_kw', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['site_id'], ['sites.id'], name=op.f('fk_site_loads_site_id_sites'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('site_id', 'isp_start', name=op.f('pk_site_loads'))
    )
    op.create_table('site_locations',
    sa.Column('party_key', sa.String(length=8), nullable=False),
    sa.Column('location_key', sa.String(length=36), nullable=False),
    sa.Column('site_id', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['site_id'], ['sites.id'], name=op.f('fk_site_locations_site_id_sites'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('party_key', 'location_key', name=op.f('pk_site_locations'))
    )
    with op.batch_alter_table('site_locations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_site_locations_site_id'), ['site_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('site_locations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_site_locations_site_id'))

    op.drop_table('site_locations')
    op.drop_table('site_loads')
    op.drop_table('charging_needs')
    with op.batch_alter_table('uftp_outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_uftp_outbox_status_next_attempt_at')

    op.drop_table('uftp_outbox')
    op.drop_table('uftp_congestion_points')
    op.drop_table('sites')
    op.drop_table('congestion_orders')
    with op.batch_alter_table('bid_audit', schema=None) as batch_op:
        batch_op.drop_index('ix_bid_audit_bid_id_at')

    op.drop_table('bid_audit')
    op.drop_table('uftp_participants')
    with op.batch_alter_table('uftp_messages', schema=None) as batch_op:
        batch_op.drop_index('ix_uftp_messages_created_at')
        batch_op.drop_index('ix_uftp_messages_conversation_id')

    op.drop_table('uftp_messages')
    op.drop_table('pool_responses')
    with op.batch_alter_table('dispatch_sends', schema=None) as batch_op:
        batch_op.drop_index('ix_dispatch_sends_pool_sent_at')

    op.drop_table('dispatch_sends')
    op.drop_table('dispatch_fences')
    with op.batch_alter_table('dispatch_allocations', schema=None) as batch_op:
        batch_op.drop_index('ix_dispatch_allocations_pool_at')

    op.drop_table('dispatch_allocations')
    op.drop_table('congestion_prognoses')
    op.drop_table('congestion_points')
    op.drop_table('congestion_offers')
    with op.batch_alter_table('commitments', schema=None) as batch_op:
        batch_op.drop_index('ix_commitments_pool_isp_start')

    op.drop_table('commitments')
    with op.batch_alter_table('bookings', schema=None) as batch_op:
        batch_op.drop_index('ix_bookings_vehicle_key_start_at')

    op.drop_table('bookings')
    with op.batch_alter_table('bids', schema=None) as batch_op:
        batch_op.drop_index('ix_bids_market_pool_status')

    op.drop_table('bids')
    op.drop_table('afrr_setpoints')
