"""HTTP routes of activations: aFRR setpoint intake (market), DSO limits (dso), pool response (market, trader)."""

from __future__ import annotations

import logging
import time
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from vpp.activations import service
from vpp.activations.schemas import (
    CurtailmentCreate,
    DsoLimitCreate,
    LimitRecorded,
    PoolResponseRead,
    SetpointAck,
    SetpointCreate,
)
from vpp.api.deps import SessionDep, require_roles
from vpp.api.errors import error_responses
from vpp.api.types import Pool, UtcDatetime
from vpp.apikeys.service import Principal
from vpp.db import unit_of_work
from vpp.domain.roles import Role
from vpp.observability import AFRR_SETPOINTS, observe_setpoint_lag
from vpp.ports import ActivationBus, ActivationEvent

log = logging.getLogger("vpp.activations")

router = APIRouter(tags=["activations"], responses=error_responses(401, 403, 422))

MarketOnly = Annotated[Principal, Depends(require_roles(Role.MARKET))]
DsoOnly = Annotated[Principal, Depends(require_roles(Role.DSO))]
MarketOrTrader = Annotated[Principal, Depends(require_roles(Role.MARKET, Role.TRADER))]

SETPOINT = "setpoint"
LIMITS_CHANGED = "limits_changed"


def _factory(request: Request) -> sessionmaker[Session]:
    factory: sessionmaker[Session] = request.app.state.session_factory
    return factory


def _bus(request: Request) -> ActivationBus:
    bus: ActivationBus = request.app.state.activation_bus
    return bus


FactoryDep = Annotated[sessionmaker[Session], Depends(_factory)]
BusDep = Annotated[ActivationBus, Depends(_bus)]


@router.post("/api/v1/market/afrr/setpoints", operation_id="submit_afrr_setpoint",
             responses=error_responses(404))
async def submit_afrr_setpoint(body: SetpointCreate, request: Request, _caller: MarketOnly) -> SetpointAck:
    """Store an aFRR setpoint, then wake the pool's dispatcher; answers once it is committed."""
    factory, bus = _factory(request), _bus(request)
    queued = time.perf_counter()

    def store() -> SetpointAck:
        began = time.perf_counter()
        # Own transaction (not SessionDep): the setpoint must be committed before it is published and acknowledged.
        with unit_of_work(factory) as session:
            receipt = service.receive_setpoint_alone(session, pool=body.pool, seq=body.seq, timestamp=body.timestamp,
                                                     setpoint_mw=body.setpoint_mw)
        committed = time.perf_counter()
        row = receipt.setpoint
        outcome = "duplicate" if receipt.duplicate else "stale" if row.stale else "clipped" if row.clipped else "stored"
        AFRR_SETPOINTS.labels(outcome).inc()
        observe_setpoint_lag(body.timestamp)
        if not receipt.duplicate and not row.stale:
            bus.publish(ActivationEvent(kind=SETPOINT, pool=row.pool, seq=row.seq))
        # Where an acknowledgement's time went: waiting for a worker thread (and the GIL), the database write and
        # commit, the XADD of the doorbell. One line per setpoint (a few a second at most).
        log.info("setpoint %s", outcome, extra={
            "pool": row.pool, "seq": row.seq, "outcome": outcome,
            "thread_wait_ms": round((began - queued) * 1000, 2), "db_ms": round((committed - began) * 1000, 2),
            "publish_ms": round((time.perf_counter() - committed) * 1000, 2)})
        return SetpointAck.model_validate(
            {**SetpointAck.model_validate(row).model_dump(), "duplicate": receipt.duplicate}
        )

    # One worker-thread hop for the whole write (a sync route with sync dependencies took one per dependency, and
    # each hop waits its turn for a thread and the GIL beside the OCPI intake: the soak's ack p99 was 1.3 s).
    return await run_in_threadpool(store)


@router.post("/api/v1/dso/limits", status_code=201, operation_id="submit_dso_limit")
def submit_dso_limit(body: DsoLimitCreate, factory: FactoryDep, bus: BusDep, _caller: DsoOnly) -> LimitRecorded:
    """Record a congestion limit or ordered reduction for a congestion point; dispatchers recompute at once."""
    with unit_of_work(factory) as session:
        recorded = service.record_dso_limit(session, congestion_point=body.congestion_point, start=body.start,
                                            end=body.end, max_kw=body.max_kw, reduction_kw=body.reduction_kw)
    bus.publish(ActivationEvent(kind=LIMITS_CHANGED))
    return LimitRecorded(id=recorded.id, pools=recorded.pools, kind=recorded.kind.value,
                         power_kw=recorded.power_kw, isps=recorded.isps)


@router.post("/api/v1/dso/curtailments", status_code=201, operation_id="submit_device_curtailment")
def submit_device_curtailment(
    body: CurtailmentCreate, factory: FactoryDep, bus: BusDep, _caller: DsoOnly
) -> LimitRecorded:
    """Record a §14a curtailment (per device, at least 4.2 kW); dispatchers recompute at once."""
    with unit_of_work(factory) as session:
        recorded = service.record_curtailment(session, devices=body.devices, congestion_point=body.congestion_point,
                                              start=body.start, end=body.end,
                                              max_kw_per_device=body.max_kw_per_device)
    bus.publish(ActivationEvent(kind=LIMITS_CHANGED))
    return LimitRecorded(id=recorded.id, pools=recorded.pools, kind=recorded.kind.value,
                         power_kw=recorded.power_kw, isps=recorded.isps)


@router.get("/api/v1/market/afrr/response", operation_id="get_afrr_response")
def get_afrr_response(
    session: SessionDep,
    _caller: MarketOrTrader,
    pool: Annotated[Pool, Query()],
    start: Annotated[UtcDatetime, Query()],
    end: Annotated[UtcDatetime, Query(description="After start, at most 7 days later.")],
) -> list[PoolResponseRead]:
    """Requested and supplied aFRR of a pool per 4-second step in [start, end) (at most 7 days)."""
    rows = service.list_response(session, pool=pool, start=start, end=end)
    return [PoolResponseRead.model_validate(row) for row in rows]
