"""secrets: outgoing OCPI tokens sealed at rest, API key expiry and rate limit, admin audit

Revision ID: 0006_secrets
Revises: 0005
Create Date: 2026-12-06 14:45:00

``ocpi_connections.outgoing_token`` (plaintext) becomes ``outgoing_token_sealed`` (SecretBox, ``vpp.keyring``):
the upgrade seals every stored token with the current key (``VPP_TOKEN_KEY``, else the one derived from
``VPP_SECRET_KEY``), the downgrade opens them again. Run both with the process's settings.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

from vpp.db import UTCDateTime
from vpp.keyring import Keyring, is_sealed

revision = '0006_secrets'
down_revision = '0005'
branch_labels = None
depends_on = None

_connections = sa.table(
    'ocpi_connections', sa.column('id', sa.String(32)), sa.column('outgoing_token', sa.String(64)),
    sa.column('outgoing_token_sealed', sa.String(255)),
)


def _keyring() -> Keyring:
    keyring = context.config.attributes.get('token_keyring')
    if keyring is None:
        from vpp.config import Settings

        keyring = Settings().token_keyring
    assert isinstance(keyring, Keyring)
    return keyring


def upgrade() -> None:
    with op.batch_alter_table('api_keys') as batch:
        batch.add_column(sa.Column('expires_at', UTCDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column('rate_limit_per_minute', sa.Integer(), nullable=True))
    op.create_table(
        'admin_audit',
        sa.Column('id', sa.String(length=32), nullable=False),
        sa.Column('at', UTCDateTime(timezone=True), nullable=False),
        sa.Column('actor', sa.String(length=240), nullable=False),
        sa.Column('actor_key_id', sa.String(length=32), nullable=True),
        sa.Column('action', sa.String(length=64), nullable=False),
        sa.Column('target', sa.String(length=200), nullable=True),
        sa.Column('detail', sa.JSON(), nullable=False),
        sa.Column('request_id', sa.String(length=128), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_admin_audit')),
    )
    op.create_index('ix_admin_audit_at', 'admin_audit', ['at'], unique=False)
    op.create_index('ix_admin_audit_action_at', 'admin_audit', ['action', 'at'], unique=False)

    with op.batch_alter_table('ocpi_connections') as batch:
        batch.add_column(sa.Column('outgoing_token_sealed', sa.String(length=255), nullable=True))
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(_connections.c.id, _connections.c.outgoing_token).where(_connections.c.outgoing_token.is_not(None))
    ).all()
    if rows:
        keyring = _keyring()
        for connection_id, token in rows:
            sealed = token if is_sealed(token) else keyring.seal(token)
            bind.execute(
                _connections.update().where(_connections.c.id == connection_id).values(outgoing_token_sealed=sealed)
            )
    with op.batch_alter_table('ocpi_connections') as batch:
        batch.drop_column('outgoing_token')


def downgrade() -> None:
    with op.batch_alter_table('ocpi_connections') as batch:
        batch.add_column(sa.Column('outgoing_token', sa.String(length=64), nullable=True))
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(_connections.c.id, _connections.c.outgoing_token_sealed)
        .where(_connections.c.outgoing_token_sealed.is_not(None))
    ).all()
    if rows:
        keyring = _keyring()
        for connection_id, sealed in rows:
            bind.execute(
                _connections.update().where(_connections.c.id == connection_id)
                .values(outgoing_token=keyring.open(sealed))
            )
    with op.batch_alter_table('ocpi_connections') as batch:
        batch.drop_column('outgoing_token_sealed')

    op.drop_index('ix_admin_audit_action_at', table_name='admin_audit')
    op.drop_index('ix_admin_audit_at', table_name='admin_audit')
    op.drop_table('admin_audit')
    with op.batch_alter_table('api_keys') as batch:
        batch.drop_column('rate_limit_per_minute')
        batch.drop_column('expires_at')
