"""Use cases of activations: take in aFRR setpoints and DSO limits, serve the pool response."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from vpp.activations import repository
from vpp.activations.tables import AfrrSetpoint, PoolResponse
from vpp.commitments import service as commitments
from vpp.db import new_id, utcnow
from vpp.domain.commitments import CommitmentKind, CommitmentValue
from vpp.domain.errors import InvalidInput, NotFound
from vpp.domain.isp import floor_to_isp, isp_range, require_utc
from vpp.domain.pools import PoolId, PoolKind

DSO_SOURCE = "dso"
CURTAILMENT_FLOOR_KW = 4.2
# A DSO limit is stored as one commitment per pool and ISP: an unbounded window (year 96 to now) took 20 GB.
MAX_LIMIT_DAYS = 31


@dataclass(frozen=True, slots=True)
class SetpointReceipt:
    """A stored setpoint and how this request related to it."""

    setpoint: AfrrSetpoint
    duplicate: bool


def receive_setpoint(
    session: Session, *, pool: str, seq: int, timestamp: datetime, setpoint_mw: float
) -> SetpointReceipt:
    """Store an aFRR setpoint once per (pool, seq), clipped to the awarded capacity of its ISP."""
    pool = str(PoolId.parse(pool))
    timestamp = require_utc(timestamp, "timestamp")
    capacity = repository.capacities_kw(session, pool, floor_to_isp(timestamp))
    if capacity is None and not repository.pool_known(session, pool):
        raise NotFound(f"pool {pool!r} is unknown: it has no commitment", details={"pool": pool})
    capacity = capacity or {}
    up_mw = capacity.get(CommitmentKind.AFRR_CAPACITY_UP.value, 0.0) / 1000.0
    down_mw = capacity.get(CommitmentKind.AFRR_CAPACITY_DOWN.value, 0.0) / 1000.0
    applied_mw = min(max(setpoint_mw, -down_mw), up_mw)
    newest = repository.max_seq(session, pool)
    values = {
        "id": new_id(), "pool": pool, "seq": seq, "timestamp": timestamp, "requested_mw": setpoint_mw,
        "setpoint_mw": applied_mw, "clipped": applied_mw != setpoint_mw, "capacity_up_mw": up_mw,
        "capacity_down_mw": down_mw, "stale": newest is not None and seq < newest, "received_at": utcnow(),
    }
    inserted = repository.insert_setpoint_if_new(session, values)
    stored = repository.get_setpoint(session, pool, seq) if not inserted else AfrrSetpoint(**values)
    if stored is None:  # pragma: no cover - a conflicting row always exists when the insert did nothing
        raise NotFound(f"setpoint {pool}/{seq} vanished")
    return SetpointReceipt(setpoint=stored, duplicate=not inserted)


def receive_setpoint_alone(
    session: Session, *, pool: str, seq: int, timestamp: datetime, setpoint_mw: float
) -> SetpointReceipt:
    """``receive_setpoint`` as the whole transaction: on PostgreSQL one statement that commits itself, so the
    acknowledgement waits for one round trip and one commit, not five round trips.

    The session must be fresh (nothing executed in it yet); otherwise, and on other databases, this is
    ``receive_setpoint``. Same outcomes: clipped to the ISP's award, stale below the newest seq, a repeated
    (pool, seq) is a duplicate answered with the stored row, an unknown pool is NotFound and writes nothing.
    """
    if session.in_transaction() or session.get_bind().dialect.name != "postgresql":
        return receive_setpoint(session, pool=pool, seq=seq, timestamp=timestamp, setpoint_mw=setpoint_mw)
    pool = str(PoolId.parse(pool))
    timestamp = require_utc(timestamp, "timestamp")
    values = {"id": new_id(), "pool": pool, "seq": seq, "timestamp": timestamp, "requested_mw": setpoint_mw,
              "received_at": utcnow()}
    known, inserted = repository.insert_setpoint_alone(session, values, floor_to_isp(timestamp))
    if not known:
        raise NotFound(f"pool {pool!r} is unknown: it has no commitment", details={"pool": pool})
    if inserted is None:
        stored = repository.get_setpoint(session, pool, seq)
        if stored is None:  # pragma: no cover - a conflicting row always exists when the insert did nothing
            raise NotFound(f"setpoint {pool}/{seq} vanished")
        return SetpointReceipt(setpoint=stored, duplicate=True)
    applied_mw, clipped, up_mw, down_mw, stale = inserted
    row = AfrrSetpoint(**values, setpoint_mw=float(applied_mw), clipped=bool(clipped), capacity_up_mw=float(up_mw),
                       capacity_down_mw=float(down_mw), stale=bool(stale))
    return SetpointReceipt(setpoint=row, duplicate=False)


def _window(start: datetime, end: datetime) -> list[datetime]:
    start, end = require_utc(start, "start"), require_utc(end, "end")
    if end <= start:
        raise InvalidInput("end must be after start")
    if (end - start).total_seconds() > MAX_LIMIT_DAYS * 86400:
        raise InvalidInput(f"a limit may span at most {MAX_LIMIT_DAYS} days")
    return [moment.to_pydatetime() for moment in isp_range(start, end)]


def _congestion_pool(text: str) -> str:
    return str(PoolId.parse(text if ":" in text else f"{PoolKind.CONGESTION_POINT.value}:{text}"))


@dataclass(frozen=True, slots=True)
class RecordedLimit:
    """DSO limits recorded as commitments: their reference id, pools, kind, power and ISPs."""

    id: str
    pools: list[str]
    kind: CommitmentKind
    power_kw: float
    isps: list[datetime]


def record_dso_limit(
    session: Session,
    *,
    congestion_point: str,
    start: datetime,
    end: datetime,
    max_kw: float | None,
    reduction_kw: float | None,
) -> RecordedLimit:
    """Record a congestion limit (max_kw) or an ordered reduction (reduction_kw) on every ISP overlapping it."""
    if (max_kw is None) == (reduction_kw is None):
        raise InvalidInput("give exactly one of max_kw and reduction_kw")
    pool = _congestion_pool(congestion_point)
    isps = _window(start, end)
    kind = CommitmentKind.CONGESTION_LIMIT if max_kw is not None else CommitmentKind.FLEX_ORDER
    power_kw = float(max_kw if max_kw is not None else reduction_kw)  # type: ignore[arg-type]
    if power_kw < 0:
        raise InvalidInput("max_kw and reduction_kw must not be negative")
    reference = f"dso-limit:{new_id()}"
    commitments.record(
        session,
        [CommitmentValue(pool=pool, isp_start=isp, kind=kind, power_kw=power_kw, source=DSO_SOURCE,
                         reference=reference) for isp in isps],
    )
    return RecordedLimit(id=reference, pools=[pool], kind=kind, power_kw=power_kw, isps=isps)


def record_curtailment(
    session: Session,
    *,
    devices: Sequence[str] | None,
    congestion_point: str | None,
    start: datetime,
    end: datetime,
    max_kw_per_device: float,
) -> RecordedLimit:
    """Record a §14a curtailment: every device (a site, or each site of a congestion point) capped per device."""
    if max_kw_per_device < CURTAILMENT_FLOOR_KW:
        raise InvalidInput(f"max_kw_per_device must be at least {CURTAILMENT_FLOOR_KW} kW (§14a floor)")
    if bool(devices) == bool(congestion_point):
        raise InvalidInput("give either devices or congestion_point")
    if devices:
        pools = sorted({str(PoolId.parse(d if ":" in d else f"{PoolKind.SITE.value}:{d}")) for d in devices})
    else:
        pools = [_congestion_pool(str(congestion_point))]
    isps = _window(start, end)
    reference = f"curtailment:{new_id()}"
    commitments.record(
        session,
        [CommitmentValue(pool=pool, isp_start=isp, kind=CommitmentKind.DEVICE_CURTAILMENT,
                         power_kw=max_kw_per_device, source=DSO_SOURCE, reference=reference)
         for pool in pools for isp in isps],
    )
    return RecordedLimit(id=reference, pools=pools, kind=CommitmentKind.DEVICE_CURTAILMENT,
                         power_kw=max_kw_per_device, isps=isps)


def list_response(session: Session, *, pool: str, start: datetime, end: datetime) -> Sequence[PoolResponse]:
    """The pool's response per 4-second step in [start, end)."""
    start, end = require_utc(start, "start"), require_utc(end, "end")
    if end <= start:
        raise InvalidInput("end must be after start")
    if (end - start).total_seconds() > 7 * 86400:
        raise InvalidInput("ask for at most 7 days at once")
    return repository.responses(session, str(PoolId.parse(pool)), start, end)
