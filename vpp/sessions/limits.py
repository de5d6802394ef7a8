"""Use cases of limit requests: every request to cap or uncap a session, its answers and its result."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Table,
    Update,
    bindparam,
    case,
    insert,
    select,
    update,
)
from sqlalchemy.orm import Session

from vpp.domain.errors import NotFound
from vpp.locations.tables import ChargingConnector, ChargingEvse, ChargingLocation
from vpp.locations.values import ConnectorInfo
from vpp.sessions.tables import ChargingSession, LimitRequest

OUTSTANDING = ("sending", "accepted")
REQUEST_DEFAULTS: dict[str, Any] = {
    "requested_limit_kw": None, "limit_kw": None, "clipped": False, "valid_until": None, "sent_limit": None,
    "sent_unit": None, "status": "sending", "message": None, "retry_at": None, "backoff_s": None,
}
LIMIT_REQUESTS: Table = LimitRequest.__table__  # type: ignore[assignment]
ANSWER_COLUMNS = ("b_id", "b_status", "b_answer", "b_timeout_s", "b_deadline_at", "b_backoff_s", "b_retry_at",
                  "b_message")
FINAL_RESULTS = {"ACCEPTED": "applied", "REJECTED": "rejected", "UNKNOWN": "rejected"}


@dataclass(frozen=True, slots=True)
class SteeringTarget:
    """A session as limit requests need it: where it charges, through which connection, in which state."""

    session_id: str
    external_id: str
    connection_id: str
    status: str
    connector: ConnectorInfo | None


def _chunks(values: Sequence[str], size: int = 2000) -> list[list[str]]:
    return [list(values[start:start + size]) for start in range(0, len(values), size)]


def targets(session: Session, session_ids: Sequence[str]) -> dict[str, SteeringTarget]:
    """The steering view of each known session id (unknown ids are left out); a few queries for any number."""
    if not session_ids:
        return {}
    columns = (ChargingSession.id, ChargingSession.external_id, ChargingSession.connection_id, ChargingSession.status,
               ChargingSession.location_id, ChargingSession.evse_uid, ChargingSession.connector_id)
    rows = [tuple(row) for chunk in _chunks(sorted(set(session_ids)))
            for row in session.execute(select(*columns).where(ChargingSession.id.in_(chunk)))]
    connectors = _connectors(session, {(row[2], row[4].casefold()) for row in rows})
    return {
        sid: SteeringTarget(sid, external_id, connection_id, status, connectors.get(
            (connection_id, location_id.casefold(), evse_uid.casefold(), connector_id.casefold())))
        for sid, external_id, connection_id, status, location_id, evse_uid, connector_id in rows
    }


def statuses(session: Session, session_ids: Sequence[str]) -> dict[str, str]:
    """The status of each known session id (unknown ids are left out)."""
    return {sid: status for chunk in _chunks(sorted(set(session_ids))) for sid, status in session.execute(
        select(ChargingSession.id, ChargingSession.status).where(ChargingSession.id.in_(chunk)))}


def _connectors(
    session: Session, locations_of: set[tuple[str, str]]
) -> dict[tuple[str, str, str, str], ConnectorInfo]:
    """Every connector at these (connection, location key) pairs, by (connection, location, EVSE, connector) key."""
    found: dict[tuple[str, str, str, str], ConnectorInfo] = {}
    by_connection: dict[str, list[str]] = {}
    for connection_id, location_key in locations_of:
        by_connection.setdefault(connection_id, []).append(location_key)
    for connection_id, keys in by_connection.items():
        for chunk in _chunks(sorted(keys)):
            stmt = (
                select(ChargingLocation.external_key, ChargingEvse.uid_key, ChargingConnector.external_key,
                       ChargingConnector.power_type, ChargingConnector.phases, ChargingConnector.max_voltage_v,
                       ChargingConnector.max_current_a, ChargingConnector.max_power_kw,
                       ChargingEvse.charging_profile_capable, ChargingEvse.capabilities)
                .join(ChargingEvse, ChargingEvse.id == ChargingConnector.evse_pk)
                .join(ChargingLocation, ChargingLocation.id == ChargingEvse.location_pk)
                .where(ChargingLocation.connection_id == connection_id, ChargingLocation.external_key.in_(chunk))
            )
            for (location_key, evse_key, connector_key, power_type, phases, voltage, current, power, capable,
                 capabilities) in session.execute(stmt):
                found[(connection_id, location_key, evse_key, connector_key)] = ConnectorInfo(
                    power_type=power_type, phases=phases, max_voltage_v=voltage, max_current_a=current,
                    max_power_kw=power, charging_profile_capable=capable, capabilities=tuple(capabilities or ()),
                )
    return found


def backing_off(session: Session, session_ids: Sequence[str], now: datetime) -> dict[str, LimitRequest]:
    """The sessions whose newest request asks to wait past ``now`` (TOO_OFTEN), with that request."""
    # Few requests ask to wait (the retry_at index finds them); the sessions asked about are many.
    wanted = set(session_ids)
    candidates = {sid for sid in session.scalars(select(LimitRequest.session_id).where(LimitRequest.retry_at > now))
                  if sid in wanted}
    found: dict[str, LimitRequest] = {}
    for sid in sorted(candidates):
        newest = last_request(session, sid)
        if newest is not None and newest.retry_at is not None and newest.retry_at > now:
            found[sid] = newest
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


def open_requests(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Record many new requests at once (ids given); outstanding older ones of their sessions are superseded.

    Each row holds LimitRequest's columns; a session appears at most once. Same effect as ``open_request`` per row.
    """
    if not rows:
        return
    outstanding = sorted({row["session_id"] for row in rows if row.get("status", "sending") in OUTSTANDING})
    for chunk in _chunks(outstanding):
        session.execute(
            update(LimitRequest)
            .where(LimitRequest.session_id.in_(chunk), LimitRequest.status.in_(OUTSTANDING))
            .values(status="superseded")
            .execution_options(synchronize_session=False)
        )
    complete = [{**REQUEST_DEFAULTS, **row} for row in rows]
    connection = session.connection()
    if connection.dialect.name == "postgresql" and connection.dialect.driver == "psycopg":
        _copy_requests(connection, complete)
    else:
        # Core, not the ORM's bulk path: the rows are complete, nothing is read back.
        connection.execute(insert(LIMIT_REQUESTS), complete)


