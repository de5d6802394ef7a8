"""Where cars stop charging, learned from finished sessions (``vpp.algorithms.end_soc``) and kept between reads.

The planner, the day-ahead position and the dispatcher's need floors model a car's taper near full; without its
state of charge they took every need to end full, and planned cars hours before they leave. Each finished
session is judged once (its readings, the limits it was sent, its charger), when it is first seen completed;
a read asks the database only for the sessions completed since the last one, at most every ``ttl_seconds`` of
the service's clock, so a re-plan does not read history.
"""

from __future__ import annotations

import math
import threading
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from vpp.algorithms.dispatch import car_power_kw
from vpp.algorithms.end_soc import (
    FINAL_SOC_SPAN_PCT,
    LEAST_ARRIVAL_SOC,
    SMALLEST_BATTERY_KWH,
    LearnedTargets,
    learn_targets,
    live_battery_kwh,
    session_battery_kwh,
    session_end_soc,
)
from vpp.domain.pools import cpo_pool
from vpp.sessions.tables import ChargingSession, LimitRequest, SessionReading

if TYPE_CHECKING:
    from vpp.config import Settings

Judged = tuple[datetime, float, tuple[str, ...], str, float]
# Limits that reached the car: applied, or accepted and not yet answered otherwise.
IN_FORCE = ("applied", "accepted")
_CHUNK = 500
# The first read of a database judges at most this many completed sessions per CPO (the newest): its cost is
# bounded however much history the window holds; later reads judge what completed since.
FIRST_READ_PER_CPO = 500


def car_keys(driver_token: Mapping[str, Any] | None, party_key: str, location_key: str, evse_key: str,
             category: str | None) -> tuple[str, ...]:
    """The keys a session's car is known by across sessions: its token (per issuing party), and at a home the
    charge point (one car charges there)."""
    token = driver_token or {}
    keys: list[str] = []
    uid = str(token.get("uid") or "").casefold()
    if uid:
        keys.append(f"token:{str(token.get('country_code') or '').casefold()}|"
                    f"{str(token.get('party_id') or '').casefold()}|{uid}")
    if category == "home":
        keys.append(f"evse:{party_key}|{str(location_key).casefold()}|{str(evse_key).casefold()}")
    return tuple(keys)


@dataclass
class _Judged:
    since: datetime
    # session id -> (end of the session, end state of charge (NaN: not judged), car keys, pool, battery (NaN))
    sessions: dict[str, Judged] = field(default_factory=dict)
    newest: datetime | None = None
    learned: LearnedTargets = field(default_factory=LearnedTargets)
    learned_at: datetime | None = None


def _utc(value: Any) -> datetime:
    stamp = pd.Timestamp(value)
    out: datetime = (stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp).to_pydatetime()
    return out


