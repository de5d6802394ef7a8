"""Read models of the web view: a pool's sessions and the live activation picture, from the services' tables."""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import datetime, timedelta

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from vpp.activations import service as activations
from vpp.activations.tables import AfrrSetpoint
from vpp.algorithms.settlement import ramp_limited_setpoint
from vpp.commitments import service as commitments
from vpp.domain.commitments import CommitmentKind
from vpp.domain.isp import floor_to_isp
from vpp.domain.pools import PoolId
from vpp.ocpi.tables import OcpiConnection
from vpp.portfolio.fleet import Fleet
from vpp.sessions.tables import ChargingSession, LimitRequest
from vpp.web.schemas import (
    ConnectionActivityRead,
    LiveActivations,
    LiveLimit,
    LiveOutcomes,
    LiveSetpoint,
    LiveStep,
    PoolSessionPage,
    PoolSessionRead,
    SortKey,
)

TOLERANCE = 0.05  # the settlement's band: ramped setpoint +/- 5 % (vpp.algorithms.settlement.check_afrr_steps)
CONGESTION_KINDS = (CommitmentKind.CONGESTION_LIMIT, CommitmentKind.FLEX_ORDER, CommitmentKind.DEVICE_CURTAILMENT)


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def pool_sessions(db: Session, fleet: Fleet, pool: str, *, cpo: str | None = None, location: str | None = None,
                  v2g: bool | None = None, sort: SortKey = "departure", limit: int = 100,
                  offset: int = 0) -> PoolSessionPage:
    """The sessions of ``pool`` in the fleet, filtered, sorted and paged."""
    PoolId.parse(pool)
    idx = fleet.members(pool)
    ids = [fleet.session_ids[i] for i in idx]
    meta: dict[str, tuple[str, str, str]] = {}
    rows = db.execute(
        select(ChargingSession.id, ChargingSession.location_id, ChargingSession.evse_uid, OcpiConnection.name)
        .join(OcpiConnection, OcpiConnection.id == ChargingSession.connection_id)
        .where(ChargingSession.status == "active")
    ).all()
    members = set(ids)
    for sid, location_id, evse_uid, name in rows:
        if sid in members:
            meta[sid] = (str(location_id), str(evse_uid), str(name))
    cpos = sorted({m[2] for m in meta.values()})
    keep = np.ones(idx.size, dtype=bool)
    wanted_cpo = cpo.casefold() if cpo else None
    wanted_location = location.casefold() if location else None
    for k, sid in enumerate(ids):
        loc, _evse, name = meta.get(sid, ("", "", ""))
        cpo_ok = wanted_cpo is None or wanted_cpo in name.casefold() \
            or wanted_cpo == str(fleet.cpo_pool[idx[k]]).casefold()
        location_ok = wanted_location is None or wanted_location in loc.casefold()
        v2g_ok = v2g is None or bool(fleet.discharge_kw[idx[k]] > 0) == v2g
        keep[k] = cpo_ok and location_ok and v2g_ok
    chosen = idx[keep]
    chosen_ids = [ids[k] for k in np.flatnonzero(keep)]
    key = sort.lstrip("-")
    if key == "departure":
        values: list[object] = [fleet.departure[i].value for i in chosen]
    elif key in ("energy_needed_kwh", "current_kw"):
        column = fleet.energy_needed_kwh if key == "energy_needed_kwh" else np.nan_to_num(fleet.current_kw)
        values = [float(column[i]) for i in chosen]
    elif key == "location_id":
        values = [meta.get(s, ("", "", ""))[0].casefold() for s in chosen_ids]
    else:
        values = [meta.get(s, ("", "", ""))[2].casefold() for s in chosen_ids]
    order = sorted(range(len(chosen)), key=lambda k: (values[k], chosen_ids[k]), reverse=sort.startswith("-"))
    page = order[offset:offset + limit]
    items = []
    for k in page:
        i = int(chosen[k])
        sid = chosen_ids[k]
        loc, evse, name = meta.get(sid, ("", "", ""))
        items.append(PoolSessionRead(
            session_id=sid, cpo=name, cpo_pool=fleet.cpo_pool[i], location_id=loc, evse_uid=evse,
            plugged_in=fleet.plugged_in[i].to_pydatetime(), departure=fleet.departure[i].to_pydatetime(),
            need_source=str(fleet.need_source[i]), energy_needed_kwh=round(float(fleet.energy_needed_kwh[i]), 3),
            delivered_kwh=round(float(fleet.delivered_kwh[i]), 3), max_kw=round(float(fleet.max_kw[i]), 3),
            current_kw=_finite(float(fleet.current_kw[i])), v2g=bool(fleet.discharge_kw[i] > 0),
            discharge_kw=round(float(fleet.discharge_kw[i]), 3)))
    return PoolSessionPage(pool=pool, at=fleet.at, items=items, total=len(chosen), limit=limit, offset=offset,
                           cpos=cpos)


