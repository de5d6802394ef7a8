"""HTTP routes of the portfolio: charging needs, bookings, pools, flexibility, forecasts, topology."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta
from typing import Annotated, Literal
from urllib.parse import quote

import numpy as np
from fastapi import APIRouter, Body, Path, Query, Request
from fastapi.responses import Response

from vpp.api.deps import AdminDep, PartnerDep, SessionDep, SettingsDep, TraderDep
from vpp.api.errors import error_responses
from vpp.api.types import VISIBLE, Name, Pool, UtcDatetime
from vpp.audit import service as audit
from vpp.domain.errors import InvalidInput, NotFound
from vpp.domain.isp import IspHorizon, floor_to_isp
from vpp.domain.pools import PoolId
from vpp.domain.sites import Battery, GridConnection, SiteEquipment, power_series
from vpp.portfolio import needs as needs_service
from vpp.portfolio import sites, topology
from vpp.portfolio.planning import PlanSettings, plan_prices
from vpp.portfolio.schemas import (
    BatterySocWrite,
    BookingRead,
    BookingWrite,
    ChargingNeedRead,
    ChargingNeedWrite,
    CongestionPointWrite,
    MeterReadingWrite,
    PoolFlexibilityRead,
    PoolForecastRead,
    PoolRead,
    SiteEquipmentWrite,
    SiteLoadPoint,
    SiteLocationWrite,
    SitePlanRead,
    SiteSeriesWrite,
    SiteSignalWrite,
    SiteWrite,
    TopologyImportRead,
)
from vpp.portfolio.service import PortfolioService, horizon_of, pool_forecast
from vpp.portfolio.tables import ChargingNeedRow, Site, SiteEquipmentRow, SitePlanRow

router = APIRouter(tags=["portfolio"], responses=error_responses(401, 403))
PoolPath = Annotated[Pool, Path(description="Pool id `<kind>:<key>`, e.g. `site:depot-1`.")]
IdPath = Annotated[Name, Path(max_length=64)]
Window = "at most a week of ISPs, start and end on the 15-minute ISP grid"


def _portfolio(request: Request) -> PortfolioService:
    service: PortfolioService = request.app.state.portfolio
    return service


def _need_read(assessment: needs_service.NeedAssessment | None, row: ChargingNeedRow) -> ChargingNeedRead:
    return ChargingNeedRead(
        session_id=row.session_id, departure=row.departure_at, energy_kwh=row.energy_kwh,
        target_soc_pct=row.target_soc_pct, battery_kwh=row.battery_kwh, discharge_allowed=row.discharge_allowed,
        min_soc_pct=row.min_soc_pct, source=row.source, confidence=row.confidence,
        feasible=assessment.feasible if assessment else None,
        max_deliverable_kwh=assessment.max_deliverable_kwh if assessment else None,
        remaining_kwh=assessment.remaining_kwh if assessment else None,
    )


@router.put("/api/v1/sessions/{session_id}/charging-need", operation_id="put_charging_need",
            responses=error_responses(404, 422))
def put_charging_need(session_id: IdPath, body: ChargingNeedWrite, request: Request, db: SessionDep,
                      _caller: PartnerDep) -> ChargingNeedRead:
    """State a session's need; one that cannot be met is stored and flagged with the most that can be delivered."""
    assessment = needs_service.put_need(db, session_id, needs_service.NeedInput(**body.model_dump()),
                                        now=_portfolio(request).now())
    _portfolio(request).invalidate()
    return _need_read(assessment, assessment.need)


@router.get("/api/v1/sessions/{session_id}/charging-need", operation_id="get_charging_need",
            responses=error_responses(404))
def get_charging_need(session_id: IdPath, db: SessionDep, _caller: PartnerDep) -> ChargingNeedRead:
    """A session's explicit need."""
    return _need_read(None, needs_service.get_need(db, session_id))


