"""The UFTP participant registry: DSO domains, their keys, endpoints and congestion points."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from vpp.congestion.tables import UftpCongestionPoint, UftpParticipant
from vpp.domain.errors import Conflict, InvalidInput, NotFound


def _check_public_key(public_key_b64: str) -> None:
    try:
        raw = base64.b64decode(public_key_b64, validate=True)
    except binascii.Error as exc:
        raise InvalidInput("public key is not base64") from exc
    if len(raw) != 32:
        raise InvalidInput(f"public key must be 32 bytes (Ed25519), got {len(raw)}")


def upsert(
    session: Session,
    *,
    domain: str,
    public_key_b64: str,
    endpoint_url: str,
    congestion_points: Sequence[str] = (),
    penalty_eur_per_mw: float = 0.0,
) -> UftpParticipant:
    """Register a DSO or update its key, endpoint and penalty; add congestion points it manages."""
    _check_public_key(public_key_b64)
    if not endpoint_url.startswith(("http://", "https://")):
        raise InvalidInput(f"endpoint {endpoint_url!r} is not an http(s) URL")
    if penalty_eur_per_mw < 0:
        raise InvalidInput("penalty_eur_per_mw must not be negative")
    row = session.scalar(select(UftpParticipant).where(UftpParticipant.domain == domain))
    if row is None:
        row = UftpParticipant(
            domain=domain,
            role="DSO",
            public_key_b64=public_key_b64,
            endpoint_url=endpoint_url,
            penalty_eur_per_mw=penalty_eur_per_mw,
        )
        session.add(row)
        session.flush()
    else:
        row.public_key_b64 = public_key_b64
        row.endpoint_url = endpoint_url
        row.penalty_eur_per_mw = penalty_eur_per_mw
    for point in congestion_points:
        existing = session.scalar(select(UftpCongestionPoint).where(UftpCongestionPoint.congestion_point == point))
        if existing is None:
            session.add(UftpCongestionPoint(congestion_point=point, participant_id=row.id))
        elif existing.participant_id != row.id:
            raise Conflict(f"congestion point {point} is already managed by another participant")
    session.flush()
    return row


def get_by_domain(session: Session, domain: str) -> UftpParticipant | None:
    """The participant with this UFTP domain."""
    return session.scalar(select(UftpParticipant).where(UftpParticipant.domain == domain))


def get_or_raise(session: Session, domain: str) -> UftpParticipant:
    """The participant with this UFTP domain, or NotFound."""
    row = get_by_domain(session, domain)
    if row is None:
        raise NotFound(f"UFTP participant {domain!r} is not registered")
    return row


def public_key(session: Session, domain: str, role: str) -> str | None:
    """The registered public key of ``domain`` acting as ``role``."""
    row = get_by_domain(session, domain)
    return row.public_key_b64 if row is not None and row.role == role else None


def manages(session: Session, domain: str, congestion_point: str) -> bool:
    """Whether the participant ``domain`` manages ``congestion_point``."""
    stmt = (
        select(UftpCongestionPoint.id)
        .join(UftpParticipant, UftpParticipant.id == UftpCongestionPoint.participant_id)
        .where(UftpParticipant.domain == domain, UftpCongestionPoint.congestion_point == congestion_point)
    )
    return session.scalar(stmt) is not None


def congestion_points(session: Session) -> list[tuple[str, str]]:
    """Every (participant domain, congestion point), ordered."""
    stmt = (
        select(UftpParticipant.domain, UftpCongestionPoint.congestion_point)
        .join(UftpCongestionPoint, UftpParticipant.id == UftpCongestionPoint.participant_id)
        .order_by(UftpParticipant.domain, UftpCongestionPoint.congestion_point)
    )
    return [(domain, point) for domain, point in session.execute(stmt)]


def list_participants(session: Session) -> list[UftpParticipant]:
    """All participants by domain."""
    return list(session.scalars(select(UftpParticipant).order_by(UftpParticipant.domain)))
