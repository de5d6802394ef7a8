"""HTTP routes of bids (trader) and of the commitments they create."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response

from vpp.api.deps import Limit, SessionDep, SettingsDep, TraderDep
from vpp.api.errors import error_responses
from vpp.api.types import Pool, UtcDatetime
from vpp.apikeys.service import Principal
from vpp.bids import service
from vpp.bids.policy import Actor, BidPolicy, BidStatus, Market
from vpp.bids.schemas import (
    AwardImport,
    AwardImported,
    BidAuditRead,
    BidBuild,
    BidRead,
    BidSummaryRead,
    BidUpdate,
    CommitmentRead,
)
from vpp.commitments import service as commitments
from vpp.domain.errors import InvalidInput, ServiceUnavailable
from vpp.domain.pools import PoolId
from vpp.ports import Clock, MarketDocuments, PortfolioView, SystemClock

router = APIRouter(prefix="/api/v1/bids", tags=["bids"], responses=error_responses(401, 403))
commitments_router = APIRouter(prefix="/api/v1/commitments", tags=["commitments"],
                               responses=error_responses(401, 403, 422))


def get_portfolio_view(request: Request) -> PortfolioView:
    """The portfolio the composition root installed on ``app.state.portfolio_view``."""
    view: PortfolioView | None = getattr(request.app.state, "portfolio_view", None)
    if view is None:
        raise ServiceUnavailable("no portfolio view is configured: bids cannot be built")
    return view


def get_market_documents(request: Request) -> MarketDocuments:
    """The market document formats the composition root installed on ``app.state.market_documents``."""
    documents: MarketDocuments | None = getattr(request.app.state, "market_documents", None)
    if documents is None:
        raise ServiceUnavailable("no market document formats are configured: bids cannot be checked or written")
    return documents


def get_clock(request: Request) -> Clock:
    """The clock of the app (``app.state.clock`` when a simulation installs one)."""
    clock: Clock | None = getattr(request.app.state, "clock", None)
    return clock or SystemClock()


def get_policy(settings: SettingsDep) -> BidPolicy:
    """The bid policy from the settings."""
    return BidPolicy.from_settings(settings)


PortfolioDep = Annotated[PortfolioView, Depends(get_portfolio_view)]
ClockDep = Annotated[Clock, Depends(get_clock)]
PolicyDep = Annotated[BidPolicy, Depends(get_policy)]
DocumentsDep = Annotated[MarketDocuments, Depends(get_market_documents)]


def _actor(principal: Principal) -> Actor:
    return Actor(principal.key_id, principal.name)


@router.post("/{market}/build", status_code=201, operation_id="build_bid",
             responses=error_responses(404, 409, 422, 503))
def build_bid(market: Market, body: BidBuild, session: SessionDep, portfolio: PortfolioDep, policy: PolicyDep,
              documents: DocumentsDep, clock: ClockDep, trader: TraderDep) -> BidRead:
    """Build (or rebuild) the draft of a pool for a period; the same pool and period update the same draft."""
    request = service.BuildRequest(
        market=market, pool=body.pool, delivery_day=body.delivery_day, start=body.start, end=body.end,
        prices_eur_per_mwh=body.prices_eur_per_mwh, method=body.method, products=tuple(body.products),
        margin_eur_per_mwh=body.margin_eur_per_mwh,
        capacity_margin_eur_per_mw_per_h=body.capacity_margin_eur_per_mw_per_h,
        price_eur_per_mwh=body.price_eur_per_mwh)
    bid = service.build(session, portfolio, policy, request, documents=documents, actor=_actor(trader),
                        now=clock.now())
    return BidRead.model_validate(bid)


@router.get("", operation_id="list_bids", responses=error_responses(422))
def list_bids(session: SessionDep, _trader: TraderDep, market: Market | None = None,
              pool: Annotated[Pool | None, Query()] = None, status: BidStatus | None = None, limit: Limit = 100
              ) -> list[BidSummaryRead]:
    """Bids, newest period first, without their content."""
    rows = service.list_bids(session, market=market, pool=pool, status=status, limit=limit)
    return [BidSummaryRead.model_validate(row) for row in rows]


@router.get("/{bid_id}", operation_id="get_bid", responses=error_responses(404))
def get_bid(bid_id: str, session: SessionDep, _trader: TraderDep) -> BidRead:
    """One bid with its curves or bids."""
    return BidRead.model_validate(service.get_or_raise(session, bid_id))


@router.patch("/{bid_id}", operation_id="update_bid", responses=error_responses(404, 409, 422))
def update_bid(bid_id: str, body: BidUpdate, session: SessionDep, policy: PolicyDep, documents: DocumentsDep,
               clock: ClockDep, trader: TraderDep) -> BidRead:
    """Adjust volumes and prices of a draft; an invalid result is refused with the reason."""
    changes = body.model_dump(mode="json", exclude_none=True)
    bid = service.update(session, policy, bid_id, changes, documents=documents, actor=_actor(trader),
                         now=clock.now())
    return BidRead.model_validate(bid)


@router.post("/{bid_id}/submit", operation_id="submit_bid", responses=error_responses(404, 409, 422))
def submit_bid(bid_id: str, session: SessionDep, policy: PolicyDep, documents: DocumentsDep, clock: ClockDep,
               trader: TraderDep) -> BidRead:
    """Submit a draft before the gate closure of its first MTU (409 with the reason after it)."""
    return BidRead.model_validate(service.submit(session, policy, bid_id, documents=documents, actor=_actor(trader),
                                                 now=clock.now()))


@router.get("/{bid_id}/document", operation_id="export_bid", responses=error_responses(404, 422))
def export_bid(bid_id: str, session: SessionDep, policy: PolicyDep, documents: DocumentsDep, clock: ClockDep,
               trader: TraderDep, format: Literal["json", "csv", "xml"] = "json") -> Response:
    """The bid as an exchange document: day-ahead curve order (json, csv), aFRR ReserveBid (xml)."""
    document = service.export(session, policy, bid_id, format, documents=documents, actor=_actor(trader),
                              now=clock.now())
    return Response(document.body, media_type=document.media_type,
                    headers={"Content-Disposition": f'attachment; filename="{document.filename}"'})


@router.post("/{bid_id}/awards", operation_id="import_bid_awards", responses=error_responses(404, 409, 422))
def import_awards(bid_id: str, body: AwardImport, session: SessionDep, policy: PolicyDep, documents: DocumentsDep,
                  clock: ClockDep, trader: TraderDep) -> AwardImported:
    """Import clearing results (day-ahead) or awards (aFRR) into the pool's commitments."""
    bid, count = service.import_awards(session, policy, bid_id, body.format, body.content, documents=documents,
                                       actor=_actor(trader), now=clock.now())
    return AwardImported(bid=BidRead.model_validate(bid), commitments=count)


