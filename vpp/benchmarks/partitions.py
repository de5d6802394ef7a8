"""``vpp bench partitions``: do reading intake, the flexibility read and the settlement reads stay fast as days pile up?

On a PostgreSQL server (``--database-url``, default ``VPP_DATABASE_URL``) it makes two databases: one migrated to
head (readings and 4-second tables partitioned by day) and, as the reference, one at ``0007_plan`` (plain tables).
Each is filled day by day with ``--cars`` charging sessions a day (one per car, ``--readings`` charging periods
each, 5 minutes apart) and ``--pools`` pools' 4-second rows (pool responses, allocations, sends), by COPY. After
the second day and after the last (``--days``) it measures, on the latest day (the second, not the first, is the
day one of the comparison: the first local day's settlement reads an hour with no data and no sessions carried
over from the day before, so it reads less than any later day):

- ``copy_rows_per_s``: the day's fill by COPY (readings, then the 4-second rows);
- ``intake_rows_per_s``: ``--intake`` Session PATCHes through the service's intake (``sessions.update_alone``, the
  statement an OCPI PATCH runs), one reading each, one connection, sequentially; the best of three rounds;
- ``flexibility_ms``: the fleet's latest-reading read (``portfolio.fleet.latest_readings``), best of 5;
- ``settlement_ms``: a CPO pool's sessions, their readings and its 4-second steps for the day
  (``settlement.sessions.load_pool_sessions``, ``load_readings``, ``settlement.afrr.load_steps``), best of 3.

Best-of-N, not the median: the machine this runs on is shared, and the minimum is what the load adds least to.

``ratio`` is last day over first day (a time, so above 1 is slower; for a rate, below 1 is slower). The databases
are dropped at the end unless ``--keep``; ``within_20_pct`` says whether every ratio stayed within 20 % of day one.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import Engine, create_engine, make_url, text
from sqlalchemy.orm import Session

from vpp import migrate
from vpp.db import create_db_engine, create_session_factory, unit_of_work
from vpp.jobs import partitions
from vpp.ocpi.tables import OcpiConnection
from vpp.portfolio.fleet import latest_readings
from vpp.sessions import service as sessions
from vpp.sessions.values import Reading, SessionChanges
from vpp.settlement import afrr
from vpp.settlement.sessions import load_pool_sessions, load_readings
from vpp.settlement.values import DayGrid

FIRST_DAY = date(2026, 1, 5)
PERIOD = timedelta(minutes=5)
STEP = timedelta(seconds=4)
ZONE = "Europe/Amsterdam"
POOL = "cpo:NL-BEN"
# Beat's partition job as the service runs it (nothing is old enough to drop in a month).
POLICY = partitions.RetentionPolicy(retention_days=90, ahead_days=2, time_zone=ZONE)


def add_args(p: argparse.ArgumentParser) -> None:
    """Arguments of the benchmark."""
    p.add_argument("--days", type=int, default=30, help="simulated days filled")
    p.add_argument("--cars", type=int, default=10000, help="charging sessions a day (one per car)")
    p.add_argument("--readings", type=int, default=100, help="charging periods per session (5 minutes apart)")
    p.add_argument("--pools", type=int, default=4, help="pools writing 4-second rows (pool responses, "
                                                         "allocations, sends)")
    p.add_argument("--step-seconds", type=float, default=STEP.total_seconds(),
                   help="seconds between a pool's dispatch rows (the aFRR step; larger only for a quick run)")
    p.add_argument("--intake", type=int, default=2000, help="Session PATCHes timed through the intake")
    p.add_argument("--database-url", default=os.environ.get("VPP_DATABASE_URL", ""),
                   help="a PostgreSQL URL; the benchmark's databases are made beside its database")
    p.add_argument("--variants", default="partitioned,plain",
                   help="which databases to fill: partitioned (head), plain (0007_plan, the reference), or both; "
                        "two single-variant runs side by side take half the time on two cores")
    p.add_argument("--keep", action="store_true", help="keep the databases")


class Variant:
    """One database being filled and measured: partitioned (head) or plain (0007_plan)."""

    def __init__(self, server_url: str, name: str, revision: str) -> None:
        self.admin = create_engine(make_url(server_url).set(database="postgres"), isolation_level="AUTOCOMMIT")
        with self.admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        self.name = name
        self.url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
        self.engine: Engine = create_db_engine(self.url, pool_size=2)
        migrate.upgrade(self.engine, revision)
        self.factory = create_session_factory(self.engine)
        with unit_of_work(self.factory) as db:
            connection = OcpiConnection(name="bench", status="connected")
            db.add(connection)
            db.flush()
            self.connection_id = connection.id

    def drop(self) -> None:
        """Drop the database."""
        self.engine.dispose()
        with self.admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
        self.admin.dispose()

    def copy(self, statement: str, payload: str) -> None:
        """COPY tab-separated rows in one transaction."""
        raw = self.engine.raw_connection()
        try:
            cursor = raw.driver_connection.cursor()  # type: ignore[union-attr]
            with cursor.copy(statement) as copy:
                copy.write(payload)
            raw.commit()
        finally:
            raw.close()


def _tsv(columns: list[Any]) -> str:
    """Tab-separated lines from equally long columns."""
    buffer = io.StringIO()
    for row in zip(*columns, strict=True):
        buffer.write("\t".join(map(str, row)))
        buffer.write("\n")
    return buffer.getvalue()


def _session_id(day: int, car: int) -> str:
    return f"{day:04d}{car:08d}".ljust(32, "0")


def _fill_day(variant: Variant, day: int, args: argparse.Namespace, rng: np.random.Generator) -> dict[str, float]:
    """Sessions, readings and 4-second rows of simulated ``day`` (0-based); yesterday's sessions complete."""
    start = datetime.combine(FIRST_DAY + timedelta(days=day), datetime.min.time(), tzinfo=UTC)
    arrival_s = np.sort(rng.uniform(0.0, 86400.0 - args.readings * PERIOD.total_seconds(), args.cars)).round()
    ids = [_session_id(day, car) for car in range(args.cars)]
    arrivals = [(start + timedelta(seconds=float(s))).isoformat() for s in arrival_s]
    last = [(start + timedelta(seconds=float(s)) + PERIOD * args.readings).isoformat() for s in arrival_s]
    partitions.maintain(variant.factory, POLICY, now=start)  # beat, at the start of the simulated day
    with unit_of_work(variant.factory) as db:
        db.execute(text("UPDATE charging_sessions SET status = 'completed', end_at = last_updated "
                        "WHERE status = 'active'"))
    variant.copy(
        "COPY charging_sessions (id, connection_id, country_code, party_id, party_key, external_id, external_key, "
        "status, start_at, energy_kwh, location_id, evse_uid, connector_id, currency, driver_token, last_updated, "
        "created_at, updated_at) FROM STDIN",
        _tsv([ids, [variant.connection_id] * args.cars, ["NL"] * args.cars, ["BEN"] * args.cars,
              [sessions.party_key("NL", "BEN")] * args.cars, ids, ids, ["active"] * args.cars, arrivals,
              [0.0] * args.cars,
              [f"L{c % 500}" for c in range(args.cars)], [f"E{c}" for c in range(args.cars)], ["1"] * args.cars,
              ["EUR"] * args.cars, ["{}"] * args.cars, last, arrivals, arrivals]))

    n = args.cars * args.readings
    at = (np.repeat(arrival_s, args.readings) + np.tile(np.arange(args.readings), args.cars) * PERIOD.total_seconds())
    stamps = (np.datetime64(start.replace(tzinfo=None), "s") + at.astype("timedelta64[s]")).astype(str)
    power = rng.uniform(0.0, 11.0, n).round(2)
    started = time.perf_counter()
    variant.copy("COPY session_readings (session_id, start_at, power_kw, energy_kwh) FROM STDIN",
                 _tsv([np.repeat(ids, args.readings), [f"{s}+00" for s in stamps], power, (power / 12).round(3)]))
    readings_s = time.perf_counter() - started

    steps = int(86400 / args.step_seconds)
    step_at = (np.datetime64(start.replace(tzinfo=None), "s")
               + (np.arange(steps) * int(args.step_seconds)).astype("timedelta64[s]")).astype(str)
    pools = [POOL] + [f"zone:BENCH{k}" for k in range(1, args.pools)]
    stamps4 = np.tile([f"{s}+00" for s in step_at], len(pools))
    pool_col = np.repeat(pools, steps)
    rows4 = steps * len(pools)
    alloc_ids = [uuid.uuid4().hex for _ in range(rows4)]
    zeros = np.zeros(rows4)
    measured = rng.uniform(1000.0, 2000.0, rows4).round(1)
    started = time.perf_counter()
    variant.copy(
        "COPY pool_responses (id, pool, at, requested_mw, supplied_mw, target_kw, measured_kw, baseline_kw, "
        "supplied_kw) FROM STDIN",
        _tsv([[uuid.uuid4().hex for _ in range(rows4)], pool_col, stamps4, zeros, zeros, measured, measured,
              measured, zeros]))
    variant.copy(
        "COPY dispatch_allocations (id, pool, at, setpoint_mw, target_kw, total_kw, baseline_kw, measured_kw, "
        "sessions, changed, \"full\", flags, items, owner, fence) FROM STDIN",
        _tsv([alloc_ids, pool_col, stamps4, zeros, measured, measured, measured, measured, [100] * rows4,
              [3] * rows4, ["f"] * rows4, ["{}"] * rows4, ['{"s":[],"kw":[]}'] * rows4, ["bench"] * rows4,
              [1] * rows4]))
    variant.copy(
        "COPY dispatch_sends (id, allocation_id, pool, batch, sent_at, completed_at, items) FROM STDIN",
        _tsv([[uuid.uuid4().hex for _ in range(rows4)], alloc_ids, pool_col, ["b"] * rows4, stamps4, stamps4,
              ['{"s":[],"kw":[]}'] * rows4]))
    steps_s = time.perf_counter() - started
    # Vacuumed as autovacuum would in production (this machine's server runs without it): the day's UPDATE left
    # the completed sessions' old index entries dead, and the active sessions' scan would walk them all.
    with variant.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM (ANALYZE) charging_sessions"))
        conn.execute(text("ANALYZE"))
    return {"readings": float(n), "readings_s": readings_s, "step_rows": float(3 * rows4), "steps_s": steps_s}