@router.put("/api/v1/bookings/{booking_id}", operation_id="put_booking", responses=error_responses(422))
def put_booking(booking_id: IdPath, body: BookingWrite, request: Request, db: SessionDep,
                _caller: PartnerDep) -> BookingRead:
    """Create or replace a car-sharing booking."""
    row = needs_service.put_booking(db, booking_id, needs_service.BookingInput(**body.model_dump()))
    _portfolio(request).invalidate()
    return BookingRead.model_validate(row)


@router.get("/api/v1/portfolio/pools", operation_id="list_pools")
def list_pools(request: Request, db: SessionDep, _trader: TraderDep) -> list[PoolRead]:
    """Every pool with sessions now, and every configured site and congestion point."""
    service = _portfolio(request)
    fleet = service.fleet(db)
    pools = set(fleet.pools())
    pools.update(f"site:{s.id}" for s in topology.list_sites(db))
    pools.update(f"congestion_point:{c.ean}" for c in topology.list_congestion_points(db))
    limits = {**fleet.site_capacity_kw, **fleet.congestion_max_kw}
    for site in topology.list_sites(db):
        if site.capacity_kw is not None:
            limits[f"site:{site.id}"] = site.capacity_kw
    result = []
    for pool in sorted(pools):
        idx = fleet.members(pool)
        result.append(PoolRead(pool=pool, kind=PoolId.parse(pool).kind.value, sessions=int(idx.size),
                               max_kw_now=float(np.sum(fleet.max_kw[idx])), capacity_kw=limits.get(pool)))
    return result


def _window(service: PortfolioService, start: datetime | None, end: datetime | None,
            hours: float = 48.0) -> tuple[datetime, datetime]:
    begin = start or floor_to_isp(service.now())
    return begin, end or begin + timedelta(hours=hours)


def _list(values: np.ndarray) -> list[float]:
    return [round(float(v), 3) for v in values]


@router.get("/api/v1/portfolio/pools/{pool}/flexibility", operation_id="get_pool_flexibility",
            responses={**error_responses(404, 422), 200: {"content": {"application/json": {}, "text/csv": {}}}})
def get_pool_flexibility(
    pool: PoolPath, request: Request, db: SessionDep, _trader: TraderDep,
    start: Annotated[UtcDatetime | None, Query(description=f"First ISP; default: now ({Window})")] = None,
    end: Annotated[UtcDatetime | None, Query(description="End (exclusive); default: start + 48 h")] = None,
    format: Annotated[Literal["json", "csv"], Query()] = "json",
) -> Response:
    """Baseline, power band, energy bounds and forecast availability of a pool per ISP (JSON or CSV)."""
    service = _portfolio(request)
    begin, finish = _window(service, start, end)
    flex = service.flexibility_in(db, pool, begin, finish)
    read = PoolFlexibilityRead(
        pool=pool, start=begin, end=finish, isp_starts=list(flex.isp_starts), baseline_kw=_list(flex.baseline_kw),
        min_kw=_list(flex.min_kw), max_kw=_list(flex.max_kw), max_kw_p10=_list(flex.max_kw_p10),
        energy_min_kwh=_list(flex.energy_min_kwh), energy_max_kwh=_list(flex.energy_max_kwh),
        sessions_now=flex.sessions_now, sessions_forecast=round(flex.sessions_forecast, 2),
    )
    if format == "csv":
        out = io.StringIO()
        writer = csv.writer(out)
        columns = ["baseline_kw", "min_kw", "max_kw", "max_kw_p10", "energy_min_kwh", "energy_max_kwh"]
        writer.writerow(["isp_start_utc", *columns])
        for k, at in enumerate(read.isp_starts):
            writer.writerow([at.isoformat().replace("+00:00", "Z"), *(getattr(read, c)[k] for c in columns)])
        # A header carries latin-1 only: the pool's key may be any text, so the name goes RFC 5987-encoded.
        name = quote(f"{pool}-flexibility.csv", safe="")
        return Response(out.getvalue(), media_type="text/csv",
                        headers={"Content-Disposition": f"attachment; filename*=UTF-8''{name}"})
    return Response(read.model_dump_json(), media_type="application/json")


