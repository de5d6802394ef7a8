"""The plugged-in fleet as arrays: one set-based read of sessions, connectors, sites, needs and readings.

Everything the portfolio computes (envelopes, pool aggregates, dispatch snapshots, scheduling instances)
starts from a :class:`Fleet`, so the database is read in a handful of queries whatever the fleet's size.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from sqlalchemy import Interval, Select, func, inspect, literal, select, true
from sqlalchemy.orm import Session

from vpp.algorithms.end_soc import LIVE_END_BELOW, LearnedTargets
from vpp.algorithms.needs import LearnedNeedDefaults, estimate_for, learn_need_defaults
from vpp.data.elaad import elaad_need_estimates
from vpp.db import KeptPerDatabase
from vpp.domain.needs import LocationCategory, NeedSource
from vpp.domain.pools import PoolId, PoolKind
from vpp.locations.tables import ChargingConnector, ChargingEvse, ChargingLocation
from vpp.ocpi.tables import OcpiConnection
from vpp.portfolio.end_soc import END_SOC, LIVE_BATTERY, car_keys, session_targets
from vpp.portfolio.tables import Booking, ChangeMark, ChargingNeedRow, CongestionPoint, Site, SiteLocation
from vpp.sessions.tables import ChargingSession, SessionReading

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

DEFAULT_MAX_KW = 11.0
# A reading may start this long before its session's start (CPO clocks); older ones are not looked at.
READING_BEFORE_START = timedelta(days=1)
V2G_CAPABILITIES = frozenset({"V2G_CAPABLE", "V2G", "BIDIRECTIONAL"})
# The oldest active session's start: the lower bound of the readings the flexibility read looks at. One probe of
# the (status, start_at) index; with start_at alone PostgreSQL walked every completed session older than the first
# active one, a walk that grew by a day of sessions with each day kept.
OLDEST_ACTIVE_START = select(func.min(ChargingSession.start_at)).where(ChargingSession.status == "active")
_CATEGORY_OF_SITE = {"home": LocationCategory.PRIVATE, "public": LocationCategory.PUBLIC,
                     "workplace": LocationCategory.WORKPLACE}


@dataclass(frozen=True)
class Fleet:
    """The active sessions at ``at``, aligned arrays; needs are resolved (remaining energy, departure)."""

    at: datetime
    session_ids: tuple[str, ...]
    cpo_pool: npt.NDArray[np.object_]
    site_pool: npt.NDArray[np.object_]
    congestion_pool: npt.NDArray[np.object_]
    zone_pool: npt.NDArray[np.object_]
    plugged_in: pd.DatetimeIndex
    departure: pd.DatetimeIndex
    delivered_kwh: FloatArray
    energy_needed_kwh: FloatArray
    max_kw: FloatArray
    discharge_kw: FloatArray
    current_kw: FloatArray
    soc_kwh: FloatArray
    battery_kwh: FloatArray
    min_soc_kwh: FloatArray
    need_source: npt.NDArray[np.object_]
    need_confidence: FloatArray
    site_capacity_kw: dict[str, float]
    congestion_max_kw: dict[str, float]
    # The period the latest reading averages (epoch seconds, NaN without one): the dispatcher's closed loop.
    reading_start_s: FloatArray = field(default_factory=lambda: np.zeros(0))
    reading_end_s: FloatArray = field(default_factory=lambda: np.zeros(0))
    # V2G by EVSE, connection and consent with a known battery, whether or not a reading has given its state of
    # charge yet (``discharge_kw`` waits for one): the model of the V2G cars still to come (empty: none known).
    v2g_able: npt.NDArray[np.bool_] = field(default_factory=lambda: np.zeros(0, dtype=bool))
    # Where each car's need ends when its state of charge is not known, learned from its or its CPO's finished
    # sessions (``vpp.portfolio.end_soc``; empty: not learned, every need taken to end full), and what was learned.
    target_soc: FloatArray = field(default_factory=lambda: np.zeros(0))
    learned_targets: LearnedTargets = field(default_factory=LearnedTargets)

    @property
    def n(self) -> int:
        """Number of sessions."""
        return len(self.session_ids)

    def members(self, pool: str) -> npt.NDArray[np.int64]:
        """Indices of the sessions in ``pool``."""
        pid = PoolId.parse(pool)
        column = {PoolKind.CPO: self.cpo_pool, PoolKind.SITE: self.site_pool,
                  PoolKind.CONGESTION_POINT: self.congestion_pool, PoolKind.ZONE: self.zone_pool}[pid.kind]
        return np.flatnonzero(column == pool).astype(np.int64)

    def target_soc_of(self, idx: npt.NDArray[np.int64]) -> FloatArray | None:
        """The learned target state of charge of the sessions ``idx`` (None: none learned)."""
        if self.target_soc.size == 0:
            return None
        out: FloatArray = self.target_soc[idx].copy()
        return out

    def pool_target_soc(self, pool: str, energy_kwh: float) -> float:
        """Where the need (``energy_kwh``) of a car still to come to ``pool`` is taken to end: the pool's learned
        prior (``LearnedTargets.target``)."""
        return self.learned_targets.target((), pool, energy_kwh)

    def pools(self) -> list[str]:
        """Every pool with at least one session."""
        found: set[str] = set()
        for column in (self.cpo_pool, self.site_pool, self.congestion_pool, self.zone_pool):
            found.update(str(p) for p in pd.unique(column) if p is not None)
        return sorted(found)


class NeedDefaultsCache:
    """Learned need defaults, re-learned from completed sessions at most every ``ttl_seconds`` of the time asked
    for (the service's clock: in a simulation the defaults follow simulated time, whatever the machine's speed)."""

    def __init__(self, ttl_seconds: float = 900.0) -> None:
        self._ttl = ttl_seconds
        self._value: LearnedNeedDefaults | None = None
        self._learned_at: datetime | None = None
        # The history they were learned from: the same sessions again give the same defaults (learning is pure).
        self._learned_from: pd.DataFrame | None = None
        self._lock = threading.Lock()
        self.learned = 0

    def get(self, db: Session, now: datetime) -> LearnedNeedDefaults:
        """The cached defaults, learned anew when learned more than ``ttl_seconds`` away from ``now`` from a history
        that changed since."""
        with self._lock:
            if (self._value is None or self._learned_at is None
                    or abs((now - self._learned_at).total_seconds()) > self._ttl):
                history = completed_history(db, now)
                if self._value is None or self._learned_from is None or not history.equals(self._learned_from):
                    self._value = learn_need_defaults(history, elaad_need_estimates())
                    self._learned_from = history
                    self.learned += 1
                self._learned_at = now
            return self._value


NEED_DEFAULTS = NeedDefaultsCache()


def mark_token(db: Session, name: str) -> int | None:
    """The change mark ``name``'s token now (``vpp.portfolio.tables.ChangeMark``); None where no mark can be trusted
    in this transaction: a dialect without the triggers, a mark without its row, or on PostgreSQL a transaction
    that has written (its own writes set the mark only at its commit, and may roll back)."""
    bind = db.get_bind()
    dialect = bind.dialect.name
    if dialect not in ("sqlite", "postgresql") or not _has_marks(bind):
        return None
    if dialect == "sqlite":
        found = db.execute(select(ChangeMark.token).where(ChangeMark.name == name)).first()
        return None if found is None else int(found[0])
    if dialect == "postgresql":
        marked = db.execute(select(ChangeMark.token, func.txid_current_if_assigned())
                            .where(ChangeMark.name == name)).first()
        return None if marked is None or marked[1] is not None else int(marked[0])
    return None


_MARKS_TABLE: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()


def _has_marks(bind: Any) -> bool:
    """Whether the database behind ``bind`` has the change marks (migration 0013), asked once per engine: a
    database kept at an older revision (``vpp bench partitions``' reference at 0007) has none, and its readers never
    keep frames."""
    engine = getattr(bind, "engine", bind)
    found = _MARKS_TABLE.get(engine)
    if found is None:
        found = _MARKS_TABLE[engine] = bool(inspect(bind).has_table(ChangeMark.__tablename__))
    return found


TOPOLOGY_MARK = "topology"


class TopologyCache(KeptPerDatabase[tuple[int, dict[Any, pd.DataFrame]]]):
    """Frames of the grid topology (the locations' sites, the connectors' powers) kept per database under the
    ``topology`` change mark.

    The mark's token is replaced by trigger in every transaction that writes what these frames read (migration
    ``0013_change_marks``), whichever process writes: the OCPI intake's processes write the locations. A read asks
    for the token first and reads the frame only when it was kept under another one; the token is read before the
    frame, so a kept frame never misses a write committed before its token (a write committed in between replaces
    the token again, and the next read reads afresh). Each caller gets a copy of its own.
    """

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0
        self.reuses = 0

    def frame(self, db: Session, key: Any, read: Callable[[], pd.DataFrame]) -> pd.DataFrame:
        """The frame ``key`` as ``read`` reads it, read again only when the mark moved since it was kept."""
        token = mark_token(db, TOPOLOGY_MARK)
        if token is None:
            self.reads += 1
            return read()
        bind = db.get_bind()
        with self._lock:
            kept = self._kept.get(bind)
            found = kept[1].get(key) if kept is not None and kept[0] == token else None
            if found is not None:
                self.reuses += 1
                return found.copy()
        frame = read()
        with self._lock:
            self.reads += 1
            kept = self._kept.get(bind)
            if kept is None or kept[0] != token:
                kept = self._kept[bind] = (token, {})
            kept[1][key] = frame
        return frame.copy()


TOPOLOGY = TopologyCache()


def site_frame(db: Session) -> pd.DataFrame:
    """Every CPO location mapped to a site: party and location keys, site, capacity, EAN, zone, category (kept
    under the ``topology`` mark: ``TOPOLOGY``)."""
    return TOPOLOGY.frame(db, "sites", lambda: _read_site_frame(db))


def _read_site_frame(db: Session) -> pd.DataFrame:
    rows = db.execute(
        select(SiteLocation.party_key, SiteLocation.location_key, Site.id, Site.capacity_kw,
               Site.congestion_point_ean, Site.bidding_zone, Site.category)
        .join(Site, Site.id == SiteLocation.site_id)
    ).all()
    return pd.DataFrame(rows, columns=["party_key", "location_key", "site_id", "site_capacity_kw", "ean", "zone",
                                       "category"])


def completed_history(db: Session, now: datetime, days: int = 90) -> pd.DataFrame:
    """Completed sessions of the last ``days`` days, in the shape the need learner and the forecast take
    (ordered by arrival, then session id; kept between calls by :data:`COMPLETED_HISTORY`)."""
    return COMPLETED_HISTORY.read(db, now, days)


# Sessions asked for by id per statement (SQLite's bound parameters).
_ID_CHUNK = 500
_HISTORY_COLUMNS = ["id", "party_key", "location_id", "evse_uid", "arrival", "departure", "energy_kwh", "updated_at"]


# A completed session: ended, and marked so.
_COMPLETED = (ChargingSession.status == "completed") & ChargingSession.end_at.is_not(None)
_HISTORY_SELECT = (ChargingSession.id, ChargingSession.party_key, ChargingSession.location_id,
                   ChargingSession.evse_uid, ChargingSession.start_at, ChargingSession.end_at,
                   ChargingSession.energy_kwh, ChargingSession.updated_at)


def _history_rows(db: Session, since: datetime, ids: list[str] | None = None) -> pd.DataFrame:
    """Completed sessions that arrived from ``since`` on; with ``ids``, only those among them (asked for
    ``_ID_CHUNK`` at a time). A kept session no longer completed is not among them: it stays in the merge, which
    then counts one row more than the database and is read afresh (``CompletedHistoryCache``)."""
    where = (_COMPLETED, ChargingSession.start_at >= since)
    if ids is None:
        found = list(db.execute(select(*_HISTORY_SELECT).where(*where)).all())
    else:
        found = []
        for begin in range(0, len(ids), _ID_CHUNK):
            found.extend(db.execute(select(*_HISTORY_SELECT).where(
                *where, ChargingSession.id.in_(ids[begin: begin + _ID_CHUNK]))).all())
    frame = pd.DataFrame(found, columns=_HISTORY_COLUMNS)
    frame["arrival"] = pd.to_datetime(frame["arrival"], utc=True)
    frame["departure"] = pd.to_datetime(frame["departure"], utc=True)
    return frame


def _history_frame(rows: pd.DataFrame, sites: pd.DataFrame) -> pd.DataFrame:
    """The kept rows joined to the topology, as ``completed_history`` returns them."""
    frame = rows[["party_key", "location_id", "evse_uid", "arrival", "departure", "energy_kwh"]].reset_index(drop=True)
    frame["location_key"] = frame["location_id"].str.casefold()
    frame = frame.merge(sites[["party_key", "location_key", "category", "site_id", "ean", "zone"]],
                        on=["party_key", "location_key"], how="left")
    frame["category"] = frame["category"].fillna("public")
    frame["evse_id"] = frame["party_key"] + "|" + frame["location_key"] + "|" + frame["evse_uid"].str.casefold()
    frame["location_id"] = frame["party_key"] + "|" + frame["location_key"]
    return frame


@dataclass
class _KeptHistory:
    since: datetime
    # Completed sessions from ``since`` on, ordered by arrival and id, and the latest write among them.
    rows: pd.DataFrame
    newest: datetime | None
    sites: pd.DataFrame | None = None
    frame: pd.DataFrame | None = None


class CompletedHistoryCache(KeptPerDatabase[dict[int, _KeptHistory]]):
    """Completed sessions kept per database between reads.

    Every re-plan reads weeks of completed sessions for its forecast, while only the few sessions that ended
    since the last one are new: the rows are kept, and each read asks the database only for the count and latest
    write (``updated_at``, stamped on every write of a session) of the completed sessions in the period. When that
    moved, the sessions written since (less :attr:`COMMIT_MARGIN`, for writes that committed after a later one)
    replace or join the kept rows, and the count checks the result: when it disagrees (a deletion, a write that
    committed later still) or the period reaches further back than the rows kept, everything is read again. The
    join to the topology is redone when the rows or the sites changed. The rows are ordered by arrival and session
    id, so a forecast does not depend on the order a database returns them in.
    """

    COMMIT_MARGIN = timedelta(minutes=5)
    # The kept rows start at the period first asked for; once the period has moved on by this much they are read
    # again from its new start (so a long-running service does not keep every session since it started).
    REBASE_AFTER = timedelta(days=1)

    def __init__(self) -> None:
        super().__init__()
        self.full_reads = 0
        self.partial_reads = 0

    def read(self, db: Session, now: datetime, days: int) -> pd.DataFrame:
        """Completed sessions that arrived in the ``days`` days before ``now``, joined to the topology.

        A wider window kept for the same database (the need learner's 90 days, when the forecast asks for 28)
        serves a narrower one: its rows from the narrower start on are the same sessions in the same order, and
        one count and one partial read then keep both up to date instead of two.
        """
        since = now - timedelta(days=days)
        bind = db.get_bind()
        with self._lock:
            buckets = self._kept.get(bind, {})
            wider = [d for d, kept in buckets.items() if d > days and kept.since <= since]
            if wider:
                buckets.pop(days, None)
        if wider:
            frame = self._read(db, now, max(wider))
            return frame[frame["arrival"] >= since].reset_index(drop=True)
        return self._read(db, now, days)

    def _read(self, db: Session, now: datetime, days: int) -> pd.DataFrame:
        since = now - timedelta(days=days)
        bind = db.get_bind()
        with self._lock:
            kept = self._kept.get(bind, {}).get(days)
        if kept is None or since < kept.since or since - kept.since > self.REBASE_AFTER:
            kept = self._full(db, since)
        else:
            count, newest = db.execute(
                select(func.count(), func.max(ChargingSession.updated_at))
                .where(_COMPLETED, ChargingSession.start_at >= kept.since)).one()
            if count != len(kept.rows) or newest != kept.newest:
                kept = self._update(db, kept, int(count))
        sites = site_frame(db)
        if kept.frame is None or kept.sites is None or not sites.equals(kept.sites):
            kept.frame, kept.sites = _history_frame(kept.rows, sites), sites
        with self._lock:
            self._kept.setdefault(bind, {})[days] = kept
        frame = kept.frame
        if since > kept.since:
            frame = frame[frame["arrival"] >= since].reset_index(drop=True)
        return frame.copy()

    @staticmethod
    def _kept_rows(since: datetime, rows: pd.DataFrame) -> _KeptHistory:
        rows = rows.sort_values(["arrival", "id"], kind="stable", ignore_index=True)
        newest = rows["updated_at"].max().to_pydatetime() if len(rows) else None
        return _KeptHistory(since=since, rows=rows, newest=newest)

    def _full(self, db: Session, since: datetime) -> _KeptHistory:
        self.full_reads += 1
        return self._kept_rows(since, _history_rows(db, since))

    def _update(self, db: Session, kept: _KeptHistory, count: int) -> _KeptHistory:
        if kept.newest is None:
            return self._full(db, kept.since)
        self.partial_reads += 1
        # The sessions written since (less the margin) by id and stamp first: only those whose stamp differs
        # from the kept row's (new ones among them) are read whole. Within the margin most are the kept rows
        # again (in a simulation, every session written in the last five minutes of the wall clock).
        changed_since = kept.newest - self.COMMIT_MARGIN
        stamps = db.execute(select(ChargingSession.id, ChargingSession.updated_at).where(
            _COMPLETED, ChargingSession.start_at >= kept.since, ChargingSession.updated_at >= changed_since)).all()
        recent = kept.rows[kept.rows["updated_at"] >= changed_since]
        known = dict(zip(recent["id"], recent["updated_at"], strict=True))
        wanted = [str(sid) for sid, stamp in stamps if sid not in known or known[sid] != stamp]
        changed = _history_rows(db, kept.since, wanted)
        rows = kept.rows[~kept.rows["id"].isin(changed["id"])]
        # Nothing read (a frame of no rows has no column types): the kept rows as they are, not concatenated with
        # it, which would turn their numbers and times into objects (and the forecast's sums with them).
        if len(changed):
            rows = pd.concat([rows, changed], ignore_index=True)
        if len(rows) != count:
            return self._full(db, kept.since)
        return self._kept_rows(kept.since, rows)


COMPLETED_HISTORY = CompletedHistoryCache()


def latest_readings(db: Session) -> pd.DataFrame:
    """The latest reading of each active session (the read of ``session_readings`` that flexibility makes).

    Bounded below by the oldest active session's start (less :data:`READING_BEFORE_START`), so that on PostgreSQL
    only the partitions of the days the fleet has been plugged in are read, however many days are kept.
    """
    columns = ["id", "current_kw", "soc_pct", "reading_start", "reading_end"]
    oldest = db.scalar(OLDEST_ACTIVE_START)
    if oldest is None:
        return pd.DataFrame(columns=columns)
    since = oldest - READING_BEFORE_START
    if db.get_bind().dialect.name == "postgresql":
        rows = db.execute(_latest_by_probe(since)).all()
    else:
        rows = db.execute(_latest_by_max(since)).all()
    # The latest period ends when the PATCH that carried it was stamped (the session's last_updated).
    return pd.DataFrame(rows, columns=columns)


def _latest_by_probe(since: datetime) -> Select[Any]:
    """PostgreSQL: per active session, one backward probe of the (session_id, start_at) key in each partition from
    its own start (less :data:`READING_BEFORE_START`) on, stopping at the first row.

    ``since`` prunes the older partitions when the statement is planned; the session's own bound prunes further at
    each probe (a session left active for weeks then costs its own probes, not every session's). Joining the
    readings to a ``max(start_at)`` per session instead let the planner hash every reading since ``since``, about
    two days of the fleet's readings, spilled to disk at 10,000 cars.
    """
    latest = (
        select(SessionReading.power_kw, SessionReading.soc_pct, SessionReading.start_at)
        .where(SessionReading.session_id == ChargingSession.id, SessionReading.start_at >= since,
               SessionReading.start_at >= ChargingSession.start_at - literal(READING_BEFORE_START, Interval()))
        .order_by(SessionReading.start_at.desc())
        .limit(1)
        .lateral()
    )
    return (
        select(ChargingSession.id, latest.c.power_kw, latest.c.soc_pct, latest.c.start_at,
               ChargingSession.last_updated)
        .join(latest, true())
        .where(ChargingSession.status == "active")
    )


def _latest_by_max(since: datetime) -> Select[Any]:
    """Other databases (SQLite, without LATERAL): per active session the newest start from the (session_id,
    start_at) key, and the reading at it."""
    newest = (
        select(func.max(SessionReading.start_at))
        .where(SessionReading.session_id == ChargingSession.id, SessionReading.start_at >= since)
        .scalar_subquery()
    )
    latest = (
        select(ChargingSession.id.label("session_id"), ChargingSession.last_updated, newest.label("start_at"))
        .where(ChargingSession.status == "active")
        .subquery()
    )
    # Joined to the active sessions only (not to every session ever stored, which grows with the days kept).
    return (
        select(SessionReading.session_id, SessionReading.power_kw, SessionReading.soc_pct, SessionReading.start_at,
               latest.c.last_updated)
        .join(latest, (latest.c.session_id == SessionReading.session_id)
              & (latest.c.start_at == SessionReading.start_at))
        .where(SessionReading.start_at >= since)
    )


def connector_frame(db: Session, connection_ids: list[str]) -> pd.DataFrame:
    """Every connector of these connections with its maximum power and whether its EVSE can discharge (kept under
    the ``topology`` mark: ``TOPOLOGY``)."""
    return TOPOLOGY.frame(db, ("connectors", tuple(connection_ids)), lambda: _read_connector_frame(db, connection_ids))


def _read_connector_frame(db: Session, connection_ids: list[str]) -> pd.DataFrame:
    rows = db.execute(
        select(ChargingLocation.connection_id, ChargingLocation.external_key, ChargingEvse.uid_key,
               ChargingConnector.external_key, ChargingConnector.max_power_kw, ChargingEvse.capabilities)
        .join(ChargingEvse, ChargingEvse.location_pk == ChargingLocation.id)
        .join(ChargingConnector, ChargingConnector.evse_pk == ChargingEvse.id)
        .where(ChargingLocation.connection_id.in_(connection_ids))
    ).all()
    frame = pd.DataFrame(rows, columns=["connection_id", "location_key", "evse_key", "connector_key", "max_kw",
                                        "capabilities"])
    frame["v2g_capable"] = [bool(V2G_CAPABILITIES & set(c or ())) for c in frame["capabilities"]]
    return frame.drop(columns=["capabilities"])


def _needs_frame(db: Session) -> pd.DataFrame:
    rows = db.execute(
        select(ChargingNeedRow.session_id, ChargingNeedRow.departure_at, ChargingNeedRow.energy_kwh,
               ChargingNeedRow.target_soc_pct, ChargingNeedRow.battery_kwh, ChargingNeedRow.discharge_allowed,
               ChargingNeedRow.min_soc_pct, ChargingNeedRow.confidence)
        .join(ChargingSession, ChargingSession.id == ChargingNeedRow.session_id)
        .where(ChargingSession.status == "active")
    ).all()
    return pd.DataFrame(rows, columns=["id", "need_departure", "need_energy_kwh", "target_soc_pct",
                                       "need_battery_kwh", "discharge_allowed", "min_soc_pct", "need_confidence"])


def _next_bookings(db: Session, now: datetime) -> pd.DataFrame:
    """Each car's next booking: its start (the session's departure) and the energy it states, if any."""
    upcoming = (Booking.start_at > now) & Booking.cancelled.is_(False)
    first = (select(Booking.vehicle_key, func.min(Booking.start_at).label("start_at"))
             .where(upcoming).group_by(Booking.vehicle_key).subquery())
    rows = db.execute(
        select(Booking.vehicle_key, Booking.start_at, Booking.energy_kwh)
        .join(first, (first.c.vehicle_key == Booking.vehicle_key) & (first.c.start_at == Booking.start_at))
        .where(upcoming)
        .order_by(Booking.vehicle_key, Booking.id)
    ).all()
    frame = pd.DataFrame(rows, columns=["vehicle_key", "booking_departure", "booking_energy_kwh"])
    return frame.drop_duplicates("vehicle_key")


def _as_utc(values: Any) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(pd.to_datetime(values, utc=True))


def load_fleet(db: Session, now: datetime, *, defaults: LearnedNeedDefaults | None = None) -> Fleet:
    """Read every active session with what the portfolio needs to know of it, and resolve its need."""
    rows = db.execute(
        select(ChargingSession.id, ChargingSession.connection_id, ChargingSession.party_key,
               ChargingSession.country_code, ChargingSession.party_id, ChargingSession.location_id,
               ChargingSession.evse_uid, ChargingSession.connector_id, ChargingSession.start_at,
               ChargingSession.energy_kwh, ChargingSession.driver_token, OcpiConnection.flags)
        .join(OcpiConnection, OcpiConnection.id == ChargingSession.connection_id)
        .where(ChargingSession.status == "active")
        .order_by(ChargingSession.id)
    ).all()
    frame = pd.DataFrame(rows, columns=["id", "connection_id", "party_key", "country_code", "party_id",
                                        "location_id", "evse_uid", "connector_id", "start_at", "delivered_kwh",
                                        "driver_token", "flags"])
    if frame.empty:
        return _empty_fleet(db, now)
    frame["location_key"] = frame["location_id"].astype(str).str.casefold()
    frame["evse_key"] = frame["evse_uid"].astype(str).str.casefold()
    frame["connector_key"] = frame["connector_id"].astype(str).str.casefold()
    frame = frame.merge(connector_frame(db, sorted(set(frame["connection_id"]))),
                        on=["connection_id", "location_key", "evse_key", "connector_key"], how="left")
    sites = site_frame(db)
    frame = frame.merge(sites, on=["party_key", "location_key"], how="left")
    frame = frame.merge(latest_readings(db), on="id", how="left")
    frame = frame.merge(_needs_frame(db), on="id", how="left")
    frame["vehicle_key"] = [str((t or {}).get("uid", "")).casefold() for t in frame["driver_token"]]
    frame = frame.merge(_next_bookings(db, now), on="vehicle_key", how="left")
    frame = frame.drop_duplicates("id").reset_index(drop=True)
    return _resolve(frame, db, now, defaults)


def _empty_fleet(db: Session, now: datetime) -> Fleet:
    none = np.zeros(0)
    objects = np.zeros(0, dtype=object)
    times = pd.DatetimeIndex([], tz="UTC")
    return Fleet(at=now, session_ids=(), cpo_pool=objects, site_pool=objects, congestion_pool=objects,
                 zone_pool=objects, plugged_in=times, departure=times, delivered_kwh=none, energy_needed_kwh=none,
                 max_kw=none, discharge_kw=none, current_kw=none, soc_kwh=none, battery_kwh=none,
                 min_soc_kwh=none, need_source=objects, need_confidence=none, site_capacity_kw={},
                 congestion_max_kw=_congestion_limits(db))


def _congestion_limits(db: Session) -> dict[str, float]:
    rows = db.execute(select(CongestionPoint.ean, CongestionPoint.max_kw)).all()
    return {f"congestion_point:{ean}": float(kw) for ean, kw in rows if kw is not None}


def _resolve(frame: pd.DataFrame, db: Session, now: datetime, defaults: LearnedNeedDefaults | None) -> Fleet:
    n = len(frame)
    plugged_in = _as_utc(frame["start_at"]) if n else pd.DatetimeIndex([], tz="UTC")
    delivered = frame["delivered_kwh"].to_numpy(dtype=np.float64) if n else np.zeros(0)
    max_kw = frame["max_kw"].fillna(DEFAULT_MAX_KW).to_numpy(dtype=np.float64) if n else np.zeros(0)
    discharge_flag = np.array([bool((f or {}).get("discharge_profiles", False)) for f in frame["flags"]], bool)
    # Missing (no connector row, no stated need) means no: compare rather than fill, whatever the dtype.
    v2g_capable = frame["v2g_capable"].eq(True).to_numpy(dtype=bool) if n else np.zeros(0, bool)
    consent = frame["discharge_allowed"].eq(True).to_numpy(dtype=bool) if n else np.zeros(0, bool)
    stated_battery = frame["need_battery_kwh"].to_numpy(dtype=np.float64) if n else np.zeros(0)
    # A battery not stated, from the car's own readings where its CPO reports the state of charge: then where its
    # need ends is known, not taken to end full (``LIVE_BATTERY``). Never for V2G, which needs a stated one.
    soc_pct = frame["soc_pct"].to_numpy(dtype=np.float64) if n else np.zeros(0)
    unstated = ~(np.isfinite(stated_battery) & (stated_battery > 0)) & np.isfinite(soc_pct)
    battery = stated_battery.copy()
    if unstated.any():
        rows_ = np.flatnonzero(unstated)
        battery[rows_] = LIVE_BATTERY.get(db, [str(frame["id"].iat[int(k)]) for k in rows_], now)
    soc_kwh = soc_pct / 100.0 * battery if n else np.zeros(0)
    min_soc = np.nan_to_num(frame["min_soc_pct"].to_numpy(dtype=np.float64) / 100.0 * battery) if n else np.zeros(0)
    # V2G needs the EVSE, the CPO connection and the driver to agree, and a known battery to guard the floor.
    v2g_able = v2g_capable & discharge_flag & consent & np.isfinite(stated_battery) & (stated_battery > 0)
    v2g = v2g_able & np.isfinite(soc_kwh)
    discharge_kw = np.where(v2g, max_kw, 0.0)

    departure = np.empty(n, dtype="datetime64[ns]")
    energy = np.full(n, np.nan)
    source = np.empty(n, dtype=object)
    confidence = np.ones(n)
    explicit = frame["need_departure"].notna().to_numpy() if n else np.zeros(0, bool)
    booked = (~explicit & frame["booking_departure"].notna().to_numpy()) if n else np.zeros(0, bool)
    if n:
        departure[explicit] = _as_utc(frame.loc[explicit, "need_departure"]).tz_localize(None).to_numpy()
        departure[booked] = _as_utc(frame.loc[booked, "booking_departure"]).tz_localize(None).to_numpy()
        source[explicit] = NeedSource.EXPLICIT.value
        source[booked] = NeedSource.BOOKING.value
        confidence[explicit] = frame.loc[explicit, "need_confidence"].fillna(1.0).to_numpy(dtype=np.float64)
        confidence[booked] = 0.9
        stated = frame["need_energy_kwh"].to_numpy(dtype=np.float64)
        # A booking's energy is what the car must take in before it: the session's need, as an explicit one (a
        # booking without one keeps the energy a need may state).
        booking_energy = frame["booking_energy_kwh"].to_numpy(dtype=np.float64)
        stated = np.where(booked & np.isfinite(booking_energy), booking_energy, stated)
        energy = np.where(np.isfinite(stated), np.maximum(stated - delivered, 0.0), np.nan)
        target = frame["target_soc_pct"].to_numpy(dtype=np.float64) / 100.0
        by_soc = ~np.isfinite(energy) & np.isfinite(target) & np.isfinite(battery) & np.isfinite(soc_kwh)
        energy[by_soc] = np.maximum(target[by_soc] * battery[by_soc] - soc_kwh[by_soc], 0.0)
        learned = defaults or NEED_DEFAULTS.get(db, now)
        guessed = ~np.isfinite(energy) | ~(explicit | booked)
        rows_ = np.flatnonzero(guessed)
        if rows_.size:
            keys = frame.iloc[rows_][["party_key", "location_key", "evse_key", "category"]].fillna("public")
            memo: dict[tuple[str, str, str, str], tuple[float, float, str, float]] = {}
            estimates = []
            for key in keys.itertuples(index=False, name=None):
                found = memo.get(key)
                if found is None:
                    party, location, evse, category = (str(k) for k in key)
                    estimate = estimate_for(learned, _CATEGORY_OF_SITE.get(category, LocationCategory.PUBLIC),
                                            evse_id=f"{party}|{location}|{evse}", location_id=f"{party}|{location}")
                    level = NeedSource.DEFAULT if estimate.level.value == "elaad" else NeedSource.LEARNED
                    found = memo[key] = (estimate.energy_kwh, estimate.dwell_hours, level.value, estimate.confidence)
                estimates.append(found)
            est_energy, est_dwell, est_source, est_confidence = (np.array(col) for col in zip(*estimates, strict=True))
            no_energy = ~np.isfinite(energy[rows_])
            energy[rows_[no_energy]] = np.maximum(est_energy[no_energy] - delivered[rows_[no_energy]], 0.0)
            undated = ~(explicit[rows_] | booked[rows_])
            target_rows = rows_[undated]
            dwell_ns = (est_dwell[undated] * 3.6e12).astype("timedelta64[ns]")
            departure[target_rows] = plugged_in[target_rows].tz_localize(None).to_numpy() + dwell_ns
            source[target_rows] = est_source[undated]
            confidence[target_rows] = est_confidence[undated]
    if unstated.any():
        # Known only where the need ends clearly below full (``LIVE_END_BELOW``); else the full-battery assumption.
        with np.errstate(invalid="ignore", divide="ignore"):
            near_full = unstated & ~((soc_kwh + np.nan_to_num(energy)) / battery < LIVE_END_BELOW)
        battery = np.where(near_full, np.nan, battery)
        soc_kwh = np.where(near_full, np.nan, soc_kwh)
    departure_index = pd.DatetimeIndex(departure).tz_localize("UTC") if n else pd.DatetimeIndex([], tz="UTC")
    # A car that has overstayed its expected departure is still here: give it one more ISP.
    overstay = pd.Timestamp(now) + pd.Timedelta(minutes=15)
    departure_index = departure_index.where(departure_index > pd.Timestamp(now), overstay)

    def pool_column(kind: PoolKind, values: pd.Series) -> npt.NDArray[np.object_]:
        return np.array([f"{kind.value}:{v}" if isinstance(v, str) and v else None for v in values], dtype=object)

    cpo = (frame["country_code"].astype(str).str.upper() + "-" + frame["party_id"].astype(str).str.upper()) \
        if n else pd.Series([], dtype=str)
    capacities = {f"site:{s}": float(c) for s, c in zip(frame.get("site_id", []), frame.get("site_capacity_kw", []),
                                                         strict=False)
                  if isinstance(s, str) and c is not None and np.isfinite(c)}
    cp_limits = _congestion_limits(db)
    zones = frame["zone"].fillna("NL") if n else pd.Series([], dtype=str)
    cpo_pools = pool_column(PoolKind.CPO, cpo)
    targets = END_SOC.get(db, now)
    session_keys = [car_keys(token, str(party), str(location), str(evse), None if pd.isna(category) else str(category))
            for token, party, location, evse, category in zip(
                frame["driver_token"], frame["party_key"], frame["location_key"], frame["evse_key"],
                frame["category"], strict=True)] if n else []
    return Fleet(
        at=now,
        session_ids=tuple(str(i) for i in frame["id"]),
        cpo_pool=cpo_pools,
        site_pool=pool_column(PoolKind.SITE, frame["site_id"] if n else pd.Series([], dtype=str)),
        congestion_pool=pool_column(PoolKind.CONGESTION_POINT, frame["ean"] if n else pd.Series([], dtype=str)),
        zone_pool=pool_column(PoolKind.ZONE, zones),
        plugged_in=plugged_in,
        departure=departure_index,
        delivered_kwh=delivered,
        energy_needed_kwh=np.nan_to_num(energy),
        max_kw=max_kw,
        discharge_kw=discharge_kw,
        current_kw=frame["current_kw"].to_numpy(dtype=np.float64) if n else np.zeros(0),
        soc_kwh=soc_kwh,
        battery_kwh=battery,
        min_soc_kwh=min_soc,
        need_source=source,
        need_confidence=confidence,
        site_capacity_kw=capacities,
        congestion_max_kw=cp_limits,
        reading_start_s=_epoch_s(frame["reading_start"]) if n else np.zeros(0),
        reading_end_s=np.fmax(_epoch_s(frame["reading_end"]), _epoch_s(frame["reading_start"])) if n else np.zeros(0),
        v2g_able=v2g_able if n else np.zeros(0, dtype=bool),
        target_soc=session_targets(targets, session_keys, list(cpo_pools),
                                   delivered + np.nan_to_num(energy)) if n else np.zeros(0),
        learned_targets=targets,
    )


def _epoch_s(values: pd.Series) -> FloatArray:
    """Timestamps as epoch seconds (NaN where missing)."""
    stamps = pd.to_datetime(values, utc=True)
    seconds = (stamps - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
    return np.asarray(seconds.to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64)
