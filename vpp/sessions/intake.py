"""Group commit of Session PATCHes: concurrent PATCHes share one transaction and one WAL flush.

A PATCH alone costs a thread hop, a statement and a durable commit (an fsync of the WAL) of its own. Here the
PATCHes a process receives while a batch is being written queue up and the next writer takes them all: their
statements go to PostgreSQL pipelined (no round trip each) in one transaction, and one commit makes them all
durable. Each PATCH is answered only once the commit of its batch returned, so an acknowledged reading survives
a crash exactly as before.

Each PATCH keeps the statement and the outcome it had alone (``sessions.update_alone``): fields only if not
stale, readings appended either way, an unknown session is NotFound and writes nothing. A batch is sorted by
session (the PATCHes of one session keep their order), so two writers lock sessions in the same order and cannot
deadlock each other. When the batch fails as a whole (one PATCH with a value PostgreSQL refuses aborts the
transaction), it is rolled back and its PATCHes are written again one by one, each in its own transaction: the
bad one fails alone, the others are answered with their own outcome.

On SQLite the same batches share one transaction (``sessions.update`` for each PATCH, one commit): SQLite lets
one transaction write at a time anyway, so a PATCH alone paid a thread hop, a connection, its turn on the write
lock and a commit of its own; a simulation's CPOs push two dozen PATCHes side by side.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from anyio import CapacityLimiter, to_thread
from sqlalchemy import Engine

from vpp.db import utcnow
from vpp.domain.errors import InvalidInput, NotFound
from vpp.sessions.service import Intake, checked_patch, party_key
from vpp.sessions.values import SessionChanges

_JSON_FIELDS = frozenset({"driver_token"})


@dataclass(slots=True)
class PatchItem:
    """One Session PATCH waiting for its batch: what to write, and the future its request awaits."""

    connection_id: str
    country_code: str
    party_id: str
    external_id: str
    changes: SessionChanges
    future: asyncio.Future[Intake] | None = None
    params: dict[str, Any] = field(default_factory=dict)
    fields: tuple[str, ...] = ()

    @property
    def order(self) -> tuple[str, str, str]:
        """The session's key: batches lock sessions in this order."""
        return (self.connection_id, party_key(self.country_code, self.party_id), self.external_id.casefold())


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("naive datetime given to a UTC column")
    return value.astimezone(UTC)


def prepare(item: PatchItem, dialect: str = "postgresql") -> PatchItem:
    """Check a PATCH and compute its statement parameters (InvalidInput before anything is queued); on another
    database than PostgreSQL only the check (``sessions.update`` builds its own statements)."""
    changes = item.changes
    fields, readings = checked_patch(changes)
    if dialect != "postgresql":
        item.fields = fields
        return item
    from psycopg.types.json import Json

    params: dict[str, Any] = {
        "key_connection_id": item.connection_id, "key_external_key": item.external_id.casefold(),
        "key_party_key": party_key(item.country_code, item.party_id),
        "key_last_updated": _utc(changes.last_updated), "set_last_updated": _utc(changes.last_updated),
        "set_updated_at": utcnow(), "readings": json.dumps(readings, separators=(",", ":")),
    }
    for name in fields:
        value = changes.fields[name]
        if name in _JSON_FIELDS:
            value = Json(value)
        elif isinstance(value, datetime):
            value = _utc(value)
        params[f"set_{name}"] = value
    item.params = params
    item.fields = fields
    return item