def _best_ms(repeat: int, work: Callable[[], object]) -> float:
    """The fastest of ``repeat`` runs (ms): on a shared, loaded machine the minimum is the least noisy figure."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        times.append((time.perf_counter() - started) * 1000.0)
    return round(min(times), 2)


def _intake(variant: Variant, day: int, args: argparse.Namespace) -> float:
    """Session PATCHes through the intake, one new reading each after the day's last, in three rounds over the
    day's sessions; readings per second of the fastest round."""
    start = datetime.combine(FIRST_DAY + timedelta(days=day + 1), datetime.min.time(), tzinfo=UTC)
    count = min(int(args.intake), int(args.cars))
    rates = []
    for round_ in range(3):
        started = time.perf_counter()
        for car in range(count):
            moment = start + timedelta(minutes=round_, seconds=car)
            changes = SessionChanges(fields={}, last_updated=moment, readings=(Reading(start=moment, power_kw=7.0),))
            with variant.factory() as db:
                sessions.update_alone(db, variant.connection_id, "NL", "BEN", _session_id(day, car), changes)
                db.commit()
        rates.append(count / (time.perf_counter() - started))
    return max(rates)


def _settlement(db: Session, day: int) -> int:
    grid = DayGrid.of(FIRST_DAY + timedelta(days=day), ZONE)
    members = load_pool_sessions(db, POOL, grid)
    readings = load_readings(db, members, grid)
    steps = afrr.load_steps(db, POOL, grid)
    return len(readings) + int(np.isfinite(steps.measured_mw).sum())


