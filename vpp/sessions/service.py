"""Use cases of charging sessions: intake (replace, update), reading, listing for traders."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any, Literal, cast

from sqlalchemy import Insert, Select, Table, TextClause, Update, bindparam, delete, func, select, text
from sqlalchemy import update as sql_update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from vpp.db import utcnow
from vpp.domain.errors import InvalidInput, NotFound
from vpp.ocpi.tables import OcpiConnection
from vpp.sessions.tables import ChargingSession, SessionReading
from vpp.sessions.values import SESSION_STATUSES, LimitPoint, Reading, SessionChanges, SessionRecord

Intake = Literal["created", "updated", "stale"]
_READINGS = cast(Table, SessionReading.__table__)
_SESSIONS = cast(Table, ChargingSession.__table__)

_SCALAR_FIELDS = frozenset(
    {
        "status", "start_at", "end_at", "energy_kwh", "location_id", "evse_uid", "connector_id", "currency",
        "meter_id", "auth_method", "authorization_reference", "driver_token", "total_cost_excl_vat",
        "total_cost_incl_vat",
    }
)


def party_key(country_code: str, party_id: str) -> str:
    """The case-folded party of a CPO, as stored for lookups."""
    return f"{country_code}/{party_id}".casefold()


def find(
    session: Session, connection_id: str, country_code: str, party_id: str, external_id: str, *, lock: bool = False
) -> ChargingSession | None:
    """A session by its CPO's id (case-insensitive), within one connection and party."""
    stmt = select(ChargingSession).where(
        ChargingSession.connection_id == connection_id,
        ChargingSession.external_key == external_id.casefold(),
        ChargingSession.party_key == party_key(country_code, party_id),
    )
    if lock:
        stmt = stmt.with_for_update()
    return session.scalars(stmt).first()


def find_by_external_id(session: Session, connection_id: str, external_id: str) -> ChargingSession | None:
    """A session by its CPO's id alone (charging-profile URLs carry no party)."""
    stmt = select(ChargingSession).where(
        ChargingSession.connection_id == connection_id,
        ChargingSession.external_key == external_id.casefold(),
    )
    return session.scalars(stmt.order_by(ChargingSession.updated_at.desc())).first()


def _unique_by_start(readings: Sequence[Reading]) -> list[Reading]:
    seen: dict[datetime, Reading] = {}
    for reading in readings:
        seen.setdefault(reading.start, reading)
    return list(seen.values())


def _insert_readings(session: Session, session_id: str, readings: Sequence[Reading]) -> None:
    rows = [
        {
            "session_id": session_id,
            "start_at": r.start,
            "power_kw": r.power_kw,
            "energy_kwh": r.energy_kwh,
            "soc_pct": r.soc_pct,
            "current_a": r.current_a,
            "extra": r.extra,
        }
        for r in _unique_by_start(readings)
    ]
    if not rows:
        return
    connection = session.connection()
    connection.execute(_insert_readings_statement(connection.dialect.name), rows)


@lru_cache(maxsize=4)
def _insert_readings_statement(dialect: str) -> Insert:
    # Built once: the hot path then skips statement construction and cache-key generation.
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    # An already stored period wins: PATCH appends, and a repeated period is the same measurement.
    return insert(_READINGS).on_conflict_do_nothing(index_elements=["session_id", "start_at"])


def _session_keys() -> tuple[Any, ...]:
    table = _SESSIONS
    return (
        table.c.connection_id == bindparam("key_connection_id"),
        table.c.external_key == bindparam("key_external_key"),
        table.c.party_key == bindparam("key_party_key"),
    )


@lru_cache(maxsize=128)
def _update_statement(fields: tuple[str, ...]) -> Update:
    """UPDATE ... RETURNING id of a session not newer than the change, for one set of changed fields."""
    table = _SESSIONS
    columns = (*fields, "last_updated", "updated_at")
    values = {name: bindparam(f"set_{name}", type_=table.c[name].type) for name in columns}
    return (
        sql_update(table)
        .where(*_session_keys(), table.c.last_updated <= bindparam("key_last_updated", type_=table.c.last_updated.type))
        .values(values)
        .returning(table.c.id)
    )


@lru_cache(maxsize=1)
def _id_statement() -> Select[str]:
    return select(_SESSIONS.c.id).where(*_session_keys())


def _record_fields(record: SessionRecord) -> dict[str, Any]:
    return {
        "status": record.status,
        "start_at": record.start,
        "end_at": record.end,
        "energy_kwh": record.energy_kwh,
        "location_id": record.location_id,
        "evse_uid": record.evse_uid,
        "connector_id": record.connector_id,
        "currency": record.currency,
        "meter_id": record.meter_id,
        "auth_method": record.auth_method,
        "authorization_reference": record.authorization_reference,
        "driver_token": record.driver_token,
        "total_cost_excl_vat": record.total_cost_excl_vat,
        "total_cost_incl_vat": record.total_cost_incl_vat,
    }


