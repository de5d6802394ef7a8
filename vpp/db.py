"""Database engine, session factory and the declarative base every feature's tables derive from."""

from __future__ import annotations

import os
import sys
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Generic, TypeVar

from sqlalchemy import DateTime, Engine, MetaData, String, TypeDecorator, create_engine, event
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC in Python, whatever the database keeps."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        # SQLite keeps no offset: store naive UTC there and restore the zone on the way out.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base with the constraint naming convention Alembic relies on."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime()}


def new_id() -> str:
    """A new identifier for rows whose id we mint: a UUIDv7 in hex (unix milliseconds, then random bits).

    Ids minted later sort later, so inserts land at the right edge of primary-key indexes instead of all over
    them (a dispatch cycle inserts thousands of rows at once); minted without a UUID object, for speed.
    """
    raw = bytearray((time.time_ns() // 1_000_000).to_bytes(6, "big") + os.urandom(10))
    raw[6] = (raw[6] & 0x0F) | 0x70
    raw[8] = (raw[8] & 0x3F) | 0x80
    return raw.hex()


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


ID = String(32)

# A pooled connection that sat idle this long is pinged before use; a busy pool skips the round trip.
PING_AFTER_IDLE_SECONDS = 5.0


def _ping_after_idle(engine: Engine, idle_seconds: float = PING_AFTER_IDLE_SECONDS) -> None:
    """Check a pooled connection on checkout only after it sat idle (a ping per checkout costs a round trip).

    Connections a busy service keeps using are not pinged; if the server went away meanwhile, the first failing
    statement invalidates the whole pool (SQLAlchemy's disconnect handling), so only requests in flight fail.
    """

    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.pop("idle_since", None)
        if idle_since is None or time.monotonic() - idle_since < idle_seconds:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:
            # The pool discards this connection and checks out (or opens) another.
            raise DisconnectionError("pooled connection failed its ping after idling") from exc


_WRITE_VERBS = ("INSERT", "UPDATE", "DELETE", "REPLACE")


class _FileWriteLock:
    """The write turn across processes: an exclusive ``flock`` on a file beside the database, taken by the
    process's one holder of its thread lock (so one descriptor per engine serves every thread).

    SQLite's own lock excludes other processes too, but a writer waiting for it sleeps in the busy handler (1 to
    100 ms between tries, often long after the lock was freed); a writer waiting here looks again every 0.2 ms at
    first, every 2 ms at most. Without ``fcntl`` (Windows) it does nothing.
    """

    POLL_S = (0.0002, 0.002)

    def __init__(self, database: Path) -> None:
        self.path = database.with_name(database.name + "-writelock")
        self._fd: int | None = None

    def _descriptor(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        return self._fd

    def acquire(self, timeout_s: float) -> bool:
        """Take the file lock, waiting at most ``timeout_s``; False if another process held it all along."""
        if sys.platform == "win32":
            return True
        import fcntl

        fd = self._descriptor()
        deadline = time.monotonic() + timeout_s
        pause = self.POLL_S[0]
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    return False
            # Held by another process: look again soon (a write turn lasts milliseconds).
            time.sleep(pause)
            pause = min(pause * 2, self.POLL_S[1])

    def release(self) -> None:
        """Give the file lock back."""
        if sys.platform == "win32" or self._fd is None:
            return
        import fcntl

        fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        """Close the descriptor (which frees the lock if it was held)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _serialize_sqlite_writes(engine: Engine, *, timeout_s: float, database: Path | None = None) -> None:
    """Writers of one SQLite database take turns on a lock of this process, from their first write to their
    commit or rollback (the span SQLite itself holds its write lock), instead of in SQLite's busy handler.

    SQLite lets one transaction write at a time; the others wait in its busy handler, which sleeps 1 to 100 ms
    between tries, so a writer often sleeps long after the lock was freed. With many request threads writing at
    once (a simulation's CPOs push side by side) the waits were most of the service's time: 347 s of wall time
    against 6.6 s of CPU for 47,688 Session PATCH updates in a cut demo run. Here the next writer wakes as soon as
    the lock is released. Readers are not affected (WAL). A writer that cannot get the lock within ``timeout_s``
    goes on to SQLite's own wait, as before.

    With ``database`` (a file) the turn also holds a lock on a file beside it (``_FileWriteLock``), so that
    processes sharing the database (a simulation's service and its OCPI intake) take turns the same way.
    """
    lock = threading.Lock()
    file_lock = _FileWriteLock(database) if database is not None else None
    if file_lock is not None:
        weakref.finalize(engine, file_lock.close)
    holders: set[int] = set()
    # Connections whose turn includes the file lock (a writer whose file wait timed out holds only the thread's).
    filed: set[int] = set()

    def release(connection: Any) -> None:
        # The dialect is given the pool's proxy of a connection; the pool's events the driver's connection.
        key = id(getattr(connection, "dbapi_connection", connection))
        if key in holders:
            holders.discard(key)
            if key in filed:
                filed.discard(key)
                assert file_lock is not None
                file_lock.release()
            lock.release()

    @event.listens_for(engine, "before_cursor_execute")
    def _before(conn: Any, _cursor: Any, statement: str, _params: Any, _context: Any, _many: bool) -> None:
        dbapi_connection = conn.connection.dbapi_connection
        if id(dbapi_connection) in holders or not statement.lstrip()[:7].upper().startswith(_WRITE_VERBS):
            return
        started = time.monotonic()
        if lock.acquire(timeout=timeout_s):
            holders.add(id(dbapi_connection))
            if file_lock is not None and file_lock.acquire(max(0.0, timeout_s - (time.monotonic() - started))):
                filed.add(id(dbapi_connection))

    @event.listens_for(engine, "after_cursor_execute")
    def _after(conn: Any, _cursor: Any, _statement: str, _params: Any, _context: Any, _many: bool) -> None:
        dbapi_connection = conn.connection.dbapi_connection
        # A write outside a transaction (autocommit) is done once it has run.
        if id(dbapi_connection) in holders and not dbapi_connection.in_transaction:
            release(dbapi_connection)

    @event.listens_for(engine, "handle_error")
    def _failed(context: Any) -> None:
        dbapi_connection = getattr(context.connection, "connection", None)
        raw = getattr(dbapi_connection, "dbapi_connection", None)
        if raw is not None and id(raw) in holders and not raw.in_transaction:
            release(raw)

    dialect = engine.dialect
    base_commit, base_rollback = dialect.do_commit, dialect.do_rollback

    def do_commit(dbapi_connection: Any) -> None:
        try:
            base_commit(dbapi_connection)
        finally:
            release(dbapi_connection)

    def do_rollback(dbapi_connection: Any) -> None:
        try:
            base_rollback(dbapi_connection)
        finally:
            release(dbapi_connection)

    dialect.do_commit = do_commit  # type: ignore[method-assign]
    dialect.do_rollback = do_rollback  # type: ignore[method-assign]

    @event.listens_for(engine.pool, "close")
    def _closed(dbapi_connection: Any, _record: Any) -> None:
        release(dbapi_connection)

    @event.listens_for(engine.pool, "invalidate")
    def _invalidated(dbapi_connection: Any, _record: Any, _exc: Any) -> None:
        release(dbapi_connection)


def create_db_engine(url: str, *, pool_size: int = 10, echo: bool = False) -> Engine:
    """An engine for ``url``; SQLite gets WAL, foreign keys and a busy timeout so that threads can share it."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, echo=echo, connect_args={"check_same_thread": False, "timeout": 30}
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        _serialize_sqlite_writes(engine, timeout_s=30.0,
                                 database=Path(path) if path and path != ":memory:" else None)
        return engine
    engine = create_engine(url, echo=echo, pool_size=pool_size, max_overflow=pool_size, pool_recycle=1800)
    _ping_after_idle(engine)
    return engine


def create_session_factory(engine: Engine) -> sessionmaker[Session]:
    """A session factory whose objects stay readable after commit (the edge commits, then serialises)."""
    return sessionmaker(bind=engine, expire_on_commit=False, autoflush=True)


@contextmanager
def unit_of_work(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One transaction at the edge: commit on success, roll back on any error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


_Kept = TypeVar("_Kept")


class KeptPerDatabase(Generic[_Kept]):
    """A process-wide cache of what was read from a database, kept per engine (``_kept``: engine -> value, dropped
    with the engine) under a lock: the base of the caches that serve repeated reads between the database's changes
    (the topology frames, the completed history, the limits sent)."""

    def __init__(self) -> None:
        self._kept: weakref.WeakKeyDictionary[Any, _Kept] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def clear(self) -> None:
        """Forget everything kept."""
        with self._lock:
            self._kept.clear()
