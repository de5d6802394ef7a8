"""ocpi connections, sessions, readings, locations, cdrs, limit requests

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 09:32:57.648759
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import vpp.db

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('ocpi_connections',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('initiated_by', sa.String(length=8), nullable=False),
    sa.Column('token_a_hash', sa.String(length=64), nullable=True),
    sa.Column('incoming_token_hash', sa.String(length=64), nullable=True),
    sa.Column('outgoing_token', sa.String(length=64), nullable=True),
    sa.Column('versions_url', sa.String(length=255), nullable=True),
    sa.Column('version', sa.String(length=16), nullable=True),
    sa.Column('endpoints', sa.JSON(), nullable=False),
    sa.Column('roles', sa.JSON(), nullable=False),
    sa.Column('flags', sa.JSON(), nullable=False),
    sa.Column('sessions_pulled_at', vpp.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('cdrs_pulled_at', vpp.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('locations_pulled_at', vpp.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', vpp.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('registered_at', vpp.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('updated_at', vpp.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ocpi_connections')),
    sa.UniqueConstraint('incoming_token_hash', name=op.f('uq_ocpi_connections_incoming_token_hash')),
    sa.UniqueConstraint('token_a_hash', name=op.f('uq_ocpi_connections_token_a_hash'))
    )
    op.create_table('charging_locations',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('connection_id', sa.String(length=32), nullable=False),
    sa.Column('country_code', sa.String(length=2), nullable=False),
    sa.Column('party_id', sa.String(length=3), nullable=False),
    sa.Column('party_key', sa.String(length=6), nullable=False),
    sa.Column('external_id', sa.String(length=36), nullable=False),
    sa.Column('external_key', sa.String(length=36), nullable=False),
    sa.Column('publish', sa.Boolean(), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=True),
    sa.Column('address', sa.String(length=45), nullable=False),
    sa.Column('city', sa.String(length=45), nullable=False),
    sa.Column('postal_code', sa.String(length=10), nullable=True),
    sa.Column('country', sa.String(length=3), nullable=False),
    sa.Column('latitude', sa.String(length=10), nullable=False),
    sa.Column('longitude', sa.String(length=11), nullable=False),
    sa.Column('time_zone', sa.String(length=255), nullable=False),
    sa.Column('last_updated', vpp.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['connection_id'], ['ocpi_connections.id'], name=op.f('fk_charging_locations_connection_id_ocpi_connections')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_charging_locations'))
    )
    with op.batch_alter_table('charging_locations', schema=None) as batch_op:
        batch_op.create_index('uq_charging_locations_connection_party_external', ['connection_id', 'party_key', 'external_key'], unique=True)

    op.create_table('charging_sessions',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('connection_id', sa.String(length=32), nullable=False),
    sa.Column('country_code', sa.String(length=2), nullable=False),
    sa.Column('party_id', sa.String(length=3), nullable=False),
    sa.Column('party_key', sa.String(length=6), nullable=False),
    sa.Column('external_id', sa.String(length=36), nullable=False),
    sa.Column('external_key', sa.String(length=36), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('start_at', vpp.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('end_at', vpp.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('energy_kwh', sa.Float(), nullable=False),
    sa.Column('location_id', sa.String(length=36), nullable=False),
    sa.Column('evse_uid', sa.String(length=36), nullable=False),
    sa.Column('connector_id', sa.String(length=36), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('meter_id', sa.String(length=255), nullable=True),
    sa.Column('auth_method', sa.String(length=16), nullable=True),
    sa.Column('authorization_reference', sa.String(length=36), nullable=True),
    sa.Column('driver_token', sa.JSON(), nullable=False),
    sa.Column('total_cost_excl_vat', sa.Float(), nullable=True),
    sa.Column('total_cost_incl_vat', sa.Float(), nullable=True),
    sa.Column('last_updated', vpp.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('active_limit', sa.JSON(), nullable=True),
    sa.Column('active_limit_at', vpp.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', vpp.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', vpp.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['connection_id'], ['ocpi_connections.id'], name=op.f('fk_charging_sessions_connection_id_ocpi_connections')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_charging_sessions'))
    )
    with op.batch_alter_table('charging_sessions', schema=None) as batch_op:
        batch_op.create_index('ix_charging_sessions_start_at', ['start_at'], unique=False)
        batch_op.create_index('ix_charging_sessions_status_connection', ['status', 'connection_id'], unique=False)
        batch_op.create_index('uq_charging_sessions_connection_external_party', ['connection_id', 'external_key', 'party_key'], unique=True)

    op.create_table('charge_detail_records',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('connection_id', sa.String(length=32), nullable=False),
    sa.Column('country_code', sa.String(length=2), nullable=False),
    sa.Column('party_id', sa.String(length=3), nullable=False),
    sa.Column('party_key', sa.String(length=6), nullable=False),
    sa.Column('external_id', sa.String(length=39), nullable=False),
    sa.Column('external_key', sa.String(length=39), nullable=False),
    sa.Column('session_external_id', sa.String(length=36), nullable=True),
    sa.Column('session_id', sa.String(length=32), nullable=True),
    sa.Column('start_at', vpp.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('end_at', vpp.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('energy_kwh', sa.Float(), nullable=False),
    sa.Column('total_time_h', sa.Float(), nullable=False),
    sa.Column('parking_time_h', sa.Float(), nullable=True),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('total_cost_excl_vat', sa.Float(), nullable=False),
    sa.Column('total_cost_incl_vat', sa.Float(), nullable=True),
    sa.Column('credit', sa.Boolean(), nullable=False),
    sa.Column('credit_reference_id', sa.String(length=39), nullable=True),
    sa.Column('credited_by', sa.String(length=32), nullable=True),
    sa.Column('location_id', sa.String(length=36), nullable=False),
    sa.Column('evse_uid', sa.String(length=36), nullable=False),
    sa.Column('connector_id', sa.String(length=36), nullable=False),
    sa.Column('last_updated', vpp.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('document', sa.JSON(), nullable=False),
    sa.Column('received_at', vpp.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['connection_id'], ['ocpi_connections.id'], name=op.f('fk_charge_detail_records_connection_id_ocpi_connections')),
    sa.ForeignKeyConstraint(['session_id'], ['charging_sessions.id'], name=op.f('fk_charge_detail_records_session_id_charging_sessions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_charge_detail_records'))
    )
    with op.batch_alter_table('charge_detail_records', schema=None) as batch_op:
        batch_op.create_index('ix_charge_detail_records_session_id', ['session_id'], unique=False)
        batch_op.create_index('uq_charge_detail_records_connection_party_external', ['connection_id', 'party_key', 'external_key'], unique=True)

    op.create_table('charging_evses',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('location_pk', sa.String(length=32), nullable=False),
    sa.Column('uid', sa.String(length=36), nullable=False),
    sa.Column('uid_key', sa.String(length=36), nullable=False),
    sa.Column('evse_id', sa.String(length=48), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('capabilities', sa.JSON(), nullable=False),
    sa.Column('charging_profile_capable', sa.Boolean(), nullable=False),
    sa.Column('last_updated', vpp.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['location_pk'], ['charging_locations.id'], name=op.f('fk_charging_evses_location_pk_charging_locations')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_charging_evses'))
    )
    with op.batch_alter_table('charging_evses', schema=None) as batch_op:
        batch_op.create_index('uq_charging_evses_location_uid', ['location_pk', 'uid_key'], unique=True)

    op.create_table('charging_profile_requests',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('session_id', sa.String(length=32), nullable=False),
    sa.Column('connection_id', sa.String(length=32), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('requested_limit_kw', sa.Float(), nullable=True),
    sa.Column('limit_kw', sa.Float(), nullable=True),
    sa.Column('sent_limit', sa.Float(), nullable=True),
    sa.Column('sent_unit', sa.String(length=1), nullable=True),
    sa.Column('clipped', sa.Boolean(), nullable=False),
    sa.Column('valid_until', vpp.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('answer', sa.String(length=16), nullable=True),
    sa.Column('result', sa.String(length=16), nullable=True),
    sa.Column('timeout_s', sa.Integer(), nullable=True),
    sa.Column('deadline_at', vpp.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('backoff_s', sa.Float(), nullable=True),
    sa.Column('retry_at', vpp.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('message', sa.String(length=500), nullable=True),
    sa.Column('created_at', vpp.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('answered_at', vpp.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('result_at', vpp.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['connection_id'], ['ocpi_connections.id'], name=op.f('fk_charging_profile_requests_connection_id_ocpi_connections')),
    sa.ForeignKeyConstraint(['session_id'], ['charging_sessions.id'], name=op.f('fk_charging_profile_requests_session_id_charging_sessions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_charging_profile_requests'))
    )
    with op.batch_alter_table('charging_profile_requests', schema=None) as batch_op:
        batch_op.create_index('ix_charging_profile_requests_session_created', ['session_id', 'created_at'], unique=False)
        batch_op.create_index('ix_charging_profile_requests_status_deadline', ['status', 'deadline_at'], unique=False)

    op.create_table('session_readings',
    sa.Column('session_id', sa.String(length=32), nullable=False),
    sa.Column('start_at', vpp.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('power_kw', sa.Float(), nullable=True),
    sa.Column('energy_kwh', sa.Float(), nullable=True),
    sa.Column('soc_pct', sa.Float(), nullable=True),
    sa.Column('current_a', sa.Float(), nullable=True),
    sa.Column('extra', sa.JSON(), nullable=True),
    sa.ForeignKeyConstraint(['session_id'], ['charging_sessions.id'], name=op.f('fk_session_readings_session_id_charging_sessions')),
    sa.PrimaryKeyConstraint('session_id', 'start_at', name=op.f('pk_session_readings'))
    )
    with op.batch_alter_table('session_readings', schema=None) as batch_op:
        batch_op.create_index('ix_session_readings_start_at', ['start_at'], unique=False)

    op.create_table('charging_connectors',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('evse_pk', sa.String(length=32), nullable=False),
    sa.Column('external_id', sa.String(length=36), nullable=False),
    sa.Column('external_key', sa.String(length=36), nullable=False),
    sa.Column('power_type', sa.String(length=20), nullable=False),
    sa.Column('phases', sa.Integer(), nullable=False),
    sa.Column('max_voltage_v', sa.Integer(), nullable=False),
    sa.Column('max_current_a', sa.Integer(), nullable=False),
    sa.Column('rated_power_kw', sa.Float(), nullable=True),
    sa.Column('max_power_kw', sa.Float(), nullable=False),
    sa.Column('standard', sa.String(length=40), nullable=False),
    sa.Column('format', sa.String(length=8), nullable=False),
    sa.Column('last_updated', vpp.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['evse_pk'], ['charging_evses.id'], name=op.f('fk_charging_connectors_evse_pk_charging_evses')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_charging_connectors'))
    )
    with op.batch_alter_table('charging_connectors', schema=None) as batch_op:
        batch_op.create_index('uq_charging_connectors_evse_external', ['evse_pk', 'external_key'], unique=True)



def downgrade() -> None:
    with op.batch_alter_table('charging_connectors', schema=None) as batch_op:
        batch_op.drop_index('uq_charging_connectors_evse_external')

    op.drop_table('charging_connectors')
    with op.batch_alter_table('session_readings', schema=None) as batch_op:
        batch_op.drop_index('ix_session_readings_start_at')

    op.drop_table('session_readings')
    with op.batch_alter_table('charging_profile_requests', schema=None) as batch_op:
        batch_op.drop_index('ix_charging_profile_requests_status_deadline')
        batch_op.drop_index('ix_charging_profile_requests_session_created')

    op.drop_table('charging_profile_requests')
    with op.batch_alter_table('charging_evses', schema=None) as batch_op:
        batch_op.drop_index('uq_charging_evses_location_uid')

    op.drop_table('charging_evses')
    with op.batch_alter_table('charge_detail_records', schema=None) as batch_op:
        batch_op.drop_index('uq_charge_detail_records_connection_party_external')
        batch_op.drop_index('ix_charge_detail_records_session_id')

    op.drop_table('charge_detail_records')
    with op.batch_alter_table('charging_sessions', schema=None) as batch_op:
        batch_op.drop_index('uq_charging_sessions_connection_external_party')
        batch_op.drop_index('ix_charging_sessions_status_connection')
        batch_op.drop_index('ix_charging_sessions_start_at')

    op.drop_table('charging_sessions')
    with op.batch_alter_table('charging_locations', schema=None) as batch_op:
        batch_op.drop_index('uq_charging_locations_connection_party_external')

    op.drop_table('charging_locations')
    op.drop_table('ocpi_connections')
