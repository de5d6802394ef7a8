"""The sessions of a pool on a day and their meter data on the ISP grid (missing data stays a gap, never 0)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import numpy.typing as npt
import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from vpp.algorithms.baselines import Baseline, uncontrolled_baseline
from vpp.cdrs.tables import ChargeDetailRecord
from vpp.domain.pools import PoolId, PoolKind
from vpp.portfolio.fleet import DEFAULT_MAX_KW, connector_frame, site_frame
from vpp.sessions.tables import ChargingSession, SessionReading
from vpp.settlement.values import DayGrid

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
ISP_S = 900.0
# An active session's last period is believed only this long: later data has simply not arrived yet.
OPEN_PERIOD_HOLD = timedelta(minutes=15)


@dataclass(frozen=True)
class PoolSessions:
    """Sessions of a pool overlapping a day, aligned arrays; times in seconds from the day's start."""

    ids: tuple[str, ...]
    charger: tuple[str, ...]
    start_s: FloatArray
    end_s: FloatArray
    energy_kwh: FloatArray
    max_kw: FloatArray
    cdr_energy_kwh: FloatArray

    @property
    def n(self) -> int:
        """How many sessions."""
        return len(self.ids)


@dataclass(frozen=True)
class MeterGrid:
    """Per session and ISP: metered energy (kWh, NaN on a gap); per session: the whole-session integral."""

    energy_kwh: FloatArray
    gap: BoolArray
    session_energy_kwh: FloatArray
    missing_periods: npt.NDArray[np.int64]
    period_start_s: FloatArray
    period_end_s: FloatArray
    period_session: npt.NDArray[np.int64]
    period_cumulative_kwh: FloatArray


def pool_of_sessions(frame: pd.DataFrame, kind: PoolKind) -> pd.Series:
    """The pool of each session row for one pool kind (None where the topology does not say)."""
    if kind is PoolKind.CPO:
        return "cpo:" + frame["country_code"].str.upper() + "-" + frame["party_id"].str.upper()
    column = {PoolKind.SITE: "site_id", PoolKind.CONGESTION_POINT: "ean", PoolKind.ZONE: "zone"}[kind]
    values = frame[column]
    if kind is PoolKind.ZONE:
        values = values.fillna("NL")
    return values.map(lambda v: f"{kind.value}:{v}" if isinstance(v, str) and v else None)


def load_pool_sessions(db: Session, pool: str, grid: DayGrid) -> PoolSessions:
    """Sessions of ``pool`` that overlap the day (active or completed), with charger, power and CDR energy."""
    kind = PoolId.parse(pool).kind
    rows = db.execute(
        select(ChargingSession.id, ChargingSession.connection_id, ChargingSession.party_key,
               ChargingSession.country_code, ChargingSession.party_id, ChargingSession.location_id,
               ChargingSession.evse_uid, ChargingSession.connector_id, ChargingSession.start_at,
               ChargingSession.end_at, ChargingSession.energy_kwh)
        .where(ChargingSession.start_at < grid.end,
               ChargingSession.end_at.is_(None) | (ChargingSession.end_at > grid.start))
        .order_by(ChargingSession.id)
    ).all()
    columns = ["id", "connection_id", "party_key", "country_code", "party_id", "location_id", "evse_uid",
               "connector_id", "start_at", "end_at", "energy_kwh"]
    frame = pd.DataFrame(rows, columns=columns)
    if frame.empty:
        return _empty_sessions()
    frame["location_key"] = frame["location_id"].str.casefold()
    frame = frame.merge(site_frame(db), on=["party_key", "location_key"], how="left")
    frame = frame[pool_of_sessions(frame, kind) == pool]
    if frame.empty:
        return _empty_sessions()
    frame["evse_key"] = frame["evse_uid"].str.casefold()
    frame["connector_key"] = frame["connector_id"].str.casefold()
    connectors = connector_frame(db, sorted(set(frame["connection_id"])))
    frame = frame.merge(connectors, on=["connection_id", "location_key", "evse_key", "connector_key"], how="left")
    frame = frame.drop_duplicates("id").reset_index(drop=True)
    ids = tuple(str(i) for i in frame["id"])
    start = pd.to_datetime(frame["start_at"], utc=True)
    end = pd.to_datetime(frame["end_at"], utc=True)
    cdr = _cdr_energy(db, ids)
    return PoolSessions(
        ids=ids,
        charger=tuple(frame["party_key"] + "|" + frame["location_key"] + "|" + frame["evse_key"]),
        start_s=np.asarray((start - pd.Timestamp(grid.start)).dt.total_seconds(), dtype=np.float64),
        end_s=np.asarray((end - pd.Timestamp(grid.start)).dt.total_seconds(), dtype=np.float64),
        energy_kwh=frame["energy_kwh"].to_numpy(dtype=np.float64),
        max_kw=frame["max_kw"].fillna(DEFAULT_MAX_KW).to_numpy(dtype=np.float64),
        cdr_energy_kwh=np.array([cdr.get(i, np.nan) for i in ids], dtype=np.float64),
    )