def _check_status(status: str) -> None:
    if status not in SESSION_STATUSES:
        raise InvalidInput(f"unknown session status {status!r}; one of {list(SESSION_STATUSES)}")


def replace(session: Session, connection_id: str, record: SessionRecord) -> Intake:
    """Create or fully replace a session (its readings too); an older ``last_updated`` changes nothing."""
    _check_status(record.status)
    row = find(session, connection_id, record.country_code, record.party_id, record.external_id, lock=True)
    if row is None:
        row = ChargingSession(
            connection_id=connection_id,
            country_code=record.country_code,
            party_id=record.party_id,
            party_key=party_key(record.country_code, record.party_id),
            external_id=record.external_id,
            external_key=record.external_id.casefold(),
            last_updated=record.last_updated,
            **_record_fields(record),
        )
        try:
            with session.begin_nested():
                session.add(row)
        except IntegrityError:
            # A concurrent PUT of the same new session won the insert: replace what it wrote.
            return replace(session, connection_id, record)
        _insert_readings(session, row.id, record.readings)
        return "created"
    if record.last_updated < row.last_updated:
        return "stale"
    for name, value in _record_fields(record).items():
        setattr(row, name, value)
    row.external_id = record.external_id
    row.last_updated = record.last_updated
    row.updated_at = utcnow()
    session.execute(delete(SessionReading).where(SessionReading.session_id == row.id))
    session.flush()
    _insert_readings(session, row.id, record.readings)
    return "updated"


def update(
    session: Session, connection_id: str, country_code: str, party_id: str, external_id: str, changes: SessionChanges
) -> Intake:
    """Apply a partial update: readings are appended (de-duplicated by start); fields only if not stale.

    The hot intake path: one UPDATE ... RETURNING (which also locks the row) and one bulk INSERT, no ORM objects.
    """
    unknown = set(changes.fields) - _SCALAR_FIELDS
    if unknown:
        raise InvalidInput(f"cannot change {sorted(unknown)} of a session")
    if "status" in changes.fields:
        _check_status(changes.fields["status"])
    keys = {
        "key_connection_id": connection_id,
        "key_external_key": external_id.casefold(),
        "key_party_key": party_key(country_code, party_id),
    }
    fields = tuple(sorted(changes.fields))
    params = {f"set_{name}": changes.fields[name] for name in fields}
    connection = session.connection()
    updated = connection.execute(
        _update_statement(fields),
        {**keys, **params, "key_last_updated": changes.last_updated, "set_last_updated": changes.last_updated,
         "set_updated_at": utcnow()},
    ).scalar()
    outcome: Intake = "updated"
    if updated is None:
        updated = connection.execute(_id_statement(), keys).scalar()
        if updated is None:
            raise NotFound(f"session {country_code}/{party_id}/{external_id} is unknown: PUT it first")
        outcome = "stale"
    _insert_readings(session, updated, changes.readings)
    return outcome



def checked_patch(changes: SessionChanges) -> tuple[tuple[str, ...], list[dict[str, Any]]]:
    """A PATCH's changed fields (sorted) and its readings as the one-statement writes take them; InvalidInput for
    a field that cannot change or a status that does not exist."""
    unknown = set(changes.fields) - _SCALAR_FIELDS
    if unknown:
        raise InvalidInput(f"cannot change {sorted(unknown)} of a session")
    if "status" in changes.fields:
        _check_status(changes.fields["status"])
    readings = [
        {"start_at": r.start.isoformat(), "power_kw": r.power_kw, "energy_kwh": r.energy_kwh, "soc_pct": r.soc_pct,
         "current_a": r.current_a, "extra": r.extra}
        for r in _unique_by_start(changes.readings)
    ]
    return tuple(sorted(changes.fields)), readings

def update_alone(
    session: Session, connection_id: str, country_code: str, party_id: str, external_id: str, changes: SessionChanges
) -> Intake:
    """``update`` as the whole transaction: on PostgreSQL one statement that commits itself, so a Session PATCH
    costs one round trip instead of five (BEGIN, SET LOCAL, UPDATE, INSERT, COMMIT).

    The session must be fresh (nothing executed in it yet); otherwise, and on other databases, this is ``update``.
    Same outcomes: fields only if not stale, readings appended either way, NotFound writes nothing.
    """
    if session.in_transaction() or session.get_bind().dialect.name != "postgresql":
        return update(session, connection_id, country_code, party_id, external_id, changes)
    fields, readings = checked_patch(changes)
    connection = session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
    found = connection.execute(
        _patch_statement(fields),
        {"key_connection_id": connection_id, "key_external_key": external_id.casefold(),
         "key_party_key": party_key(country_code, party_id), "key_last_updated": changes.last_updated,
         "set_last_updated": changes.last_updated, "set_updated_at": utcnow(),
         "readings": json.dumps(readings, separators=(",", ":")),
         **{f"set_{name}": changes.fields[name] for name in fields}},
    ).first()
    if found is None:
        raise NotFound(f"session {country_code}/{party_id}/{external_id} is unknown: PUT it first")
    return "updated" if found[1] else "stale"


