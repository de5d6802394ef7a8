"""HTTP routes of settlement: day summaries, ISP/activation/order/session reports (JSON or CSV), the plot."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response
from starlette.convertors import StringConvertor, register_url_convertor

from vpp.api.deps import DsoDep, SessionDep, SettingsDep, TraderDep
from vpp.api.errors import error_responses
from vpp.api.types import IsoDate, Pool, Text
from vpp.congestion.flexsource import flex_source_for
from vpp.db import utcnow
from vpp.settlement import counterparty, reports, service
from vpp.settlement.schemas import (
    CounterpartySettlementWrite,
    CounterpartyVerdictRead,
    SettlementRunWrite,
    SettlementSummaryRead,
)
from vpp.settlement.values import SettlementParams

router = APIRouter(prefix="/api/v1/settlement", tags=["settlement"], responses=error_responses(401, 403, 404, 422))
_TABLE: dict[int | str, dict[str, Any]] = {200: {"content": {"application/json": {}, "text/csv": {}}}}
Kind = Literal["isps", "activations", "orders", "sessions"]


class _KindConvertor(StringConvertor):
    regex = "isps|activations|orders|sessions"


register_url_convertor("settlement_kind", _KindConvertor())
Day = Annotated[IsoDate, Path(description="The local delivery day (market time zone).")]
PoolFilter = Annotated[Pool | None, Query(description="one pool; default: every settled pool")]


def _read(item: dict[str, object]) -> SettlementSummaryRead:
    keys = ("run_id", "pool", "day", "status", "computed_at", "baseline_method")
    return SettlementSummaryRead(**{k: str(item[k]) for k in keys}, summary=item)


@router.get("/days/{day}", operation_id="get_settlement_day")
def get_day(day: Day, db: SessionDep, _trader: TraderDep, pool: PoolFilter = None) -> list[SettlementSummaryRead]:
    """The settled pools of a day (or one pool) with their totals."""
    return [_read(item) for item in reports.day_summary(db, day, pool)]


@router.post("/days/{day}/run", operation_id="run_settlement_day")
def run_day(day: Day, body: SettlementRunWrite, db: SessionDep, settings: SettingsDep,
            _trader: TraderDep) -> list[SettlementSummaryRead]:
    """(Re)compute a closed day for one pool or every pool with data; a recompute replaces the stored result."""
    params = SettlementParams(**body.model_dump(exclude={"pool"}))
    runs = service.settle_day(db, day=day, pool=body.pool, time_zone=settings.market_timezone, params=params)
    return [_read(reports.summary(run)) for run in runs]


@router.get("/days/{day}/plot.png", operation_id="get_settlement_plot",
            responses={200: {"content": {"image/png": {}}}})
def get_plot(day: Day, db: SessionDep, settings: SettingsDep, _trader: TraderDep,
             pool: Annotated[Pool, Query(description="the pool to plot")]) -> Response:
    """Requested vs delivered aFRR of a settled pool's day, per 4-second step."""
    service.get_run(db, day, pool)
    # Imported here, after the 404 of a day not settled: matplotlib's pyplot takes a second or more to import,
    # which every process that builds the app (simulations' service and intake processes) would otherwise pay for
    # one rarely asked plot; an API process imports it in its warm-up (vpp.api.main), off the request path.
    from vpp.settlement import plots

    png = plots.requested_vs_delivered_png(db, day=day, pool=pool, time_zone=settings.market_timezone)
    return Response(png, media_type="image/png")


# The kind convertor keeps `GET /days/{day}/run` from matching here: it answers 405 (POST only), not 422.
@router.get("/days/{day}/{kind:settlement_kind}", operation_id="get_settlement_rows", responses=_TABLE)
def get_rows(day: Day, kind: Kind, db: SessionDep, _trader: TraderDep, pool: PoolFilter = None,
             format: Literal["json", "csv"] = "json") -> Response:
    """One report of a settled day: per ISP, activation, order ISP or session."""
    records = reports.rows(db, kind, day, pool)
    if format == "csv":
        name = f"settlement-{day.isoformat()}-{kind}.csv"
        return Response(reports.to_csv(kind, records), media_type="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})
    return Response(reports.to_json(records), media_type="application/json")


@router.post("/orders/{order_reference}/counterparty", operation_id="check_counterparty_settlement")
def check_counterparty(order_reference: Annotated[Text, Path()], body: CounterpartySettlementWrite, db: SessionDep,
                       _dso: DsoDep) -> CounterpartyVerdictRead:
    """Compare a DSO's settlement of one of our orders with ours; an unknown order is refused (404)."""
    verdict = counterparty.check(db, flex_source_for(db), order_reference, body, now=utcnow())
    return CounterpartyVerdictRead(order_reference=verdict.order_reference, accepted=verdict.accepted,
                                   reason=verdict.reason, differing_isps=list(verdict.differing_isps))