def _empty_sessions() -> PoolSessions:
    empty = np.zeros(0)
    return PoolSessions((), (), empty, empty, empty, empty, empty)


def _cdr_energy(db: Session, ids: tuple[str, ...]) -> dict[str, float]:
    """The energy of each session's valid CDR: the newest one neither a credit nor credited."""
    found: dict[str, float] = {}
    for chunk in range(0, len(ids), 5000):
        rows = db.execute(
            select(ChargeDetailRecord.session_id, ChargeDetailRecord.energy_kwh)
            .where(ChargeDetailRecord.session_id.in_(ids[chunk:chunk + 5000]),
                   ChargeDetailRecord.credit.is_(False), ChargeDetailRecord.credited_by.is_(None))
            .order_by(ChargeDetailRecord.received_at)
        ).all()
        found.update({str(sid): float(kwh) for sid, kwh in rows})
    return found


def load_readings(db: Session, sessions: PoolSessions, grid: DayGrid) -> pd.DataFrame:
    """Every reading of the sessions (whole sessions, for reconciliation), sorted by session and start."""
    if not sessions.n:
        return pd.DataFrame(columns=["session", "start_s", "power_kw", "energy_kwh"])
    earliest = grid.start + timedelta(seconds=float(np.nanmin(sessions.start_s)))
    latest_end = np.nanmax(np.where(np.isnan(sessions.end_s), 0.0, sessions.end_s))
    latest = max(grid.end, grid.start + timedelta(seconds=float(latest_end)))
    rows = db.execute(
        select(SessionReading.session_id, SessionReading.start_at, SessionReading.power_kw,
               SessionReading.energy_kwh)
        .where(SessionReading.start_at >= earliest, SessionReading.start_at < latest)
    ).all()
    frame = pd.DataFrame(rows, columns=["session_id", "start_at", "power_kw", "energy_kwh"])
    index = {sid: k for k, sid in enumerate(sessions.ids)}
    frame["session"] = frame["session_id"].map(index)
    frame = frame[frame["session"].notna()]
    if frame.empty:
        return pd.DataFrame(columns=["session", "start_s", "power_kw", "energy_kwh"])
    frame["session"] = frame["session"].astype(np.int64)
    frame["start_s"] = (pd.to_datetime(frame["start_at"], utc=True) - pd.Timestamp(grid.start)).dt.total_seconds()
    frame = frame.sort_values(["session", "start_s"], kind="stable").reset_index(drop=True)
    return frame[["session", "start_s", "power_kw", "energy_kwh"]].astype(
        {"power_kw": np.float64, "energy_kwh": np.float64})