def judge_sessions(db: Session, ids: list[str]) -> dict[str, Judged]:
    """Each finished session's end state of charge (``vpp.algorithms.end_soc.session_end_soc``), its car keys, pool
    and battery (``session_battery_kwh``), read from its readings, the limits it was sent and its charger."""
    from vpp.portfolio.fleet import connector_frame, site_frame

    out: dict[str, Judged] = {}
    if not ids:
        return out
    sites = site_frame(db)
    category = {(p, loc): c for p, loc, c in zip(sites["party_key"], sites["location_key"], sites["category"],
                                                  strict=True)}
    for begin in range(0, len(ids), _CHUNK):
        chunk = ids[begin: begin + _CHUNK]
        rows = db.execute(
            select(ChargingSession.id, ChargingSession.connection_id, ChargingSession.country_code,
                   ChargingSession.party_id, ChargingSession.party_key, ChargingSession.location_id,
                   ChargingSession.evse_uid, ChargingSession.connector_id, ChargingSession.end_at,
                   ChargingSession.driver_token).where(ChargingSession.id.in_(chunk))).all()
        frame = pd.DataFrame(rows, columns=["id", "connection_id", "country_code", "party_id", "party_key",
                                            "location_id", "evse_uid", "connector_id", "end_at", "driver_token"])
        frame["location_key"] = frame["location_id"].astype(str).str.casefold()
        frame["evse_key"] = frame["evse_uid"].astype(str).str.casefold()
        frame["connector_key"] = frame["connector_id"].astype(str).str.casefold()
        frame = frame.merge(connector_frame(db, sorted(set(frame["connection_id"]))),
                            on=["connection_id", "location_key", "evse_key", "connector_key"], how="left")
        frame = frame.drop_duplicates("id")
        readings: dict[str, list[tuple[datetime, float, float, float]]] = {}
        for sid, at, kw, kwh, soc in db.execute(
                select(SessionReading.session_id, SessionReading.start_at, SessionReading.power_kw,
                       SessionReading.energy_kwh, SessionReading.soc_pct)
                .where(SessionReading.session_id.in_(chunk)).order_by(SessionReading.session_id,
                                                                      SessionReading.start_at)):
            readings.setdefault(sid, []).append((_utc(at), _nan(kw), _nan(kwh), _nan(soc)))
        limits: dict[str, list[tuple[datetime, float]]] = {}
        for sid, at, kind, kw in db.execute(
                select(LimitRequest.session_id, LimitRequest.created_at, LimitRequest.kind, LimitRequest.limit_kw)
                .where(LimitRequest.session_id.in_(chunk), LimitRequest.status.in_(IN_FORCE))
                .order_by(LimitRequest.session_id, LimitRequest.created_at)):
            limits.setdefault(sid, []).append((_utc(at), math.nan if kind != "set" else _nan(kw)))
        for row in frame.to_dict("records"):
            sid, party, location = str(row["id"]), str(row["party_key"]), str(row["location_key"])
            ended = _utc(row["end_at"])
            keys = car_keys(row["driver_token"], party, location, str(row["evse_key"]), category.get((party, location)))
            pool = str(cpo_pool(str(row["country_code"]), str(row["party_id"])))
            taken = readings.get(sid, [])
            out[sid] = (ended, _judge(taken, limits.get(sid, []), ended, _nan(row["max_kw"])), keys, pool,
                        session_battery_kwh([r[2] for r in taken], [r[3] for r in taken]))
    return out


def _nan(value: Any) -> float:
    return math.nan if value is None or pd.isna(value) else float(value)


def _judge(readings: list[tuple[datetime, float, float, float]], limits: list[tuple[datetime, float]],
           ended: datetime, charger_kw: float) -> float:
    if not readings:
        return math.nan
    starts = [r[0].timestamp() for r in readings]
    ends = [*starts[1:], max(ended.timestamp(), starts[-1])]
    power = [r[1] for r in readings]
    charger = charger_kw if math.isfinite(charger_kw) and charger_kw > 0 else max(np.nan_to_num(power).max(), 0.0)
    if not charger > 0:
        return math.nan
    full = max(float(car_power_kw(np.array([charger]), None)[0][0]), float(np.nan_to_num(power).max()))
    return session_end_soc(power, [r[2] for r in readings], [r[3] for r in readings], starts, ends, charger,
                           full_kw=full, limit_s=[a.timestamp() for a, _ in limits], limit_kw=[kw for _, kw in limits])