def _measure(variant: Variant, day: int, args: argparse.Namespace, filled: dict[str, float]) -> dict[str, float]:
    with variant.factory() as db:
        flexibility_ms = _best_ms(5, lambda: latest_readings(db))
        settlement_ms = _best_ms(3, lambda: _settlement(db, day))
    with variant.engine.connect() as conn:
        readings = int(conn.scalar(text("SELECT count(*) FROM session_readings")) or 0)
    return {
        "day": day + 1, "readings_stored": readings,
        "copy_rows_per_s": round((filled["readings"] + filled["step_rows"])
                                 / (filled["readings_s"] + filled["steps_s"])),
        "intake_rows_per_s": round(_intake(variant, day, args)),
        "flexibility_ms": flexibility_ms, "settlement_ms": settlement_ms,
    }


def _run_variant(variant: Variant, args: argparse.Namespace) -> dict[str, Any]:
    rng = np.random.default_rng(1)
    first: dict[str, float] = {}
    last: dict[str, float] = {}
    fill_s = 0.0
    for day in range(args.days):
        started = time.perf_counter()
        filled = _fill_day(variant, day, args, rng)
        fill_s += time.perf_counter() - started
        print(f"{variant.name}: day {day + 1}/{args.days} filled in {time.perf_counter() - started:.1f} s",
              file=sys.stderr, flush=True)
        if day == min(1, args.days - 1):
            first = _measure(variant, day, args, filled)
        if day == args.days - 1 and day > 0:
            last = _measure(variant, day, args, filled)
    last = last or first
    ratio = {key: round(last[key] / first[key], 3) for key in
             ("copy_rows_per_s", "intake_rows_per_s", "flexibility_ms", "settlement_ms") if first[key]}
    return {"first_day": first, "last_day": last, "ratio": ratio, "fill_seconds": round(fill_s, 1)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Fill and measure the partitioned database (and the plain reference); one JSON object."""
    if not args.database_url.startswith("postgresql"):
        raise SystemExit("vpp bench partitions needs a PostgreSQL --database-url (or VPP_DATABASE_URL)")
    base = make_url(args.database_url).database or "vpp"
    tag = uuid.uuid4().hex[:6]
    known = {"partitioned": ("head", f"{base}_bench_parted_{tag}"),
             "plain": ("0007_plan", f"{base}_bench_plain_{tag}")}
    chosen = [name.strip() for name in args.variants.split(",") if name.strip()]
    if not chosen or set(chosen) - set(known):
        raise SystemExit(f"--variants takes a comma-separated subset of {sorted(known)}")
    variants = {name: known[name] for name in chosen}
    result: dict[str, Any] = {
        "benchmark": "partitions", "days": args.days, "cars": args.cars, "readings_per_session": args.readings,
        "pools": args.pools, "readings_total": args.days * args.cars * args.readings,
        "load": os.getloadavg()[0],
    }
    for label, (revision, name) in variants.items():
        variant = Variant(args.database_url, name, revision)
        try:
            result[label] = _run_variant(variant, args)
            print(f"{label}: {result[label]}", file=sys.stderr, flush=True)
        finally:
            if not args.keep:
                variant.drop()
    result["load_after"] = os.getloadavg()[0]
    for label in variants:
        ratio = result[label]["ratio"]
        result[label]["within_20_pct"] = (
            ratio.get("intake_rows_per_s", 1.0) >= 0.8 and ratio.get("copy_rows_per_s", 1.0) >= 0.8
            and ratio.get("flexibility_ms", 1.0) <= 1.2 and ratio.get("settlement_ms", 1.0) <= 1.2)
    return result
