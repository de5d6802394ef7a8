"""Use cases of limit requests: every request to cap or uncap a session, its answers and its result."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from vpp.domain.errors import NotFound
from vpp.locations import service as locations
from vpp.locations.values import ConnectorInfo
from vpp.sessions.tables import ChargingSession, LimitRequest

OUTSTANDING = ("sending", "accepted")
FINAL_RESULTS = {"ACCEPTED": "applied", "REJECTED": "rejected", "UNKNOWN": "rejected"}


@dataclass(frozen=True, slots=True)
class SteeringTarget:
    """A session as limit requests need it: where it charges, through which connection, in which state."""

    session_id: str
    external_id: str
    connection_id: str
    status: str
    connector: ConnectorInfo | None


def targets(session: Session, session_ids: Sequence[str]) -> dict[str, SteeringTarget]:
    """The steering view of each known session id (unknown ids are left out)."""
    if not session_ids:
        return {}
    rows = session.scalars(select(ChargingSession).where(ChargingSession.id.in_(list(set(session_ids)))))
    found: dict[str, SteeringTarget] = {}
    for row in rows:
        connector = locations.connector_info(
            session, row.connection_id, row.location_id, row.evse_uid, row.connector_id
        )
        found[row.id] = SteeringTarget(row.id, row.external_id, row.connection_id, row.status, connector)
    return found


def last_request(session: Session, session_id: str, *, kind: str | None = None) -> LimitRequest | None:
    """The newest request for a session (of one kind when given)."""
    stmt = select(LimitRequest).where(LimitRequest.session_id == session_id)
    if kind is not None:
        stmt = stmt.where(LimitRequest.kind == kind)
    return session.scalars(stmt.order_by(LimitRequest.created_at.desc(), LimitRequest.id.desc()).limit(1)).first()


def open_request(
    session: Session,
    *,
    session_id: str,
    connection_id: str,
    kind: str,
    now: datetime,
    requested_limit_kw: float | None = None,
    limit_kw: float | None = None,
    clipped: bool = False,
    valid_until: datetime | None = None,
    sent_limit: float | None = None,
    sent_unit: str | None = None,
    status: str = "sending",
    message: str | None = None,
) -> LimitRequest:
    """Record a new request; an outstanding older one for the same session is superseded by it."""
    if status in OUTSTANDING:
        session.execute(
            update(LimitRequest)
            .where(LimitRequest.session_id == session_id, LimitRequest.status.in_(OUTSTANDING))
            .values(status="superseded")
        )
    row = LimitRequest(
        session_id=session_id, connection_id=connection_id, kind=kind, requested_limit_kw=requested_limit_kw,
        limit_kw=limit_kw, clipped=clipped, valid_until=valid_until, sent_limit=sent_limit, sent_unit=sent_unit,
        status=status, message=message, created_at=now,
    )
    session.add(row)
    session.flush()
    return row


def record_answer(
    session: Session,
    request_id: str,
    *,
    status: str,
    now: datetime,
    answer: str | None = None,
    timeout_s: int | None = None,
    deadline_at: datetime | None = None,
    backoff_s: float | None = None,
    retry_at: datetime | None = None,
    message: str | None = None,
) -> LimitRequest:
    """Record the CPO's synchronous answer (or our failure to get one)."""
    row = session.get(LimitRequest, request_id)
    if row is None:
        raise NotFound(f"limit request {request_id!r} does not exist")
    # A newer request may have superseded this one while it was in flight; keep that verdict.
    if row.status != "superseded" or status not in ("accepted",):
        row.status = status
    row.answer = answer
    row.timeout_s = timeout_s
    row.deadline_at = deadline_at
    row.backoff_s = backoff_s
    row.retry_at = retry_at
    row.message = message[:500] if message else None
    row.answered_at = now
    session.flush()
    return row


def record_result(session: Session, connection_id: str, request_id: str, result: str, *, now: datetime) -> LimitRequest:
    """Record the charge point's asynchronous result (also when it arrives after the deadline)."""
    row = session.get(LimitRequest, request_id)
    if row is None or row.connection_id != connection_id:
        raise NotFound(f"limit request {request_id!r} does not exist")
    row.result = result
    row.result_at = now
    if row.status in ("sending", "accepted", "lost"):
        late = row.status == "lost"
        row.status = FINAL_RESULTS.get(result, "rejected")
        if late:
            row.message = f"result arrived after the deadline ({now.isoformat()})"
    session.flush()
    return row


def expire_lost(session: Session, *, now: datetime) -> int:
    """Accepted requests whose result did not arrive by their deadline count as lost."""
    result = session.execute(
        update(LimitRequest)
        .where(LimitRequest.status == "accepted", LimitRequest.deadline_at < now)
        .values(status="lost")
    )
    session.flush()
    return int(getattr(result, "rowcount", 0) or 0)


def requests_of(session: Session, session_id: str) -> list[LimitRequest]:
    """Every limit request of a session, oldest first."""
    stmt = select(LimitRequest).where(LimitRequest.session_id == session_id)
    return list(session.scalars(stmt.order_by(LimitRequest.created_at, LimitRequest.id)))
