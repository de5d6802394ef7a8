"""site series change markers: a token per site and series kind, replaced on every write, with the span written

Revision ID: 0012_site_series_marks
Revises: 0011_sessions_status_start
Create Date: 2026-12-07 06:00:00

Issue 19. Every re-plan forecast each equipped site's PV and load from a week of its metered history, read again
each time although one ISP of it changes between re-plans. With a marker per site and kind the planner's process
keeps the rows and reads again only the span the last write changed (or everything, when it missed a write).
Series written before this revision have no marker: their first read is a full one, as before.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import vpp.db

revision = '0012_site_series_marks'
down_revision = '0011_sessions_status_start'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('site_series_marks',
    sa.Column('site_id', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('token', sa.BigInteger(), nullable=False),
    sa.Column('previous', sa.BigInteger(), nullable=True),
    sa.Column('changed_from', vpp.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('changed_to', vpp.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['site_id'], ['sites.id'], name=op.f('fk_site_series_marks_site_id_sites'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('site_id', 'kind', name=op.f('pk_site_series_marks'))
    )


def downgrade() -> None:
    op.drop_table('site_series_marks')
