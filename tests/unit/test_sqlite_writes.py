"""SQLite writers take turns on a lock of the process (from their first write to commit or rollback), so a waiting
writer starts as soon as the lock is free, and a transaction that ends in any way gives the lock back."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from vpp.db import create_db_engine


def test_concurrent_writers_all_commit_and_every_way_out_of_a_transaction_frees_the_lock(tmp_path: Path) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'w.sqlite3'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER)"))
        conn.execute(text("INSERT INTO t VALUES (1, 0)"))

    def bump(times: int) -> None:
        for _ in range(times):
            with engine.begin() as conn:
                conn.execute(text("UPDATE t SET v = v + 1 WHERE id = 1"))
                time.sleep(0.0005)  # work inside the transaction while holding SQLite's write lock
                conn.execute(text("INSERT INTO t (v) VALUES (1)"))

    threads = [threading.Thread(target=bump, args=(25,)) for _ in range(12)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert time.perf_counter() - started < 60
    with engine.connect() as conn:
        assert conn.execute(text("SELECT v FROM t WHERE id = 1")).scalar_one() == 300
        assert conn.execute(text("SELECT count(*) FROM t")).scalar_one() == 301

    # A rolled-back transaction, a failed write, a connection given back without commit: the next writer
    # in another thread still writes at once (not after the 30-s fallback).
    with engine.connect() as conn:
        conn.execute(text("UPDATE t SET v = 0 WHERE id = 1"))
        conn.rollback()
    with pytest.raises(Exception, match="UNIQUE"), engine.begin() as conn:
        conn.execute(text("INSERT INTO t (id, v) VALUES (1, 5)"))
    conn2 = engine.connect()
    conn2.execute(text("UPDATE t SET v = 7 WHERE id = 1"))
    conn2.close()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("UPDATE t SET v = 8 WHERE id = 1"))

    done: list[float] = []

    def write_once() -> None:
        begun = time.perf_counter()
        with engine.begin() as conn:
            conn.execute(text("UPDATE t SET v = 9 WHERE id = 1"))
        done.append(time.perf_counter() - begun)

    thread = threading.Thread(target=write_once)
    thread.start()
    thread.join(timeout=60)
    assert done and done[0] < 5.0
    with engine.connect() as conn:
        assert conn.execute(text("SELECT v FROM t WHERE id = 1")).scalar_one() == 9
    engine.dispose()


@pytest.mark.skipif(sys.platform == "win32", reason="flock")
def test_a_write_turn_holds_the_file_lock_that_other_processes_wait_for(tmp_path: Path) -> None:
    """Processes sharing a database (a simulation's service and its OCPI intake) take turns on a file lock beside
    it: a transaction that has written holds it until it ends, and a writer waits while someone else holds it."""
    import fcntl

    database = tmp_path / "w.sqlite3"
    engine = create_db_engine(f"sqlite:///{database}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER)"))
        conn.execute(text("INSERT INTO t VALUES (1, 0)"))
    # Another open file description, as another process would have: flock excludes it like another process.
    other = os.open(f"{database}-writelock", os.O_RDWR)
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE t SET v = 1 WHERE id = 1"))
            with pytest.raises(BlockingIOError):
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free again after the commit

        # Held elsewhere: a write waits for it (and not in SQLite's busy handler: that would not wait at all,
        # nothing holds SQLite's own lock), then goes on as soon as it is released.
        done = threading.Event()

        def write() -> None:
            with engine.begin() as conn:
                conn.execute(text("UPDATE t SET v = 2 WHERE id = 1"))
            done.set()

        thread = threading.Thread(target=write)
        thread.start()
        assert not done.wait(0.5)
        fcntl.flock(other, fcntl.LOCK_UN)
        assert done.wait(5.0)
        thread.join(5.0)
    finally:
        os.close(other)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT v FROM t WHERE id = 1")).scalar_one() == 2
    engine.dispose()