class EndSocCache:
    """Learned end states of charge, per database: finished sessions judged once, re-learned at most every
    ``ttl_seconds`` of the time asked for (the service's clock), over the last ``window``; the first read judges
    only the newest ``first_read_per_cpo`` completed sessions of each CPO. ``smallest_battery_kwh`` and
    ``least_arrival_soc``: where a learned target gives way to full (``vpp.algorithms.end_soc``)."""

    COMMIT_MARGIN = timedelta(minutes=5)

    def __init__(self, ttl_seconds: float = 900.0, window: timedelta = timedelta(days=14), *,
                 first_read_per_cpo: int = FIRST_READ_PER_CPO, smallest_battery_kwh: float = SMALLEST_BATTERY_KWH,
                 least_arrival_soc: float = LEAST_ARRIVAL_SOC) -> None:
        self._ttl = ttl_seconds
        self._window = window
        self._kept: weakref.WeakKeyDictionary[Any, _Judged] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()
        self.reads = 0
        self.configure(first_read_per_cpo=first_read_per_cpo, smallest_battery_kwh=smallest_battery_kwh,
                       least_arrival_soc=least_arrival_soc)

    def configure(self, *, first_read_per_cpo: int = FIRST_READ_PER_CPO,
                  smallest_battery_kwh: float = SMALLEST_BATTERY_KWH,
                  least_arrival_soc: float = LEAST_ARRIVAL_SOC) -> None:
        """Set the first read's bound and the floor's smallest battery and least arrival (a process's settings);
        what was learned is learned again at the next read."""
        if first_read_per_cpo < 1 or not smallest_battery_kwh > 0 or not 0.0 <= least_arrival_soc < 1.0:
            raise ValueError(f"EndSocCache: first_read_per_cpo >= 1, a positive smallest battery and a least "
                             f"arrival within [0, 1), got {first_read_per_cpo}, {smallest_battery_kwh}, "
                             f"{least_arrival_soc}")
        with self._lock:
            self.first_read_per_cpo = first_read_per_cpo
            self.smallest_battery_kwh = smallest_battery_kwh
            self.least_arrival_soc = least_arrival_soc
            for kept in self._kept.values():
                kept.learned_at = None

    def clear(self) -> None:
        """Forget everything learned."""
        with self._lock:
            self._kept.clear()

    def get(self, db: Session, now: datetime) -> LearnedTargets:
        """What finished sessions show of where cars stop, learned anew when more than ``ttl_seconds`` away."""
        bind = db.get_bind()
        with self._lock:
            kept = self._kept.get(bind)
            # Within its time to live, or asked for a time before it was learned (what was learned then serves: a
            # past moment is not worth reading history again for).
            if (kept is not None and kept.learned_at is not None
                    and (now - kept.learned_at).total_seconds() <= self._ttl):
                return kept.learned
            if kept is None:
                kept = _Judged(since=now - self._window)
            self._update(db, kept, now)
            self._kept[bind] = kept
            return kept.learned

    def _update(self, db: Session, kept: _Judged, now: datetime) -> None:
        self.reads += 1
        since = now - self._window
        completed = (ChargingSession.status == "completed") & ChargingSession.end_at.is_not(None)
        first = kept.newest is None
        # Later reads need only the ids and stamps of the sessions written since (the CPO and end pick the first
        # read's sessions).
        columns = (ChargingSession.id, ChargingSession.updated_at, ChargingSession.country_code,
                   ChargingSession.party_id, ChargingSession.end_at) if first else (ChargingSession.id,
                                                                                    ChargingSession.updated_at)
        query = select(*columns).where(completed, ChargingSession.start_at >= since - timedelta(days=1))
        if kept.newest is not None:
            query = query.where(ChargingSession.updated_at >= kept.newest - self.COMMIT_MARGIN)
        rows = db.execute(query).all()
        changed = [(sid, updated) for sid, updated, *_ in rows]
        if first:
            chosen = newest_per_cpo(rows, self.first_read_per_cpo)
            # The rest stay unjudged for good (a later read that sees them again does not judge them).
            skipped = {str(row[0]) for row in rows} - {str(row[0]) for row in chosen}
            kept.sessions.update({str(row[0]): (_utc(row[4]), math.nan, (), str(cpo_pool(str(row[2]), str(row[3]))),
                                                math.nan) for row in rows if str(row[0]) in skipped})
            rows = chosen
        fresh = [str(row[0]) for row in rows if str(row[0]) not in kept.sessions]
        kept.sessions.update(judge_sessions(db, fresh))
        newest = max((u for _, u in changed if u is not None), default=None)
        if newest is not None and (kept.newest is None or newest > kept.newest):
            kept.newest = newest
        cutoff = _utc(since)
        for sid in [s for s, v in kept.sessions.items() if v[0] < cutoff]:
            del kept.sessions[sid]
        kept.since = since
        values = list(kept.sessions.values())
        kept.learned = learn_targets([v[1] for v in values], [v[2] for v in values], [v[3] for v in values],
                                     battery_kwh=[v[4] for v in values],
                                     smallest_battery_kwh=self.smallest_battery_kwh,
                                     least_arrival_soc=self.least_arrival_soc)
        kept.learned_at = now


def newest_per_cpo(rows: Iterable[Any], per_cpo: int) -> list[Any]:
    """The newest ``per_cpo`` (by end) of completed-session rows ``(id, updated_at, country_code, party_id,
    end_at, ...)`` of each CPO."""
    by_cpo: dict[tuple[str, str], list[Any]] = {}
    for row in rows:
        by_cpo.setdefault((str(row[2]).upper(), str(row[3]).upper()), []).append(row)
    out: list[Any] = []
    for found in by_cpo.values():
        found.sort(key=lambda r: _utc(r[4]), reverse=True)
        out.extend(found[:per_cpo])
    return out