@router.get("/api/v1/portfolio/pools/{pool}/forecast", operation_id="get_pool_forecast",
            responses=error_responses(404, 422))
def get_pool_forecast(
    pool: PoolPath, request: Request, db: SessionDep, _trader: TraderDep,
    start: Annotated[UtcDatetime | None, Query(description=f"First ISP; default: now ({Window})")] = None,
    end: Annotated[UtcDatetime | None, Query(description="End (exclusive); default: start + 48 h")] = None,
) -> PoolForecastRead:
    """Arrivals and plugged-in cars of a pool per ISP as P10/P50/P90, learned from its history."""
    service = _portfolio(request)
    begin, finish = _window(service, start, end)
    horizon: IspHorizon = horizon_of(begin, finish)
    PoolId.parse(pool)
    # The same forecast the bids use: observed up to now, the cars plugged in now counted until now.
    forecast = pool_forecast(db, service.fleet(db), pool, horizon, service.config)
    zeros = [0.0] * horizon.count
    starts = [ts.to_pydatetime() for ts in horizon.index]
    if forecast is None:
        return PoolForecastRead(pool=pool, isp_starts=starts, arrivals_p10=zeros, arrivals_p50=zeros,
                                arrivals_p90=zeros, plugged_in_p10=zeros, plugged_in_p50=zeros, plugged_in_p90=zeros,
                                energy_per_arrival_kwh=None, days_of_history=0)
    return PoolForecastRead(
        pool=pool, isp_starts=starts, arrivals_p10=_list(forecast.arrivals["p10"]),
        arrivals_p50=_list(forecast.arrivals["p50"]), arrivals_p90=_list(forecast.arrivals["p90"]),
        plugged_in_p10=_list(forecast.plugged["p10"]), plugged_in_p50=_list(forecast.plugged["p50"]),
        plugged_in_p90=_list(forecast.plugged["p90"]), energy_per_arrival_kwh=forecast.energy_per_arrival_kwh,
        days_of_history=forecast.days_of_history,
    )


@router.put("/api/v1/portfolio/congestion-points/{ean}", operation_id="put_congestion_point",
            responses=error_responses(422))
def put_congestion_point(ean: Annotated[Name, Path(max_length=64)], body: CongestionPointWrite, request: Request,
                         db: SessionDep, admin: AdminDep) -> dict[str, str]:
    """Create or update a congestion point."""
    audit.record(db, admin, "portfolio.put_congestion_point", target=ean)
    row = topology.upsert_congestion_point(db, ean=ean, dso=body.dso, name=body.name, max_kw=body.max_kw)
    _portfolio(request).invalidate()
    return {"pool": f"congestion_point:{row.ean}"}


@router.put("/api/v1/portfolio/sites/{site_id}", operation_id="put_site", responses=error_responses(404, 422))
def put_site(site_id: IdPath, body: SiteWrite, request: Request, db: SessionDep, admin: AdminDep) -> dict[str, str]:
    """Create or update a site."""
    audit.record(db, admin, "portfolio.put_site", target=site_id)
    row = topology.upsert_site(db, site_id=site_id, **body.model_dump())
    _portfolio(request).invalidate()
    return {"pool": f"site:{row.id}"}


@router.post("/api/v1/portfolio/sites/{site_id}/locations", operation_id="assign_site_location",
             responses=error_responses(404, 422))
def assign_site_location(site_id: IdPath, body: SiteLocationWrite, request: Request, db: SessionDep,
                         admin: AdminDep) -> dict[str, str]:
    """Put a CPO location on a site."""
    audit.record(db, admin, "portfolio.assign_site_location", target=site_id)
    topology.assign_location(db, site_id=site_id, party=body.party, location_id=body.location_id)
    _portfolio(request).invalidate()
    return {"pool": f"site:{site_id}"}