@router.get("/{bid_id}/audit", operation_id="get_bid_audit", responses=error_responses(404))
def get_audit(bid_id: str, session: SessionDep, _trader: TraderDep) -> list[BidAuditRead]:
    """Who did what to the bid, and when, with the values before and after."""
    return [BidAuditRead.model_validate(row) for row in service.audit_log(session, bid_id)]


@commitments_router.get("", operation_id="list_commitments")
def list_commitments(session: SessionDep, _trader: TraderDep, pool: Annotated[Pool, Query()],
                     start: Annotated[UtcDatetime, Query()],
                     end: Annotated[UtcDatetime, Query(description="After start.")]) -> list[CommitmentRead]:
    """The commitments of a pool for ISPs starting in [start, end)."""
    PoolId.parse(pool)
    if start.tzinfo is None or end.tzinfo is None:
        raise InvalidInput("start and end must carry a UTC offset")
    if start >= end:
        raise InvalidInput(f"start {start.isoformat()} is not before end {end.isoformat()}")
    return [CommitmentRead(pool=c.pool, isp_start=c.isp_start, kind=c.kind.value, power_kw=c.power_kw,
                           price_eur_per_mwh=c.price_eur_per_mwh, source=c.source, reference=c.reference)
            for c in commitments.list_for(session, [pool], start, end)]