def session_targets(learned: LearnedTargets, keys: Iterable[tuple[str, ...]], pools: Iterable[str | None],
                    energy_kwh: Iterable[float]) -> np.ndarray:
    """Each session's learned target state of charge (``LearnedTargets.target``) for its whole energy."""
    return np.array([learned.target(k, p, e) for k, p, e in zip(keys, pools, energy_kwh, strict=True)],
                    dtype=np.float64)


END_SOC = EndSocCache()


@dataclass
class _Live:
    # session id -> its battery (kWh; NaN: not known yet), when its readings were last read, and whether final
    battery: dict[str, float] = field(default_factory=dict)
    read_at: dict[str, datetime] = field(default_factory=dict)
    final: set[str] = field(default_factory=set)


class LiveBatteryCache:
    """Each plugged-in car's battery from its own readings (``vpp.algorithms.end_soc.live_battery_kwh``), per
    database: a session's readings are read again at most every ``ttl_seconds`` of the service's clock, and never
    once its estimate spans ``FINAL_SOC_SPAN_PCT`` points of state of charge. A CPO that reports the state of
    charge (OCPI ``STATE_OF_CHARGE``) but not the battery let the service know neither where a need ends nor the
    car's state of charge in kWh; with the battery it knows both."""

    def __init__(self, ttl_seconds: float = 900.0) -> None:
        self._ttl = ttl_seconds
        self._kept: weakref.WeakKeyDictionary[Any, _Live] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()
        self.reads = 0

    def clear(self) -> None:
        """Forget everything estimated."""
        with self._lock:
            self._kept.clear()

    def get(self, db: Session, ids: list[str], now: datetime) -> np.ndarray:
        """The battery (kWh; NaN: not known) of each of the sessions ``ids`` (the active ones: others are
        forgotten)."""
        bind = db.get_bind()
        with self._lock:
            kept = self._kept.get(bind)
            if kept is None:
                kept = self._kept[bind] = _Live()
            active = set(ids)
            for sid in [s for s in kept.read_at if s not in active]:
                kept.read_at.pop(sid, None)
                kept.battery.pop(sid, None)
                kept.final.discard(sid)
            due = [sid for sid in ids if sid not in kept.final and (
                sid not in kept.read_at or (now - kept.read_at[sid]).total_seconds() > self._ttl)]
            if due:
                self.reads += 1
                self._read(db, kept, due, now)
            return np.array([kept.battery.get(sid, math.nan) for sid in ids], dtype=np.float64)

    @staticmethod
    def _read(db: Session, kept: _Live, ids: list[str], now: datetime) -> None:
        readings: dict[str, tuple[list[float], list[float]]] = {}
        for begin in range(0, len(ids), _CHUNK):
            chunk = ids[begin: begin + _CHUNK]
            for sid, kwh, soc in db.execute(
                    select(SessionReading.session_id, SessionReading.energy_kwh, SessionReading.soc_pct)
                    .where(SessionReading.session_id.in_(chunk))
                    .order_by(SessionReading.session_id, SessionReading.start_at)):
                energy, socs = readings.setdefault(str(sid), ([], []))
                energy.append(_nan(kwh))
                socs.append(_nan(soc))
        for sid in ids:
            kept.read_at[sid] = now
            energy, socs = readings.get(sid, ([], []))
            kept.battery[sid] = live_battery_kwh(energy, socs)
            known = [v for v in socs if math.isfinite(v)]
            if math.isfinite(kept.battery[sid]) and known and known[-1] - known[0] >= FINAL_SOC_SPAN_PCT:
                kept.final.add(sid)


LIVE_BATTERY = LiveBatteryCache()


def configure_end_soc(settings: Settings) -> None:
    """The process's settings of the learned end of charge (its composition root calls this)."""
    END_SOC.configure(first_read_per_cpo=settings.end_soc_first_read_per_cpo,
                      smallest_battery_kwh=settings.end_soc_smallest_battery_kwh,
                      least_arrival_soc=settings.end_soc_least_arrival_soc)
