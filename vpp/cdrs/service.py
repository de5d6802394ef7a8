"""Use cases of CDRs: receive (idempotent, credits linked to what they reverse), read."""

from __future__ import annotations

from dataclasses import asdict

from sqlalchemy import select
from sqlalchemy.orm import Session

from vpp.cdrs.tables import ChargeDetailRecord
from vpp.cdrs.values import CdrRecord
from vpp.domain.errors import InvalidInput, NotFound
from vpp.sessions import service as sessions


def _party_key(country_code: str, party_id: str) -> str:
    return f"{country_code}/{party_id}".casefold()


def find(
    session: Session, connection_id: str, country_code: str, party_id: str, external_id: str
) -> ChargeDetailRecord | None:
    """A CDR by its CPO's id (case-insensitive)."""
    stmt = select(ChargeDetailRecord).where(
        ChargeDetailRecord.connection_id == connection_id,
        ChargeDetailRecord.party_key == _party_key(country_code, party_id),
        ChargeDetailRecord.external_key == external_id.casefold(),
    )
    return session.scalars(stmt).first()


def receive(session: Session, connection_id: str, record: CdrRecord) -> tuple[ChargeDetailRecord, bool]:
    """Store a CDR; CDRs are immutable, so receiving one again returns the stored one (created False)."""
    if record.credit and not record.credit_reference_id:
        raise InvalidInput("a credit CDR must name the CDR it reverses (credit_reference_id)")
    existing = find(session, connection_id, record.country_code, record.party_id, record.external_id)
    if existing is not None:
        return existing, False
    charged = (
        sessions.find(session, connection_id, record.country_code, record.party_id, record.session_external_id)
        if record.session_external_id
        else None
    )
    fields = asdict(record)
    fields.pop("start")
    fields.pop("end")
    row = ChargeDetailRecord(
        connection_id=connection_id,
        party_key=_party_key(record.country_code, record.party_id),
        external_key=record.external_id.casefold(),
        session_id=charged.id if charged is not None else None,
        start_at=record.start,
        end_at=record.end,
        **fields,
    )
    session.add(row)
    session.flush()
    if record.credit and record.credit_reference_id:
        original = find(session, connection_id, record.country_code, record.party_id, record.credit_reference_id)
        if original is not None:
            original.credited_by = row.id
            session.flush()
    return row, True


def get_for_connection(session: Session, connection_id: str, cdr_id: str) -> ChargeDetailRecord:
    """A CDR by our id, visible only to the connection that sent it, else NotFound."""
    row = session.get(ChargeDetailRecord, cdr_id)
    if row is None or row.connection_id != connection_id:
        raise NotFound(f"CDR {cdr_id!r} does not exist")
    return row


def for_session(session: Session, session_id: str) -> list[ChargeDetailRecord]:
    """The CDRs (and credits) of one of our sessions."""
    stmt = select(ChargeDetailRecord).where(ChargeDetailRecord.session_id == session_id)
    return list(session.scalars(stmt.order_by(ChargeDetailRecord.received_at)))