def _steps(db: Session, pool: str, now: datetime, window_s: int) -> tuple[list[LiveStep], float | None]:
    rows = activations.list_response(db, pool=pool, start=now - timedelta(seconds=window_s),
                                     end=now + timedelta(seconds=60))
    if not rows:
        return [], None
    ramped = ramp_limited_setpoint(np.array([r.requested_mw for r in rows], dtype=np.float64))
    half = TOLERANCE * np.abs(ramped)
    steps = []
    inside = 0
    for row, centre, width in zip(rows, ramped, half, strict=True):
        low, high = float(centre - width), float(centre + width)
        inside += int(low - 1e-9 <= row.supplied_mw <= high + 1e-9)
        steps.append(LiveStep(at=row.at, setpoint_seq=row.setpoint_seq, requested_mw=row.requested_mw,
                              supplied_mw=row.supplied_mw, band_low_mw=low, band_high_mw=high,
                              measured_kw=row.measured_kw, baseline_kw=row.baseline_kw, target_kw=row.target_kw))
    return steps, inside / len(steps)


def _latest_setpoint(db: Session, pool: str) -> LiveSetpoint | None:
    row = db.scalars(
        select(AfrrSetpoint).where(AfrrSetpoint.pool == pool, AfrrSetpoint.stale.is_(False))
        .order_by(AfrrSetpoint.seq.desc()).limit(1)
    ).first()
    if row is None:
        return None
    return LiveSetpoint(seq=row.seq, timestamp=row.timestamp, requested_mw=row.requested_mw,
                        setpoint_mw=row.setpoint_mw, clipped=row.clipped, capacity_up_mw=row.capacity_up_mw,
                        capacity_down_mw=row.capacity_down_mw, received_at=row.received_at)


def _load_kw(fleet: Fleet | None, pool: str) -> float | None:
    if fleet is None:
        return None
    members = fleet.members(pool)
    if members.size == 0:
        return 0.0
    return round(float(np.nansum(fleet.current_kw[members])), 3)


def _limits(db: Session, pool: str, now: datetime, fleet: Fleet | None) -> list[LiveLimit]:
    isp = floor_to_isp(now)
    related = {pool}
    if fleet is not None:
        members = fleet.members(pool)
        for column in (fleet.congestion_pool, fleet.site_pool):
            related.update(str(p) for p in set(column[members].tolist()) if p)
    found = [c for c in commitments.list_for(db, sorted(related), isp, isp + timedelta(minutes=15),
                                             kinds=list(CONGESTION_KINDS))]
    result = []
    for c in found:
        load = _load_kw(fleet, c.pool)
        headroom = None if load is None or c.kind != CommitmentKind.CONGESTION_LIMIT else round(c.power_kw - load, 3)
        result.append(LiveLimit(pool=c.pool, kind=c.kind.value, isp_start=c.isp_start, limit_kw=c.power_kw,
                                load_kw=load, headroom_kw=headroom))
    limited = {c.pool for c in found if c.kind == CommitmentKind.CONGESTION_LIMIT}
    if fleet is not None:
        static = {**fleet.site_capacity_kw, **fleet.congestion_max_kw}
        for other in sorted(related - limited):
            if other in static:
                load = _load_kw(fleet, other)
                result.append(LiveLimit(pool=other, kind="capacity", isp_start=isp, limit_kw=static[other],
                                        load_kw=load,
                                        headroom_kw=None if load is None else round(static[other] - load, 3)))
    return sorted(result, key=lambda x: (x.pool, x.kind))


