"""Tables of commitments."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Float, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from vpp.db import ID, Base, new_id, utcnow


class Commitment(Base):
    """One obligation of one pool for one ISP; a newer version from the same reference replaces the older."""

    __tablename__ = "commitments"
    __table_args__ = (
        UniqueConstraint("pool", "isp_start", "kind", "reference"),
        Index("ix_commitments_pool_isp_start", "pool", "isp_start"),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    pool: Mapped[str] = mapped_column(String(120))
    isp_start: Mapped[datetime]
    kind: Mapped[str] = mapped_column(String(32))
    power_kw: Mapped[float] = mapped_column(Float)
    price_eur_per_mwh: Mapped[float | None] = mapped_column(Float, default=None)
    source: Mapped[str] = mapped_column(String(32))
    reference: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