@router.put("/api/v1/portfolio/sites/{site_id}/load", operation_id="put_site_load",
            responses=error_responses(404, 422))
def put_site_load(site_id: IdPath, body: Annotated[list[SiteLoadPoint], Body(min_length=1, max_length=40_000)],
                  db: SessionDep, admin: AdminDep) -> dict[str, int]:
    """Replace the site's non-EV load over the span given."""
    audit.record(db, admin, "portfolio.put_site_load", target=site_id)
    return {"points": topology.put_site_load(db, site_id, [(p.isp_start, p.load_kw) for p in body])}


@router.post("/api/v1/portfolio/topology/import", operation_id="import_topology",
             responses=error_responses(422))
def import_topology(request: Request, db: SessionDep, admin: AdminDep,
                    body: Annotated[str, Body(media_type="text/csv", pattern=VISIBLE)]) -> TopologyImportRead:
    """Import ``ean,dso,site_id,site_capacity_kw,party,location_id[,category,bidding_zone,cp_max_kw]`` rows."""
    audit.record(db, admin, "portfolio.import_topology")
    if not body.strip():
        raise InvalidInput("empty CSV")
    summary = topology.import_topology_csv(db, body)
    _portfolio(request).invalidate()
    return TopologyImportRead(congestion_points=summary.congestion_points, sites=summary.sites,
                              locations=summary.locations)


# ------------------------------------------------------------------------------------- behind the meter


def _equipment(site_id: str, body: SiteEquipmentWrite) -> SiteEquipment:
    battery = None
    if body.battery is not None:
        b = body.battery
        battery = Battery.from_pct(capacity_kwh=b.capacity_kwh, power_kw=b.power_kw, efficiency=b.efficiency,
                                   min_soc_pct=b.min_soc_pct, max_soc_pct=b.max_soc_pct,
                                   cycle_cost_eur_per_kwh=b.cycle_cost_eur_per_kwh, soc_kwh=b.soc_kwh)
    tariff = sites.tariff_from_spec(body.tariff.model_dump()) if body.tariff is not None else None
    return SiteEquipment(site_id=site_id, pv_kwp=body.pv_kwp, battery=battery, tariff=tariff,
                         connection=GridConnection(import_max_kw=body.import_max_kw, export_max_kw=body.export_max_kw,
                                                   subscription_kva=body.subscription_kva,
                                                   power_factor=body.power_factor))


@router.put("/api/v1/portfolio/sites/{site_id}/equipment", operation_id="put_site_equipment",
            responses=error_responses(404, 422))
def put_site_equipment(site_id: IdPath, body: SiteEquipmentWrite, request: Request, db: SessionDep,
                       admin: AdminDep) -> dict[str, str]:
    """Create or replace what is behind the site's meter: connection limits and kVA subscription, PV, battery,
    tariff. Refused with the reason when a value cannot be (SoC limits outside the battery, overlapping tariff
    periods, a subscription below the building's base load)."""
    audit.record(db, admin, "portfolio.put_site_equipment", target=site_id)
    sites.put_equipment(db, _equipment(site_id, body), body.tariff.model_dump() if body.tariff else None)
    _portfolio(request).invalidate()
    return {"pool": f"site:{site_id}"}


@router.put("/api/v1/portfolio/sites/{site_id}/series/{kind}", operation_id="put_site_series",
            responses=error_responses(404, 422))