@lru_cache(maxsize=128)
def patch_sql(fields: tuple[str, ...]) -> str:
    """The statement of one PATCH (psycopg placeholders): lock the session, update its fields if not stale, append
    the readings; returns (id, fresh) or no row for an unknown session. The same as ``sessions.update_alone``."""
    columns = (*fields, "last_updated", "updated_at")
    assignments = ", ".join(f"{name} = %(set_{name})s" for name in columns)
    return f"""
WITH target AS (
    SELECT s.id, s.last_updated FROM charging_sessions AS s
    WHERE s.connection_id = %(key_connection_id)s AND s.external_key = %(key_external_key)s
      AND s.party_key = %(key_party_key)s
    FOR UPDATE OF s
),
changed AS (
    UPDATE charging_sessions SET {assignments} FROM target
    WHERE charging_sessions.id = target.id AND target.last_updated <= %(key_last_updated)s
    RETURNING charging_sessions.id
),
appended AS (
    INSERT INTO session_readings (session_id, start_at, power_kw, energy_kwh, soc_pct, current_a, extra)
    SELECT target.id, r.start_at, r.power_kw, r.energy_kwh, r.soc_pct, r.current_a, r.extra
    FROM target, jsonb_to_recordset(CAST(%(readings)s AS jsonb)) AS r(
        start_at timestamptz, power_kw float8, energy_kwh float8, soc_pct float8, current_a float8, extra json)
    ON CONFLICT (session_id, start_at) DO NOTHING
)
SELECT target.id, EXISTS (SELECT 1 FROM changed) AS fresh FROM target"""


def _outcome(item: PatchItem, row: Sequence[Any] | None) -> Intake | BaseException:
    if row is None:
        return NotFound(f"session {item.country_code}/{item.party_id}/{item.external_id} is unknown: PUT it first")
    return "updated" if row[1] else "stale"


def _is_disconnect(exc: BaseException) -> bool:
    import psycopg

    return isinstance(exc, psycopg.OperationalError)


def _write_together_orm(engine: Engine, items: Sequence[PatchItem]) -> list[Intake | BaseException]:
    """The batch in one transaction through ``sessions.update`` (SQLite): the same statements and outcomes as
    each PATCH alone. An unknown session writes nothing and is NotFound; any other error fails the batch."""
    from sqlalchemy.orm import Session

    from vpp.sessions.service import update

    outcomes: list[Intake | BaseException] = []
    with Session(engine) as db:
        try:
            for item in items:
                try:
                    outcomes.append(update(db, item.connection_id, item.country_code, item.party_id,
                                           item.external_id, item.changes))
                except NotFound as exc:
                    outcomes.append(exc)
            if before_commit is not None:
                before_commit(db.connection().connection.dbapi_connection)
            db.commit()
        except BaseException:
            db.rollback()
            raise
    return outcomes


def write_batch(engine: Engine, items: Sequence[PatchItem]) -> list[Intake | BaseException]:
    """Write prepared PATCHes in one transaction (pipelined) and commit; if that fails, one by one.

    Returns each PATCH's outcome or the exception it failed with, in the order given. Nothing is returned before
    the commit that made it durable.
    """
    if not items:
        return []
    together = _write_together if engine.dialect.name == "postgresql" else _write_together_orm
    if len(items) > 1:
        try:
            return together(engine, items)
        except Exception:  # noqa: S110 - written again one by one below: each PATCH gets its own outcome or error
            pass
    outcomes: list[Intake | BaseException] = []
    for item in items:
        try:
            outcomes.extend(together(engine, [item]))
        except Exception as exc:
            outcomes.append(_refused(exc))
    return outcomes


def _refused(exc: Exception) -> BaseException:
    """A PATCH whose values the database refused (alone, so it is this PATCH's fault) is invalid input."""
    import sqlite3

    import psycopg
    from sqlalchemy.exc import DataError, IntegrityError

    if isinstance(exc, psycopg.DataError | psycopg.IntegrityError | sqlite3.DataError | sqlite3.IntegrityError
                  | DataError | IntegrityError):
        cause = getattr(exc, "orig", None) or exc
        diag = getattr(cause, "diag", None)
        reason = (diag.message_primary if diag is not None else None) or str(cause).splitlines()[0]
        refusal = InvalidInput(f"the session cannot take these values: {reason[:200]}")
        refusal.__cause__ = exc
        return refusal
    return exc


# Test seam: called with the psycopg connection right before the commit of a batch.
before_commit: Callable[[Any], None] | None = None