@lru_cache(maxsize=128)
def _patch_statement(fields: tuple[str, ...]) -> TextClause:
    """One PostgreSQL statement: lock the session, update its fields if not stale, append the readings.

    Data-modifying CTEs run once whether or not the final SELECT reads them. The commit is synchronous: the answer
    acknowledges the readings, so they must survive a crash of PostgreSQL (with ``synchronous_commit`` off, as
    before, `vpp soak` lost 11 acknowledged readings in two crashes; ``tests/integration/test_intake_durability.py``).
    """
    columns = (*fields, "last_updated", "updated_at")
    assignments = ", ".join(f"{name} = :set_{name}" for name in columns)
    statement = text(f"""
WITH target AS (
    SELECT s.id, s.last_updated FROM charging_sessions AS s
    WHERE s.connection_id = :key_connection_id AND s.external_key = :key_external_key
      AND s.party_key = :key_party_key
    FOR UPDATE OF s
),
changed AS (
    UPDATE charging_sessions SET {assignments} FROM target
    WHERE charging_sessions.id = target.id AND target.last_updated <= :key_last_updated
    RETURNING charging_sessions.id
),
appended AS (
    INSERT INTO session_readings (session_id, start_at, power_kw, energy_kwh, soc_pct, current_a, extra)
    SELECT target.id, r.start_at, r.power_kw, r.energy_kwh, r.soc_pct, r.current_a, r.extra
    FROM target, jsonb_to_recordset(CAST(:readings AS jsonb)) AS r(
        start_at timestamptz, power_kw float8, energy_kwh float8, soc_pct float8, current_a float8, extra json)
    ON CONFLICT (session_id, start_at) DO NOTHING
)
SELECT target.id, EXISTS (SELECT 1 FROM changed) AS fresh FROM target""")
    binds = [bindparam(f"set_{name}", type_=_SESSIONS.c[name].type) for name in columns]
    binds.append(bindparam("key_last_updated", type_=_SESSIONS.c.last_updated.type))
    return statement.bindparams(*binds)


def readings_of(
    session: Session, session_id: str, *, start: datetime | None = None, end: datetime | None = None
) -> list[SessionReading]:
    """A session's readings in [start, end), oldest first."""
    stmt = select(SessionReading).where(SessionReading.session_id == session_id)
    if start is not None:
        stmt = stmt.where(SessionReading.start_at >= start)
    if end is not None:
        stmt = stmt.where(SessionReading.start_at < end)
    return list(session.scalars(stmt.order_by(SessionReading.start_at)))


def get_or_raise(session: Session, session_id: str) -> ChargingSession:
    """A session by our id, or NotFound."""
    row = session.get(ChargingSession, session_id)
    if row is None:
        raise NotFound(f"session {session_id!r} does not exist")
    return row


def list_sessions(
    session: Session,
    *,
    cpo: str | None = None,
    status: str | None = None,
    location: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[tuple[ChargingSession, str]], int]:
    """Sessions with their connection's name, newest first, and the total matching the filters."""
    if status is not None:
        _check_status(status)
    stmt = select(ChargingSession, OcpiConnection.name).join(
        OcpiConnection, OcpiConnection.id == ChargingSession.connection_id
    )
    if cpo is not None:
        parts = cpo.replace("*", "/").split("/")
        if len(parts) == 2:
            stmt = stmt.where(ChargingSession.party_key == party_key(parts[0], parts[1]))
        else:
            stmt = stmt.where((OcpiConnection.id == cpo) | (OcpiConnection.name == cpo))
    if status is not None:
        stmt = stmt.where(ChargingSession.status == status)
    if location is not None:
        stmt = stmt.where(func.lower(ChargingSession.location_id) == location.lower())
    total = int(session.scalar(select(func.count()).select_from(stmt.subquery())) or 0)
    page = stmt.order_by(ChargingSession.start_at.desc(), ChargingSession.id).limit(limit).offset(offset)
    return [(row, name) for row, name in session.execute(page)], total


def set_active_limit(session: Session, row: ChargingSession, schedule: Sequence[LimitPoint], *,
                     at: datetime) -> ChargingSession:
    """Store the limit schedule the CPO says is in force on a session (read by the caller)."""
    row.active_limit = [{"start": p.start.isoformat(), "limit_kw": p.limit_kw} for p in schedule]
    row.active_limit_at = at
    session.flush()
    return row


def active_counts(session: Session) -> list[tuple[str, int]]:
    """Active sessions per connection name."""
    stmt = (
        select(OcpiConnection.name, func.count(ChargingSession.id))
        .join(OcpiConnection, OcpiConnection.id == ChargingSession.connection_id)
        .where(ChargingSession.status == "active")
        .group_by(OcpiConnection.name)
    )
    return [(name, int(count)) for name, count in session.execute(stmt)]


def connection_name(session: Session, connection_id: str) -> str:
    """The name of a session's connection (its CPO)."""
    return str(session.scalar(select(OcpiConnection.name).where(OcpiConnection.id == connection_id)) or "")