def put_site_series(site_id: IdPath, kind: Annotated[Literal["pv", "load", "import", "export"], Path()],
                    body: SiteSeriesWrite, db: SessionDep, admin: AdminDep) -> dict[str, int]:
    """Store metered (or the owner's forecast) PV production, building load or grid import/export, kW per ISP."""
    audit.record(db, admin, "portfolio.put_site_series", target=f"{site_id}/{kind}")
    row = db.get(SiteEquipmentRow, site_id)
    pv_kwp = row.pv_kwp if row is not None and row.pv_kwp > 0 else None
    series = power_series("pv" if kind == "pv" else "load", body.start, body.values, unit=body.unit, end=body.end,
                          pv_kwp=pv_kwp)
    return {"points": sites.put_series(db, site_id, (kind, series))}


@router.put("/api/v1/portfolio/sites/{site_id}/battery-soc", operation_id="put_site_battery_soc",
            responses=error_responses(404, 422))
def put_site_battery_soc(site_id: IdPath, body: BatterySocWrite, db: SessionDep, admin: AdminDep) -> dict[str, str]:
    """The battery's metered state of charge."""
    sites.put_battery_soc(db, site_id, body.soc_kwh, body.at)
    return {"pool": f"site:{site_id}"}


@router.post("/api/v1/portfolio/site-readings", operation_id="post_site_readings",
             responses=error_responses(404, 422))
def post_site_readings(body: Annotated[list[MeterReadingWrite], Body(min_length=1, max_length=10_000)],
                       db: SessionDep, admin: AdminDep) -> dict[str, int]:
    """Many sites' meter readings of an ISP at once (nothing is written when one is wrong)."""
    return {"readings": sites.put_readings(db, [sites.MeterReading(**r.model_dump()) for r in body])}


@router.post("/api/v1/portfolio/signals", operation_id="post_site_signal", responses=error_responses(404, 422))
def post_site_signal(body: SiteSignalWrite, request: Request, db: SessionDep, admin: AdminDep) -> dict[str, int]:
    """A grid-stress signal (stop charging, or discharge too) for a site or a bidding zone, or a site's outage
    (the cars that may discharge feed the house within their floors)."""
    audit.record(db, admin, "portfolio.post_site_signal", target=body.site_id or body.bidding_zone)
    row = sites.add_signal(db, body.kind, body.start, body.end, site_id=body.site_id, bidding_zone=body.bidding_zone,
                           mode=body.mode)
    _portfolio(request).invalidate()
    return {"id": row.id}


def _plan_read(row: SitePlanRow) -> SitePlanRead:
    return SitePlanRead(site_id=row.site_id, planned_at=row.planned_at, start=row.start, battery_kw=row.battery_kw,
                        battery_soc_kwh=row.battery_soc_kwh, import_kw=row.import_kw, export_kw=row.export_kw,
                        cars_kw=row.cars_kw, bill_eur=row.bill_eur, status=row.status)


@router.post("/api/v1/portfolio/sites/{site_id}/plan", operation_id="plan_site", responses=error_responses(404, 422))
def plan_site_route(site_id: IdPath, request: Request, db: SessionDep, settings: SettingsDep,
                    admin: AdminDep) -> SitePlanRead:
    """Plan the site now without its cars (battery and PV; a pool re-plan plans a site with cars plugged in)."""
    at = _portfolio(request).now()
    plan_settings = PlanSettings.from_settings(settings)
    site = db.get(Site, site_id)
    if site is None:
        raise NotFound(f"site {site_id!r} does not exist")
    horizon = sites.site_horizon(at, plan_settings.market_timezone)
    spot, _ = plan_prices(db, f"zone:{site.bidding_zone}", horizon, plan_settings)
    return _plan_read(sites.plan_site_now(db, site_id, at, spot, horizon, plan_settings.market_timezone))


@router.get("/api/v1/portfolio/sites/{site_id}/plan", operation_id="get_site_plan",
            responses=error_responses(404))
def get_site_plan(site_id: IdPath, db: SessionDep, admin: AdminDep) -> SitePlanRead:
    """The site's latest plan."""
    row = db.get(SitePlanRow, site_id)
    if row is None:
        raise NotFound(f"site {site_id!r} has no plan yet")
    return _plan_read(row)