def _outcomes(db: Session, now: datetime, window_s: int) -> list[LiveOutcomes]:
    since = now - timedelta(seconds=window_s)
    names = dict(db.execute(select(OcpiConnection.id, OcpiConnection.name)).all())
    grouped: dict[str, dict[str, int]] = defaultdict(dict)
    last: dict[str, datetime] = {}
    rows = db.execute(
        select(LimitRequest.connection_id, LimitRequest.status, LimitRequest.result, func.count(),
               func.max(LimitRequest.created_at))
        .where(LimitRequest.created_at >= since)
        .group_by(LimitRequest.connection_id, LimitRequest.status, LimitRequest.result)
    ).all()
    for connection_id, status, result, count, latest in rows:
        label = f"{status}/{result}" if result else str(status)
        grouped[connection_id][label] = grouped[connection_id].get(label, 0) + int(count)
        if latest is not None and (connection_id not in last or latest > last[connection_id]):
            last[connection_id] = latest
    outcomes = []
    for connection_id, counts in sorted(grouped.items(), key=lambda kv: names.get(kv[0], kv[0])):
        message = db.scalars(
            select(LimitRequest.message).where(LimitRequest.connection_id == connection_id,
                                               LimitRequest.created_at >= since,
                                               LimitRequest.message.is_not(None))
            .order_by(LimitRequest.created_at.desc()).limit(1)
        ).first()
        outcomes.append(LiveOutcomes(connection_id=connection_id, cpo=names.get(connection_id, connection_id),
                                     by_status=counts, total=sum(counts.values()), last_at=last.get(connection_id),
                                     last_message=message))
    return outcomes


def live_activations(db: Session, pool: str, now: datetime, fleet: Fleet | None, *,
                     window_s: int = 600) -> LiveActivations:
    """The pool's setpoint, response with band, congestion limits against load and profile outcomes per CPO."""
    pool = str(PoolId.parse(pool))
    steps, share = _steps(db, pool, now, window_s)
    return LiveActivations(pool=pool, at=now, window_s=window_s, setpoint=_latest_setpoint(db, pool), steps=steps,
                           within_band_share=share, limits=_limits(db, pool, now, fleet),
                           outcomes=_outcomes(db, now, window_s))


PROFILE_ERRORS = ("failed", "rejected", "lost")


def connection_activity(db: Session, now: datetime) -> list[ConnectionActivityRead]:
    """Per connection: the latest session change, active sessions and charging-profile errors of the last day."""
    latest = dict(db.execute(
        select(ChargingSession.connection_id, func.max(ChargingSession.updated_at))
        .group_by(ChargingSession.connection_id)).all())
    active = dict(db.execute(
        select(ChargingSession.connection_id, func.count()).where(ChargingSession.status == "active")
        .group_by(ChargingSession.connection_id)).all())
    errors = dict(db.execute(
        select(LimitRequest.connection_id, func.count())
        .where(LimitRequest.created_at >= now - timedelta(days=1), LimitRequest.status.in_(PROFILE_ERRORS))
        .group_by(LimitRequest.connection_id)).all())
    ids = db.scalars(select(OcpiConnection.id).order_by(OcpiConnection.id)).all()
    return [ConnectionActivityRead(connection_id=i, last_push_at=latest.get(i), active_sessions=int(active.get(i, 0)),
                                   profile_errors_24h=int(errors.get(i, 0))) for i in ids]
