"""The trader workflow of bids: build, list, inspect, adjust, submit, export, import awards; all audited.

Market documents are checked, written and read through ``documents`` (``vpp.ports.MarketDocuments``), which the
composition root supplies.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from vpp.algorithms import bidding
from vpp.bids import afrr, congestion, dayahead
from vpp.bids.policy import Actor, BidPolicy, BidStatus, Market
from vpp.bids.tables import Bid, BidAudit
from vpp.commitments import service as commitments
from vpp.db import new_id
from vpp.domain.commitments import CommitmentKind
from vpp.domain.errors import Conflict, InvalidInput, NotFound
from vpp.domain.isp import delivery_day_bounds, is_isp_aligned
from vpp.domain.pools import PoolId
from vpp.ports import MarketDocuments, PortfolioView

MAX_PERIOD = timedelta(days=7)


@dataclass(frozen=True)
class BuildRequest:
    """What to build: a market, a pool and a period (a delivery day, or start and end)."""

    market: Market
    pool: str
    delivery_day: date | None = None
    start: datetime | None = None
    end: datetime | None = None
    prices_eur_per_mwh: Sequence[float] | None = None
    method: str = "auto"
    products: Sequence[str] = field(default=("capacity", "energy"))
    margin_eur_per_mwh: float | None = None
    capacity_margin_eur_per_mw_per_h: float | None = None
    price_eur_per_mwh: float | None = None


@dataclass(frozen=True)
class Document:
    """An exported bid document."""

    body: bytes
    media_type: str
    filename: str


def get_or_raise(session: Session, bid_id: str) -> Bid:
    """The bid, or NotFound."""
    bid = session.get(Bid, bid_id)
    if bid is None:
        raise NotFound(f"bid {bid_id!r} does not exist")
    return bid


def list_bids(session: Session, *, market: Market | None = None, pool: str | None = None,
              status: BidStatus | None = None, limit: int = 100) -> list[Bid]:
    """Bids, newest period first."""
    stmt = select(Bid)
    if market is not None:
        stmt = stmt.where(Bid.market == market.value)
    if pool is not None:
        stmt = stmt.where(Bid.pool == pool)
    if status is not None:
        stmt = stmt.where(Bid.status == status.value)
    return list(session.scalars(stmt.order_by(Bid.period_start.desc(), Bid.created_at.desc()).limit(limit)))


def audit_log(session: Session, bid_id: str) -> list[BidAudit]:
    """Every action on the bid, oldest first."""
    get_or_raise(session, bid_id)
    stmt = select(BidAudit).where(BidAudit.bid_id == bid_id).order_by(BidAudit.at, BidAudit.id)
    return list(session.scalars(stmt))


def _audit(session: Session, bid: Bid, action: str, actor: Actor, now: datetime, before: dict[str, Any] | None,
           after: dict[str, Any] | None) -> None:
    session.add(BidAudit(bid_id=bid.id, at=now, action=action, actor_key_id=actor.key_id, actor_name=actor.name,
                         before=before, after=after))


def summary(bid: Bid) -> dict[str, Any]:
    """Key figures of a bid for the audit log and listings."""
    content = bid.content or {}
    figures: dict[str, Any] = {"status": bid.status, "version": bid.version}
    if bid.market == Market.DAY_AHEAD.value:
        figures["mtus"] = len(content.get("mtus", []))
        figures["forecast_energy_kwh"] = round(sum(content.get("forecast_pool_kw", [])) / 4.0, 3)
    elif bid.market == Market.AFRR.value:
        figures["capacity_bids"] = len(content.get("capacity", []))
        figures["energy_bids"] = len(content.get("energy", []))
        figures["energy_mw"] = sum(item["volume_kw"] for item in content.get("energy", [])) / 1000.0
    else:
        figures["isps"] = len(content.get("isps", []))
    return figures


def _period(request: BuildRequest, policy: BidPolicy) -> tuple[datetime, datetime, date | None]:
    if request.market is Market.DAY_AHEAD or (request.start is None and request.end is None):
        if request.delivery_day is None:
            raise InvalidInput("give delivery_day (day-ahead) or start and end")
        if request.start is not None or request.end is not None:
            raise InvalidInput("give either delivery_day or start and end, not both")
        start, end = delivery_day_bounds(request.delivery_day, policy.market_timezone)
        return start, end, request.delivery_day
    if request.start is None or request.end is None:
        raise InvalidInput("give both start and end")
    if request.delivery_day is not None:
        raise InvalidInput("give either delivery_day or start and end, not both")
    start, end = request.start, request.end
    if start.tzinfo is None or end.tzinfo is None:
        raise InvalidInput("start and end must carry a UTC offset")
    if start >= end:
        raise InvalidInput(f"start {start.isoformat()} is not before end {end.isoformat()}")
    if not (is_isp_aligned(start) and is_isp_aligned(end)):
        raise InvalidInput("start and end must lie on the 15-minute ISP grid")
    if end - start > MAX_PERIOD:
        raise InvalidInput(f"a bid period may span at most {MAX_PERIOD.days} days")
    return start, end, None


def _gate(market: str, content: dict[str, Any], period_start: datetime, policy: BidPolicy) -> datetime:
    if market == Market.DAY_AHEAD.value:
        return policy.dayahead_gate(period_start)
    if market == Market.AFRR.value:
        gates = [policy.afrr_capacity_gate(dayahead.parse_time(c["product_start"], "product_start"))
                 for c in content.get("capacity", [])]
        gates += [policy.afrr_energy_gate(dayahead.parse_time(e["mtu_start"], "mtu_start"))
                  for e in content.get("energy", [])]
        return min(gates) if gates else policy.afrr_energy_gate(period_start)
    return period_start


def _product(request: BuildRequest) -> str:
    if request.market is Market.DAY_AHEAD:
        return "curve"
    if request.market is Market.CONGESTION:
        return "offer"
    unknown = set(request.products) - {"capacity", "energy"}
    if unknown or not request.products:
        raise InvalidInput(f"aFRR products must be a non-empty subset of ['capacity', 'energy'], got "
                           f"{list(request.products)}")
    return "+".join(sorted(set(request.products)))


def build(session: Session, portfolio: PortfolioView, policy: BidPolicy, request: BuildRequest, *,
          documents: MarketDocuments, actor: Actor, now: datetime, keep_edited: bool = False) -> Bid:
    """Build (or rebuild, same market/pool/period) a draft; a submitted bid is not rebuilt (Conflict).

    ``keep_edited`` (the beat) leaves a draft a trader has adjusted as it is.
    """
    PoolId.parse(request.pool)
    start, end, day = _period(request, policy)
    product = _product(request)
    if request.method not in bidding.METHODS:
        raise InvalidInput(f"unknown curve method {request.method!r}; one of {list(bidding.METHODS)}")
    if request.pool not in portfolio.pools():
        raise NotFound(f"pool {request.pool!r} does not exist")
    existing = session.scalars(select(Bid).where(
        Bid.market == request.market.value, Bid.product == product, Bid.pool == request.pool,
        Bid.period_start == start, Bid.period_end == end)).first()
    if existing is not None and existing.status != BidStatus.DRAFT.value:
        raise Conflict(f"bid {existing.id} for this pool and period is already {existing.status}; it is not rebuilt")
    if existing is not None and keep_edited and existing.edited:
        return existing
    bid = existing or Bid(id=new_id(), market=request.market.value, product=product, pool=request.pool,
                          period_start=start, period_end=end, delivery_day=day, status=BidStatus.DRAFT.value,
                          version=0, edited=False, created_by=actor.name, created_at=now)
    margin = policy.afrr_margin_eur_per_mwh if request.margin_eur_per_mwh is None else request.margin_eur_per_mwh
    capacity_margin = (policy.afrr_capacity_margin_eur_per_mw_per_h if request.capacity_margin_eur_per_mw_per_h
                       is None else request.capacity_margin_eur_per_mw_per_h)
    if request.market is Market.DAY_AHEAD:
        assert day is not None
        held = commitments.list_for(session, [request.pool], start - timedelta(days=1), start,
                                    kinds=[CommitmentKind.DAY_AHEAD_SCHEDULE])
        content = dayahead.build_content(portfolio, policy, pool=request.pool, day=day,
                                         prices=request.prices_eur_per_mwh, method=request.method, now=now,
                                         committed_before=[c.isp_start for c in held])
        dayahead.curve_order(content, policy, documents.dayahead)
    elif request.market is Market.AFRR:
        content = afrr.build_content(session, portfolio, policy, pool=request.pool, bid_key=bid.id[:12],
                                     start=start, end=end, prices=request.prices_eur_per_mwh,
                                     products=request.products, margin_eur_per_mwh=margin,
                                     capacity_margin_eur_per_mw_per_h=capacity_margin)
        afrr.validate(content, policy)
    else:
        content = congestion.build_content(portfolio, policy, pool=request.pool, start=start, end=end,
                                           price_eur_per_mwh=request.price_eur_per_mwh)
    before = summary(bid) if existing is not None else None
    bid.content = content
    bid.params = {"method": request.method, "products": list(request.products), "margin_eur_per_mwh": margin,
                  "capacity_margin_eur_per_mw_per_h": capacity_margin,
                  "prices_given": request.prices_eur_per_mwh is not None,
                  "reliability": (dayahead.DAYAHEAD_RELIABILITY if request.market is Market.DAY_AHEAD
                                  else policy.reliability)}
    bid.gate_closure_at = _gate(bid.market, content, start, policy)
    bid.version += 1
    bid.edited = False
    bid.updated_at = now
    if existing is None:
        session.add(bid)
    session.flush()
    _audit(session, bid, "rebuild" if existing is not None else "build", actor, now, before, summary(bid))
    session.flush()
    return bid


def _require_draft(bid: Bid, what: str) -> None:
    if bid.status != BidStatus.DRAFT.value:
        raise Conflict(f"bid {bid.id} is {bid.status}; only a draft can be {what}")


def update(session: Session, policy: BidPolicy, bid_id: str, changes: dict[str, Any], *,
           documents: MarketDocuments, actor: Actor, now: datetime) -> Bid:
    """Adjust volumes and prices of a draft; the result is re-validated and refused with the reason if invalid."""
    bid = get_or_raise(session, bid_id)
    _require_draft(bid, "changed")
    expected = changes.get("expected_version")
    if expected is not None and expected != bid.version:
        raise Conflict(f"bid {bid.id} is at version {bid.version}, not {expected}; reload it and try again")
    content = bid.content
    if bid.market == Market.DAY_AHEAD.value:
        if not changes.get("mtus"):
            raise InvalidInput("a day-ahead change lists mtus with their points")
        content, before, after = dayahead.apply_patch(content, changes["mtus"])
        dayahead.curve_order(content, policy, documents.dayahead)
    elif bid.market == Market.AFRR.value:
        if not changes.get("capacity") and not changes.get("energy"):
            raise InvalidInput("an aFRR change lists capacity and/or energy bids")
        content, before, after = afrr.apply_patch(content, changes.get("capacity") or [], changes.get("energy") or [])
        afrr.validate(content, policy)
    else:
        content, before, after = _patch_congestion(content, changes)
        congestion.validate(content)
    bid.content = content
    bid.version += 1
    bid.edited = True
    bid.gate_closure_at = _gate(bid.market, content, bid.period_start, policy)
    bid.updated_at = now
    _audit(session, bid, "update", actor, now, before, after)
    session.flush()
    return bid


def _patch_congestion(content: dict[str, Any], changes: dict[str, Any]
                      ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    isps = {item["isp_start"]: dict(item) for item in content["isps"]}
    before: dict[str, Any] = {}
    after: dict[str, Any] = {}
    for change in changes.get("isps") or []:
        key = dayahead.iso(dayahead.parse_time(str(change.get("isp_start")), "isp_start"))
        if key not in isps:
            raise InvalidInput(f"ISP {key} is not part of this draft")
        before[key] = isps[key]["reduction_kw"]
        isps[key]["reduction_kw"] = float(change["reduction_kw"])
        after[key] = isps[key]["reduction_kw"]
    price = content["price_eur_per_mwh"]
    if changes.get("price_eur_per_mwh") is not None:
        before["price_eur_per_mwh"], price = price, float(changes["price_eur_per_mwh"])
        after["price_eur_per_mwh"] = price
    if not after:
        raise InvalidInput("a congestion change lists isps and/or price_eur_per_mwh")
    return {**content, "isps": list(isps.values()), "price_eur_per_mwh": price}, before, after


def _validate(bid: Bid, policy: BidPolicy, documents: MarketDocuments) -> None:
    if bid.market == Market.DAY_AHEAD.value:
        dayahead.curve_order(bid.content, policy, documents.dayahead)
    elif bid.market == Market.AFRR.value:
        afrr.validate(bid.content, policy)
        if not bid.content.get("capacity") and not bid.content.get("energy"):
            raise InvalidInput("the draft has no aFRR bid (the headroom is below the minimum bid size)")
    else:
        congestion.validate(bid.content)


def submit(session: Session, policy: BidPolicy, bid_id: str, *, documents: MarketDocuments, actor: Actor,
           now: datetime) -> Bid:
    """Submit a valid draft before the gate closure of its first MTU; after it, Conflict with the reason."""
    bid = get_or_raise(session, bid_id)
    _require_draft(bid, "submitted")
    if now >= bid.gate_closure_at:
        raise Conflict(
            f"gate closed at {dayahead.iso(bid.gate_closure_at)} for the first MTU of bid {bid.id}; "
            f"it is now {dayahead.iso(now)}",
            details={"gate_closure_at": dayahead.iso(bid.gate_closure_at)},
        )
    _validate(bid, policy, documents)
    before = summary(bid)
    bid.status = BidStatus.SUBMITTED.value
    bid.submitted_at = now
    bid.updated_at = now
    _audit(session, bid, "submit", actor, now, before, summary(bid))
    session.flush()
    return bid


def export(session: Session, policy: BidPolicy, bid_id: str, fmt: str, *, documents: MarketDocuments, actor: Actor,
           now: datetime) -> Document:
    """The bid as an exchange document (day-ahead: json, csv; aFRR: xml; congestion: json draft)."""
    bid = get_or_raise(session, bid_id)
    _validate(bid, policy, documents)
    allowed = {Market.DAY_AHEAD.value: ("json", "csv"), Market.AFRR.value: ("xml",),
               Market.CONGESTION.value: ("json",)}[bid.market]
    if fmt not in allowed:
        raise InvalidInput(f"format {fmt!r} is not available for {bid.market} bids; use one of {list(allowed)}")
    name = f"bid-{bid.id}-v{bid.version}.{fmt}"
    if bid.market == Market.DAY_AHEAD.value:
        order = dayahead.curve_order(bid.content, policy, documents.dayahead, comment=f"bid {bid.id} v{bid.version}")
        text = documents.dayahead.write_order(order, fmt)
        document = Document(text.encode(), "application/json" if fmt == "json" else "text/csv", name)
    elif bid.market == Market.AFRR.value:
        body = afrr.document(bid.content, policy, documents.afrr, document_id=f"{bid.id}-v{bid.version}",
                             revision=bid.version, created_at=now)
        document = Document(body, "application/xml", name)
    else:
        document = Document(json.dumps({"pool": bid.pool, **bid.content}).encode(), "application/json", name)
    _audit(session, bid, "export", actor, now, None, {"format": fmt, "version": bid.version})
    session.flush()
    return document


def import_awards(session: Session, policy: BidPolicy, bid_id: str, fmt: str, text: str, *,
                  documents: MarketDocuments, actor: Actor, now: datetime) -> tuple[Bid, int]:
    """Record awards of a submitted bid as commitments of its pool (idempotent); returns the bid and the count."""
    bid = get_or_raise(session, bid_id)
    if bid.status not in (BidStatus.SUBMITTED.value, BidStatus.AWARDED.value):
        raise Conflict(f"bid {bid.id} is {bid.status}; awards are imported for submitted bids")
    if fmt not in ("json", "csv"):
        raise InvalidInput(f"award format {fmt!r} is unknown; one of ['json', 'csv']")
    reference = f"bid:{bid.id}"
    if bid.market == Market.DAY_AHEAD.value:
        results = documents.dayahead.read_results(text, fmt)
        values = dayahead.commitments_from_results(bid.content, results, pool=bid.pool, reference=reference)
        content = {**bid.content, "awards": [
            {"mtu_start": dayahead.iso(r.mtu_start_utc), "price_eur_per_mwh": r.price_eur_per_mwh,
             "accepted_kw": r.accepted_demand_kw} for r in results]}
    elif bid.market == Market.AFRR.value:
        content, values = afrr.apply_awards(bid.content, afrr.parse_awards(text, fmt), pool=bid.pool,
                                            reference=reference)
    else:
        raise Conflict("congestion orders arrive over UFTP (the congestion service records them)")
    count = commitments.record(session, values)
    before = summary(bid)
    bid.content = content
    bid.status = BidStatus.AWARDED.value
    bid.awarded_at = now
    bid.updated_at = now
    _audit(session, bid, "import_awards", actor, now, before, {**summary(bid), "commitments": count})
    session.flush()
    return bid, count