def _copy_requests(connection: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Insert request rows with PostgreSQL's COPY: a cycle stores thousands before sending any (half the time of a
    batched INSERT). Values go through each column's type as an INSERT's would. Every row has the same keys (the
    defaults merged in), as the INSERT's executemany needs too."""
    names = [column.name for column in LIMIT_REQUESTS.columns if column.name in rows[0]]
    columns = [(name, LIMIT_REQUESTS.c[name].type.bind_processor(connection.dialect)) for name in names]
    driver = connection.connection.driver_connection
    assert driver is not None
    with driver.cursor() as cursor, cursor.copy(f"COPY {LIMIT_REQUESTS.name} ({', '.join(names)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row([row[name] if bind is None else bind(row[name]) for name, bind in columns])


@dataclass(frozen=True, slots=True)
class Answer:
    """A CPO's synchronous answer to one request (or our failure to get one), as ``record_answer`` takes it."""

    request_id: str
    status: str
    answer: str | None = None
    timeout_s: int | None = None
    deadline_at: datetime | None = None
    backoff_s: float | None = None
    retry_at: datetime | None = None
    message: str | None = None


def record_answers(session: Session, answers: Sequence[Answer], *, now: datetime) -> None:
    """Record many synchronous answers at once: the same effect as ``record_answer`` for each.

    One statement per answer, run as a batch (a pipeline on PostgreSQL); "accepted" does not overwrite a request
    superseded meanwhile or one whose result is already in: the condition is evaluated by the database. (One UPDATE
    joining a VALUES list of thousands of answers was slower on PostgreSQL: it holds every row's lock until it
    ends, and the CPOs' results for those rows arrive meanwhile.)
    """
    if not answers:
        return
    binds: dict[str, ColumnElement[Any]] = {name: bindparam(name) for name in ANSWER_COLUMNS}
    stmt = _answers_update(binds, now).where(LIMIT_REQUESTS.c.id == binds["b_id"])
    matched = _rowcount(session.connection().execute(stmt, [{
        "b_id": a.request_id, "b_status": a.status, "b_answer": a.answer, "b_timeout_s": a.timeout_s,
        "b_deadline_at": a.deadline_at, "b_backoff_s": a.backoff_s, "b_retry_at": a.retry_at,
        "b_message": a.message[:500] if a.message else None,
    } for a in answers]))
    if matched != len(answers):
        ids = [a.request_id for a in answers]
        known = {rid for chunk in _chunks(ids) for rid in session.scalars(
            select(LimitRequest.id).where(LimitRequest.id.in_(chunk)))}
        missing = [rid for rid in ids if rid not in known]
        if missing:
            raise NotFound(f"limit request {missing[0]!r} does not exist")


def _answers_update(source: Mapping[str, ColumnElement[Any]], now: datetime) -> Update:
    table = LIMIT_REQUESTS
    keeps_verdict = (source["b_status"] == "accepted") & (
        (table.c.status == "superseded") | table.c.result.is_not(None))
    return update(table).values(
        status=case((keeps_verdict, table.c.status), else_=source["b_status"]), answer=source["b_answer"],
        timeout_s=source["b_timeout_s"], deadline_at=source["b_deadline_at"], backoff_s=source["b_backoff_s"],
        retry_at=source["b_retry_at"], message=source["b_message"], answered_at=now,
    )


def _rowcount(result: Any) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


def _answer_sets_status(answer_status: str, status: str, result: str | None) -> bool:
    # A newer request may have superseded this one while it was in flight, or the CPO's result may have come
    # before its synchronous answer was recorded: keep that verdict rather than go back to "accepted".
    return answer_status != "accepted" or (status != "superseded" and result is None)


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
    if _answer_sets_status(status, row.status, row.result):
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
