"""Queries of the OCPI connections feature."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from vpp.ocpi.tables import OcpiConnection


def by_token_hashes(session: Session, hashes: Sequence[str]) -> OcpiConnection | None:
    """The connection whose incoming token or token A has one of these hashes."""
    if not hashes:
        return None
    stmt = select(OcpiConnection).where(
        or_(OcpiConnection.incoming_token_hash.in_(hashes), OcpiConnection.token_a_hash.in_(hashes))
    )
    return session.scalars(stmt).first()


def all_connections(session: Session, *, status: str | None = None) -> list[OcpiConnection]:
    """Connections (optionally of one status), oldest first."""
    stmt = select(OcpiConnection).order_by(OcpiConnection.created_at, OcpiConnection.id)
    if status is not None:
        stmt = stmt.where(OcpiConnection.status == status)
    return list(session.scalars(stmt))


def by_name_or_id(session: Session, ref: str) -> OcpiConnection | None:
    """A connection by id, else by name."""
    return session.get(OcpiConnection, ref) or session.scalars(
        select(OcpiConnection).where(OcpiConnection.name == ref).order_by(OcpiConnection.created_at.desc())
    ).first()


def with_outgoing_token(session: Session) -> list[OcpiConnection]:
    """Connections holding a token to call their peer with."""
    stmt = select(OcpiConnection).where(OcpiConnection.outgoing_token_sealed.is_not(None)).order_by(OcpiConnection.id)
    return list(session.scalars(stmt))
