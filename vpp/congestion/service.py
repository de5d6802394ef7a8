"""Use cases of the congestion market (AGR role): offer what the portfolio can do, take orders, check settlements."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from vpp.algorithms.settlement import FlexOrderSettlement, compare_flex_settlement, settle_flex_order
from vpp.commitments import service as commitments
from vpp.congestion import participants
from vpp.congestion.tables import CongestionOffer, CongestionOrder, CongestionPrognosis
from vpp.congestion.values import (
    FlexOrderIn,
    FlexRequestIn,
    OfferPlan,
    OrderSettlementIn,
    SettlementVerdict,
    congestion_pool,
    day_isp_starts,
)
from vpp.domain.commitments import CommitmentKind, CommitmentValue
from vpp.domain.errors import InvalidInput
from vpp.ports import CongestionFlexSource

ISP_HOURS = 0.25
SOURCE = "uftp"
# Our figures and the DSO's must agree to 1 kW per ISP and 0.1 cent; they travel as whole watts and 4 decimals.
SETTLEMENT_TOLERANCE = 1e-3


def plan_offer(
    session: Session,
    source: CongestionFlexSource,
    request: FlexRequestIn,
    *,
    reliability: float,
    price_eur_per_mwh: float,
    price_eur_per_mw: float,
) -> OfferPlan:
    """What to offer for the requested ISPs: the available reduction, at most the largest reduction asked for.

    Raises InvalidInput with the rejection reason when the request cannot be answered at all.
    """
    if not participants.manages(session, request.dso_domain, request.congestion_point):
        raise InvalidInput(
            f"Unknown CongestionPoint: {request.congestion_point} is not managed by {request.dso_domain}"
        )
    if not request.requested:
        raise InvalidInput("FlexRequest has no ISP with disposition Requested")
    starts = day_isp_starts(request.period, request.time_zone)
    for item in request.requested:
        if not 1 <= item.isp <= len(starts):
            raise InvalidInput(f"ISP {item.isp} is outside 1..{len(starts)} of {request.period.isoformat()}")
    flexibility = source.flexibility(congestion_pool(request.congestion_point), starts, reliability)
    if len(flexibility.prognosis_kw) != len(starts) or len(flexibility.reduction_kw) != len(starts):
        raise InvalidInput("the flexibility source answered for a different number of ISPs")
    offered: list[tuple[int, float]] = []
    for item in sorted(request.requested, key=lambda r: r.isp):
        wanted_kw = -min(item.min_kw, item.max_kw)
        # Only reductions: a band that asks for more consumption is not ours to offer here.
        if wanted_kw <= 0:
            continue
        available_kw = max(flexibility.reduction_kw[item.isp - 1], 0.0)
        reduction_kw = round(min(available_kw, wanted_kw), 3)
        if reduction_kw > 0:
            offered.append((item.isp, reduction_kw))
    total_mw = sum(kw for _, kw in offered) / 1000.0
    price = total_mw * ISP_HOURS * price_eur_per_mwh + total_mw * price_eur_per_mw
    return OfferPlan(
        prognosis_kw=tuple(float(kw) for kw in flexibility.prognosis_kw),
        offered_kw=tuple(offered),
        price_eur=Decimal(str(price)).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP),
    )


def next_prognosis_revision(session: Session, congestion_point: str, period: date) -> int:
    """The revision number a new D-Prognosis for this point and day gets."""
    current = session.scalar(
        select(func.max(CongestionPrognosis.revision)).where(
            CongestionPrognosis.congestion_point == congestion_point, CongestionPrognosis.period == period
        )
    )
    return int(current or 0) + 1


def latest_prognosis(session: Session, congestion_point: str, period: date) -> CongestionPrognosis | None:
    """The newest D-Prognosis we sent for this point and day."""
    return session.scalar(
        select(CongestionPrognosis)
        .where(CongestionPrognosis.congestion_point == congestion_point, CongestionPrognosis.period == period)
        .order_by(CongestionPrognosis.revision.desc())
        .limit(1)
    )


def record_prognosis(
    session: Session,
    *,
    message_id: str,
    dso_domain: str,
    congestion_point: str,
    period: date,
    revision: int,
    power_kw: Sequence[float],
) -> CongestionPrognosis:
    """Keep a D-Prognosis we send: the baseline our settlement check uses."""
    row = CongestionPrognosis(
        message_id=message_id,
        dso_domain=dso_domain,
        congestion_point=congestion_point,
        period=period,
        revision=revision,
        power_kw=[float(kw) for kw in power_kw],
    )
    session.add(row)
    session.flush()
    return row


def record_offer(
    session: Session,
    *,
    message_id: str,
    conversation_id: str,
    request: FlexRequestIn,
    plan: OfferPlan,
    option_reference: str,
    d_prognosis_message_id: str | None,
) -> CongestionOffer:
    """Keep an offer we send (reductions as negative power per ISP), to check the order against it."""
    row = CongestionOffer(
        message_id=message_id,
        flex_request_message_id=request.message_id,
        conversation_id=conversation_id,
        dso_domain=request.dso_domain,
        congestion_point=request.congestion_point,
        period=request.period,
        option_reference=option_reference,
        price_eur=plan.price_eur,
        min_activation_factor=Decimal("1.00"),
        d_prognosis_message_id=d_prognosis_message_id,
        isps=[{"isp": isp, "power_kw": -kw} for isp, kw in plan.offered_kw],
        expires_at=request.expires_at,
    )
    session.add(row)
    session.flush()
    return row


def _differing_isps(offered: Sequence[dict[str, float]], ordered: Sequence[tuple[int, float]]) -> list[int]:
    theirs = dict(ordered)
    ours = {int(item["isp"]): float(item["power_kw"]) for item in offered}
    differing = set(theirs) ^ set(ours)
    differing |= {isp for isp in set(theirs) & set(ours) if abs(theirs[isp] - ours[isp]) > 0.001}
    return sorted(differing)


def accept_order(session: Session, order: FlexOrderIn, now: datetime) -> CongestionOrder:
    """Check a FlexOrder against the offer it names and record flex_order commitments per ISP.

    Raises InvalidInput with the rejection reason; nothing is written then.
    """
    if not order.flex_offer_message_id:
        raise InvalidInput("Unsolicited FlexOrders are not accepted: FlexOfferMessageID is missing")
    offer = session.scalar(select(CongestionOffer).where(CongestionOffer.message_id == order.flex_offer_message_id))
    if offer is None or offer.dso_domain != order.dso_domain:
        raise InvalidInput(
            f"Unknown Reference: no FlexOffer {order.flex_offer_message_id} was sent to {order.dso_domain}"
        )
    if order.option_reference not in (None, offer.option_reference):
        raise InvalidInput(f"Unknown OptionReference {order.option_reference}; offered {offer.option_reference}")
    if (order.congestion_point, order.period) != (offer.congestion_point, offer.period):
        raise InvalidInput("Congestion point or period differ from the FlexOffer")
    if offer.status != "offered":
        raise InvalidInput(f"FlexOffer {offer.message_id} is already {offer.status}")
    if offer.expires_at < now:
        raise InvalidInput(f"FlexOffer {offer.message_id} expired at {offer.expires_at.isoformat()}")
    if not offer.min_activation_factor <= order.activation_factor <= 1:
        raise InvalidInput(f"ActivationFactor {order.activation_factor} is outside {offer.min_activation_factor}..1")
    numbers = [isp for isp, _ in order.isps]
    if len(set(numbers)) != len(numbers):
        raise InvalidInput("an ISP is addressed more than once")
    # UFTP: the ordered ISP list equals the offered one; the activation factor scales it.
    differing = _differing_isps(offer.isps, order.isps)
    if differing:
        raise InvalidInput(f"ISPs differ from the FlexOffer: {', '.join(str(i) for i in differing)}")
    if abs(order.price_eur - offer.price_eur * order.activation_factor) > Decimal("0.0001"):
        raise InvalidInput(f"Price {order.price_eur} differs from the offered {offer.price_eur}")
    taken = session.scalar(
        select(CongestionOrder.id).where(
            CongestionOrder.dso_domain == order.dso_domain, CongestionOrder.order_reference == order.order_reference
        )
    )
    if taken is not None:
        raise InvalidInput(f"OrderReference {order.order_reference} was already used")
    starts = day_isp_starts(order.period, order.time_zone)
    ordered_kw = [(isp, -power_kw * float(order.activation_factor)) for isp, power_kw in sorted(order.isps)]
    total_mwh = sum(kw for _, kw in ordered_kw) / 1000.0 * ISP_HOURS
    price_eur_per_mwh = float(order.price_eur) / total_mwh if total_mwh > 0 else None
    pool = congestion_pool(order.congestion_point)
    commitments.record(
        session,
        [
            CommitmentValue(
                pool=pool,
                isp_start=starts[isp - 1],
                kind=CommitmentKind.FLEX_ORDER,
                power_kw=kw,
                source=SOURCE,
                reference=f"{order.dso_domain}/{order.order_reference}"[:120],
                price_eur_per_mwh=price_eur_per_mwh,
            )
            for isp, kw in ordered_kw
        ],
    )
    offer.status = "ordered"
    row = CongestionOrder(
        message_id=order.message_id,
        order_reference=order.order_reference,
        offer_id=offer.id,
        dso_domain=order.dso_domain,
        congestion_point=order.congestion_point,
        period=order.period,
        price_eur=order.price_eur,
        activation_factor=order.activation_factor,
        isps=[{"isp": isp, "isp_start": starts[isp - 1].isoformat(), "reduction_kw": kw} for isp, kw in ordered_kw],
    )
    session.add(row)
    session.flush()
    return row


def check_settlement(
    session: Session,
    source: CongestionFlexSource,
    *,
    dso_domain: str,
    settlement_message_id: str,
    item: OrderSettlementIn,
    now: datetime,
) -> SettlementVerdict:
    """Recompute one order's settlement from our D-Prognosis and metered load and compare with the DSO's."""
    order = session.scalar(
        select(CongestionOrder).where(
            CongestionOrder.dso_domain == dso_domain, CongestionOrder.order_reference == item.order_reference
        )
    )
    if order is None:
        return SettlementVerdict(
            item.order_reference, False, f"Unknown Reference: order {item.order_reference} was never accepted"
        )
    verdict = _compare(session, source, order, item)
    order.settlement_status = "accepted" if verdict.accepted else "disputed"
    order.settlement_reason = verdict.reason or None
    order.settlement_message_id = settlement_message_id
    order.their_net_eur = float(item.net_eur)
    order.settled_at = now
    session.flush()
    return verdict


def _compare(
    session: Session, source: CongestionFlexSource, order: CongestionOrder, item: OrderSettlementIn
) -> SettlementVerdict:
    reference = item.order_reference
    if (item.congestion_point, item.period) != (order.congestion_point, order.period):
        return SettlementVerdict(reference, False, "Congestion point or period differ from the order")
    ordered = {int(i["isp"]): float(i["reduction_kw"]) for i in order.isps}
    settled = {i.isp: i for i in item.isps}
    if set(settled) != set(ordered):
        isps = sorted(set(settled) ^ set(ordered))
        return SettlementVerdict(
            reference, False, f"Settled ISPs differ from the ordered ones: {_isps(isps)}", tuple(isps)
        )
    offer = session.get_one(CongestionOffer, order.offer_id)
    prognosis = (
        session.scalar(
            select(CongestionPrognosis).where(CongestionPrognosis.message_id == offer.d_prognosis_message_id)
        )
        if offer.d_prognosis_message_id
        else None
    )
    if prognosis is None:
        return SettlementVerdict(reference, False, "No D-Prognosis of ours to settle against")
    isps = sorted(ordered)
    starts = {int(i["isp"]): datetime.fromisoformat(str(i["isp_start"])) for i in order.isps}
    measured = source.measured_load_kw(congestion_pool(order.congestion_point), [starts[i] for i in isps])
    missing = [isp for isp, kw in zip(isps, measured, strict=True) if kw is None]
    if missing:
        return SettlementVerdict(reference, False, f"No measured load for ISP {_isps(missing)}", tuple(missing))
    baseline_mw = [prognosis.power_kw[i - 1] / 1000.0 for i in isps]
    ordered_mw = [ordered[i] / 1000.0 for i in isps]
    actual_mw = [float(kw) / 1000.0 for kw in measured if kw is not None]
    participant = participants.get_or_raise(session, order.dso_domain)
    rate = float(order.price_eur) / sum(ordered_mw) if sum(ordered_mw) > 0 else 0.0
    penalty = participant.penalty_eur_per_mw
    ours = settle_flex_order(baseline_mw, ordered_mw, actual_mw, rate, penalty)
    order.our_net_eur = ours.total_net_eur
    delivered = np.array([abs(settled[i].delivered_kw) / 1000.0 for i in isps])
    deficiency = np.array([abs(settled[i].deficiency_kw) / 1000.0 for i in isps])
    theirs = FlexOrderSettlement(delivered, deficiency, delivered * rate - deficiency * penalty, float(item.net_eur))
    comparison = compare_flex_settlement(ours, theirs, tolerance=SETTLEMENT_TOLERANCE)
    if comparison.disposition == "Accepted":
        return SettlementVerdict(reference, True)
    differing = tuple(isps[i] for i in comparison.differing_isps)
    reason = (
        f"ISP {_isps(differing)} differ from our settlement (delivered/deficiency/net)"
        if differing
        else f"NetSettlement {item.net_eur} differs from ours {ours.total_net_eur:.4f}"
    )
    return SettlementVerdict(reference, False, reason, differing)


def _isps(isps: Sequence[int]) -> str:
    return ", ".join(str(i) for i in isps)


def list_orders(
    session: Session,
    *,
    congestion_point: str | None = None,
    dso_domain: str | None = None,
    period_from: date | None = None,
    period_to: date | None = None,
    settlement_status: str | None = None,
    limit: int = 100,
) -> list[CongestionOrder]:
    """Accepted orders, newest period first, filtered."""
    stmt = select(CongestionOrder)
    if congestion_point:
        stmt = stmt.where(CongestionOrder.congestion_point == congestion_point)
    if dso_domain:
        stmt = stmt.where(CongestionOrder.dso_domain == dso_domain)
    if period_from:
        stmt = stmt.where(CongestionOrder.period >= period_from)
    if period_to:
        stmt = stmt.where(CongestionOrder.period <= period_to)
    if settlement_status:
        stmt = stmt.where(CongestionOrder.settlement_status == settlement_status)
    stmt = stmt.order_by(CongestionOrder.period.desc(), CongestionOrder.created_at.desc(), CongestionOrder.id)
    return list(session.scalars(stmt.limit(limit)))