def meter_grid(sessions: PoolSessions, readings: pd.DataFrame, isps: int, *, gap_tolerance_s: float = 60.0,
               now_s: float | None = None) -> MeterGrid:
    """Spread each charging period (from its start to the next one's, or the session end) over the ISPs.

    A period's power is its energy over its duration (its reported power when the energy is missing); a
    period with neither is missing. A session-ISP cell whose plugged-in time is not covered by known periods
    (beyond ``gap_tolerance_s``) is a gap: its energy is NaN, never 0.
    """
    n = sessions.n
    session = readings["session"].to_numpy(dtype=np.int64)
    start = readings["start_s"].to_numpy(dtype=np.float64)
    power = readings["power_kw"].to_numpy(dtype=np.float64)
    energy = readings["energy_kwh"].to_numpy(dtype=np.float64)
    same_next = np.zeros(session.shape, dtype=bool)
    same_next[:-1] = session[1:] == session[:-1]
    next_start = np.append(start[1:], np.inf)
    session_end = sessions.end_s[session] if session.size else np.zeros(0)
    open_end = start + OPEN_PERIOD_HOLD.total_seconds()
    if now_s is not None:
        open_end = np.minimum(open_end, now_s)
    last_end = np.where(np.isnan(session_end), open_end, session_end)
    end = np.where(same_next, next_start, np.maximum(last_end, start))
    duration_h = (end - start) / 3600.0
    with np.errstate(divide="ignore", invalid="ignore"):
        period_kw = np.where(np.isfinite(energy) & (duration_h > 0), energy / duration_h, power)
    known = np.isfinite(period_kw)
    period_kwh = np.where(known, period_kw * duration_h, 0.0)
    whole = np.bincount(session, weights=period_kwh, minlength=n) if n else np.zeros(0)
    missing_periods = np.bincount(session, weights=(~known & (duration_h > 0)).astype(np.float64), minlength=n)

    covered = np.zeros((n, isps))
    metered = np.zeros((n, isps))
    lo = np.clip(start, 0.0, isps * ISP_S)
    hi = np.clip(end, 0.0, isps * ISP_S)
    inside = known & (hi > lo)
    if inside.any():
        s, a, b, kw = session[inside], lo[inside], hi[inside], period_kw[inside]
        first = np.floor(a / ISP_S).astype(np.int64)
        last = np.minimum(np.ceil(b / ISP_S).astype(np.int64), isps) - 1
        count = np.maximum(last - first + 1, 1)
        piece = np.repeat(np.arange(s.size), count)
        isp = np.repeat(first, count) + (np.arange(piece.size) - np.repeat(np.cumsum(count) - count, count))
        seconds = np.clip(np.minimum(b[piece], (isp + 1) * ISP_S) - np.maximum(a[piece], isp * ISP_S), 0.0, None)
        flat = s[piece] * isps + isp
        covered.ravel()[:] += np.bincount(flat, weights=seconds, minlength=n * isps)
        metered.ravel()[:] += np.bincount(flat, weights=kw[piece] * seconds / 3600.0, minlength=n * isps)
    expected = _plugged_seconds(sessions, isps, now_s)
    gap = expected - covered > gap_tolerance_s
    running = np.cumsum(period_kwh)
    counts = np.bincount(session, minlength=n) if n else np.zeros(0, dtype=np.int64)
    first_index = np.cumsum(counts) - counts
    base = np.concatenate([[0.0], running])[first_index]
    cumulative = running - base[session] if session.size else np.zeros(0)
    cumulative = np.where(known, cumulative, np.nan)
    return MeterGrid(
        energy_kwh=np.where(gap, np.nan, metered),
        gap=gap,
        session_energy_kwh=np.asarray(whole, dtype=np.float64),
        missing_periods=missing_periods.astype(np.int64),
        period_start_s=start,
        period_end_s=end,
        period_session=session,
        period_cumulative_kwh=cumulative,
    )


def _plugged_seconds(sessions: PoolSessions, isps: int, now_s: float | None) -> FloatArray:
    edges = np.arange(isps + 1, dtype=np.float64) * ISP_S
    horizon = isps * ISP_S if now_s is None else min(isps * ISP_S, now_s)
    end = np.where(np.isnan(sessions.end_s), horizon, np.minimum(sessions.end_s, horizon))
    overlap = np.minimum(end[:, None], edges[None, 1:]) - np.maximum(sessions.start_s[:, None], edges[None, :-1])
    return np.asarray(np.clip(overlap, 0.0, None), dtype=np.float64)


def counterfactual(sessions: PoolSessions, meter: MeterGrid, isps: int) -> Baseline:
    """Each session's uncontrolled counterfactual (kW per ISP): full power from plug-in until its energy is in.

    The energy is the CDR's when there is one, else the session's, else what the readings integrate to.
    """
    need = np.where(np.isfinite(sessions.cdr_energy_kwh), sessions.cdr_energy_kwh, sessions.energy_kwh)
    need = np.where(np.isfinite(need) & (need > 0), need, meter.session_energy_kwh)
    end = np.where(np.isnan(sessions.end_s), np.inf, sessions.end_s)
    return uncontrolled_baseline(sessions.start_s / 3600.0, np.maximum(end, sessions.start_s) / 3600.0,
                                 np.nan_to_num(np.maximum(need, 0.0)), sessions.max_kw, intervals=isps)


def as_datetime(grid_start: datetime, seconds: float) -> datetime:
    """A moment given in seconds from the day's start."""
    return grid_start + timedelta(seconds=float(seconds))
