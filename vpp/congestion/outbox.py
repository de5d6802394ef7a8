"""The UFTP message log and the persistent outbox: every message in and out, delivery with back-off.

Delivery claims a row with a short lease in one transaction, sends outside it and records the result in a
second, so two workers never send the same row at once on either backend; a crash between send and record
resends after the lease (at least once; receivers drop duplicate MessageIDs).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from vpp.congestion.tables import UftpMessage, UftpOutbox, UftpParticipant

INBOUND, OUTBOUND = "in", "out"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential back-off: base * 2^(attempt-1) capped at max_delay; give up once give_up_after has passed."""

    base_seconds: float = 10.0
    max_delay_seconds: float = 900.0
    give_up_after_seconds: float = 3600.0

    def delay(self, attempts: int) -> timedelta:
        """The wait after the ``attempts``-th failed attempt."""
        return timedelta(seconds=min(self.base_seconds * 2 ** max(attempts - 1, 0), self.max_delay_seconds))


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """A claimed outgoing message: its XML and where it goes."""

    outbox_id: str
    message_type: str
    message_id: str
    recipient_domain: str
    endpoint_url: str | None
    xml: str
    attempts: int


def record_inbound(
    session: Session,
    *,
    message_type: str,
    message_id: str,
    conversation_id: str,
    sender_domain: str,
    recipient_domain: str,
    xml: str,
    status: str = "received",
    reason: str | None = None,
) -> UftpMessage | None:
    """Log an inbound message; None when this sender's MessageID was seen before (a duplicate)."""
    seen = session.scalar(
        select(UftpMessage.id).where(
            UftpMessage.direction == INBOUND,
            UftpMessage.sender_domain == sender_domain,
            UftpMessage.message_id == message_id,
        )
    )
    if seen is not None:
        return None
    row = UftpMessage(
        direction=INBOUND,
        message_type=message_type,
        message_id=message_id,
        conversation_id=conversation_id,
        sender_domain=sender_domain,
        recipient_domain=recipient_domain,
        xml=xml,
        status=status,
        reason=reason,
    )
    session.add(row)
    session.flush()
    return row


def enqueue(
    session: Session,
    *,
    message_type: str,
    message_id: str,
    conversation_id: str,
    sender_domain: str,
    recipient_domain: str,
    xml: str,
    now: datetime,
) -> UftpMessage:
    """Log an outgoing message and queue it for delivery now."""
    row = UftpMessage(
        direction=OUTBOUND,
        message_type=message_type,
        message_id=message_id,
        conversation_id=conversation_id,
        sender_domain=sender_domain,
        recipient_domain=recipient_domain,
        xml=xml,
        status="queued",
        created_at=now,
    )
    session.add(row)
    session.flush()
    session.add(
        UftpOutbox(message_row_id=row.id, recipient_domain=recipient_domain, next_attempt_at=now, created_at=now)
    )
    session.flush()
    return row


def due(session: Session, now: datetime, limit: int = 100) -> list[str]:
    """Ids of pending outbox rows whose next attempt is due and that nobody holds, oldest first."""
    stmt = (
        select(UftpOutbox.id)
        .where(
            UftpOutbox.status == "pending",
            UftpOutbox.next_attempt_at <= now,
            or_(UftpOutbox.claimed_until.is_(None), UftpOutbox.claimed_until < now),
        )
        .order_by(UftpOutbox.created_at, UftpOutbox.id)
        .limit(limit)
    )
    return list(session.scalars(stmt))


def claim(
    session: Session, outbox_id: str, now: datetime, lease: timedelta = timedelta(minutes=2)
) -> OutboxItem | None:
    """Take a due row for one delivery attempt (atomic status guard); None if it is not due or held."""
    result = session.execute(
        update(UftpOutbox)
        .where(
            and_(
                UftpOutbox.id == outbox_id,
                UftpOutbox.status == "pending",
                UftpOutbox.next_attempt_at <= now,
                or_(UftpOutbox.claimed_until.is_(None), UftpOutbox.claimed_until < now),
            )
        )
        .values(claimed_until=now + lease)
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 0) != 1:
        return None
    row = session.execute(
        select(UftpOutbox, UftpMessage, UftpParticipant.endpoint_url)
        .join(UftpMessage, UftpMessage.id == UftpOutbox.message_row_id)
        .outerjoin(UftpParticipant, UftpParticipant.domain == UftpOutbox.recipient_domain)
        .where(UftpOutbox.id == outbox_id)
    ).one()
    outbox, message, endpoint_url = row
    session.flush()
    return OutboxItem(
        outbox.id,
        message.message_type,
        message.message_id,
        outbox.recipient_domain,
        endpoint_url,
        message.xml,
        outbox.attempts,
    )


def mark_delivered(session: Session, outbox_id: str, now: datetime) -> None:
    """Record a delivery (the peer answered HTTP 200)."""
    outbox = session.get_one(UftpOutbox, outbox_id)
    outbox.status, outbox.delivered_at, outbox.claimed_until = "delivered", now, None
    outbox.attempts += 1
    message = session.get_one(UftpMessage, outbox.message_row_id)
    message.status = "delivered"
    session.flush()


def mark_failed(session: Session, outbox_id: str, error: str, now: datetime, policy: RetryPolicy) -> bool:
    """Record a failed attempt and schedule the next; returns True when we gave up for good."""
    outbox = session.get_one(UftpOutbox, outbox_id)
    outbox.attempts += 1
    outbox.last_error = error[:2000]
    outbox.claimed_until = None
    gave_up = now - outbox.created_at >= timedelta(seconds=policy.give_up_after_seconds)
    message = session.get_one(UftpMessage, outbox.message_row_id)
    if gave_up:
        outbox.status = "failed"
        message.status, message.reason = "failed", outbox.last_error
    else:
        outbox.next_attempt_at = now + policy.delay(outbox.attempts)
        message.status = "retrying"
    session.flush()
    return gave_up


def set_status(session: Session, row: UftpMessage, status: str, reason: str | None = None) -> None:
    """Record what became of a logged message."""
    row.status = status
    row.reason = reason
    session.flush()


def list_messages(
    session: Session,
    *,
    direction: str | None = None,
    message_type: str | None = None,
    conversation_id: str | None = None,
    peer_domain: str | None = None,
    status: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
) -> list[UftpMessage]:
    """Logged messages, newest first, filtered."""
    stmt = select(UftpMessage)
    if direction:
        stmt = stmt.where(UftpMessage.direction == direction)
    if message_type:
        stmt = stmt.where(UftpMessage.message_type == message_type)
    if conversation_id:
        stmt = stmt.where(UftpMessage.conversation_id == conversation_id)
    if peer_domain:
        stmt = stmt.where(or_(UftpMessage.sender_domain == peer_domain, UftpMessage.recipient_domain == peer_domain))
    if status:
        stmt = stmt.where(UftpMessage.status == status)
    if since:
        stmt = stmt.where(UftpMessage.created_at >= since)
    if until:
        stmt = stmt.where(UftpMessage.created_at < until)
    return list(session.scalars(stmt.order_by(UftpMessage.created_at.desc(), UftpMessage.id).limit(limit)))


def outbox_state(session: Session, message_row_id: str) -> UftpOutbox | None:
    """The outbox row of an outgoing message."""
    return session.scalar(select(UftpOutbox).where(UftpOutbox.message_row_id == message_row_id))