def _runs(items: Sequence[PatchItem]) -> list[tuple[str, Sequence[PatchItem]]]:
    """The batch cut into runs of consecutive PATCHes with the same statement, in order."""
    runs: list[tuple[str, Sequence[PatchItem]]] = []
    start = 0
    while start < len(items):
        end = start + 1
        while end < len(items) and items[end].fields == items[start].fields:
            end += 1
        runs.append((patch_sql(items[start].fields), items[start:end]))
        start = end
    return runs


def _write_together(engine: Engine, items: Sequence[PatchItem]) -> list[Intake | BaseException]:
    proxied = engine.raw_connection()
    healthy = True
    try:
        connection = proxied.driver_connection
        assert connection is not None
        if connection.autocommit:
            connection.autocommit = False
        try:
            rows: list[Sequence[Any] | None] = []
            with connection.pipeline():
                # One cursor and one executemany per run of PATCHes setting the same fields (in a batch of one CPO's
                # periodic PATCHes, usually all): a cursor per PATCH cost ~0.1 ms of CPU each, this ~0.03 ms.
                cursor = connection.cursor()
                for sql, run in _runs(items):
                    cursor.executemany(sql, [item.params for item in run], returning=True)
                    rows.append(cursor.fetchone())  # one result per statement, an empty one for an unknown session
                    while cursor.nextset():
                        rows.append(cursor.fetchone())
            if before_commit is not None:
                before_commit(connection)
            connection.commit()
        except BaseException as exc:
            healthy = not _is_disconnect(exc)
            if healthy:
                connection.rollback()
            raise
        return [_outcome(item, row) for item, row in zip(items, rows, strict=True)]
    finally:
        if healthy:
            proxied.close()
        else:
            proxied.invalidate()


class PatchBatcher:
    """Queues the PATCHes of one process and writes them in batches, at most ``writers`` batches at a time.

    ``submit`` returns once the PATCH's batch is committed (or raises what its write raised). Bound to the event
    loop it is used from; a new loop (a test client's) starts with an empty queue.
    """

    def __init__(
        self, engine: Engine, *, writers: int = 2, max_batch: int = 256, limiter: CapacityLimiter | None = None
    ) -> None:
        self._engine = engine
        self._dialect = engine.dialect.name
        # SQLite writes one transaction at a time: a second writer would only wait for the first.
        self._writers = max(1, writers if self._dialect == "postgresql" else 1)
        self._max_batch = max(1, max_batch)
        self._limiter = limiter
        self._pending: deque[PatchItem] = deque()
        self._active = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.batches = 0
        self.patches = 0

    async def submit(
        self, connection_id: str, country_code: str, party_id: str, external_id: str, changes: SessionChanges
    ) -> Intake:
        """Write one PATCH with the others queued beside it; answer after its commit."""
        item = prepare(PatchItem(connection_id, country_code, party_id, external_id, changes), self._dialect)
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop, self._pending, self._active, self._tasks = loop, deque(), 0, set()
        item.future = loop.create_future()
        self._pending.append(item)
        if self._active < self._writers:
            self._active += 1
            task = loop.create_task(self._writer())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await item.future

    async def _writer(self) -> None:
        try:
            while self._pending:
                batch = [self._pending.popleft() for _ in range(min(self._max_batch, len(self._pending)))]
                batch.sort(key=lambda item: item.order)  # stable: one session's PATCHes keep their order
                try:
                    outcomes = await to_thread.run_sync(write_batch, self._engine, batch, limiter=self._limiter)
                except BaseException as exc:  # the thread hop itself failed (cancelled): nothing acknowledged
                    for item in batch:
                        if item.future is not None and not item.future.done():
                            item.future.set_exception(exc if isinstance(exc, Exception) else RuntimeError(str(exc)))
                    raise
                self.batches += 1
                self.patches += len(batch)
                for item, outcome in zip(batch, outcomes, strict=True):
                    future = item.future
                    if future is None or future.done():
                        continue
                    if isinstance(outcome, BaseException):
                        future.set_exception(outcome)
                    else:
                        future.set_result(outcome)
        finally:
            self._active -= 1
