"""Congestion settlement of a pool's day: every FlexOrder per ISP with the USEF rule (settle_flex_order)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from sqlalchemy import select
from sqlalchemy.orm import Session

from vpp.algorithms.baselines import D_PROGNOSIS, NOMINATED, UNCONTROLLED
from vpp.algorithms.settlement import settle_flex_order
from vpp.commitments.tables import Commitment
from vpp.congestion import participants
from vpp.congestion.tables import CongestionOffer, CongestionOrder, CongestionPrognosis
from vpp.domain.commitments import CommitmentKind
from vpp.settlement.values import DayGrid, SettlementParams

FloatArray = npt.NDArray[np.float64]
ISP_H = 0.25


@dataclass
class OrderDay:
    """One order's ISPs (positions in the day) and its per-ISP result (kW, EUR)."""

    reference: str
    positions: list[int]
    ordered_kw: FloatArray
    baseline_kw: FloatArray
    baseline_method: str
    price_eur_per_mw: float
    penalty_eur_per_mw: float
    actual_kw: FloatArray = field(default_factory=lambda: np.zeros(0))
    delivered_kw: FloatArray = field(default_factory=lambda: np.zeros(0))
    deficiency_kw: FloatArray = field(default_factory=lambda: np.zeros(0))
    net_eur: FloatArray = field(default_factory=lambda: np.zeros(0))
    dso_status: str | None = None
    dso_net_eur: float | None = None
    dso_reason: str | None = None

    @property
    def revenue_eur(self) -> float:
        """Paid for delivered reduction."""
        return float(np.nansum(self.delivered_kw) / 1000.0 * self.price_eur_per_mw)

    @property
    def penalty_eur(self) -> float:
        """Charged for deficiency."""
        return float(np.nansum(self.deficiency_kw) / 1000.0 * self.penalty_eur_per_mw)


def _uftp_order(db: Session, reference: str) -> CongestionOrder | None:
    domain, sep, order_reference = reference.partition("/")
    if not sep:
        return None
    return db.scalar(select(CongestionOrder).where(CongestionOrder.dso_domain == domain,
                                                   CongestionOrder.order_reference == order_reference))


def _prognosis_kw(db: Session, order: CongestionOrder) -> list[float] | None:
    offer = db.get(CongestionOffer, order.offer_id)
    if offer is None or not offer.d_prognosis_message_id:
        return None
    prognosis = db.scalar(select(CongestionPrognosis).where(
        CongestionPrognosis.message_id == offer.d_prognosis_message_id))
    return list(prognosis.power_kw) if prognosis is not None else None


def settle_orders(db: Session, pool: str, grid: DayGrid, params: SettlementParams, *, metered_kwh: FloatArray,
                  schedule_kw: FloatArray, counterfactual_kw: FloatArray) -> list[OrderDay]:
    """Settle each flex_order commitment of the pool (UFTP orders and DSO reductions) per ISP.

    Baseline: our D-Prognosis when the order came through UFTP, else the day-ahead schedule, else the
    sessions' uncontrolled counterfactual; the method is recorded. Actual: the metered pool load (NaN on a gap,
    and such an ISP is left unsettled rather than guessed).
    """
    rows = db.execute(
        select(Commitment.reference, Commitment.isp_start, Commitment.power_kw, Commitment.price_eur_per_mwh)
        .where(Commitment.pool == pool, Commitment.kind == CommitmentKind.FLEX_ORDER.value,
               Commitment.isp_start >= grid.start, Commitment.isp_start < grid.end)
        .order_by(Commitment.reference, Commitment.isp_start)
    ).all()
    position = {start: k for k, start in enumerate(grid.isp_starts)}
    grouped: dict[str, list[tuple[int, float, float | None]]] = defaultdict(list)
    for reference, start, power_kw, price in rows:
        grouped[reference].append((position[start], float(power_kw), price))
    orders: list[OrderDay] = []
    for reference, items in grouped.items():
        positions = [p for p, _, _ in items]
        ordered_kw = np.array([kw for _, kw, _ in items])
        uftp = _uftp_order(db, reference)
        prognosis = _prognosis_kw(db, uftp) if uftp is not None else None
        if prognosis is not None and len(prognosis) == grid.isps:
            baseline, method = np.array([prognosis[p] for p in positions]), D_PROGNOSIS
        elif np.isfinite(schedule_kw[positions]).all():
            baseline, method = schedule_kw[positions], NOMINATED
        else:
            baseline, method = counterfactual_kw[positions], UNCONTROLLED
        if uftp is not None:
            total_mw = float(ordered_kw.sum()) / 1000.0
            price = float(uftp.price_eur) / total_mw if total_mw > 0 else 0.0
            participant = participants.get_by_domain(db, uftp.dso_domain)
            penalty = participant.penalty_eur_per_mw if participant is not None else params.flex_penalty_eur_per_mw
        else:
            prices = [p for _, _, p in items if p is not None]
            price = (sum(prices) / len(prices)) * ISP_H if prices else 0.0
            penalty = params.flex_penalty_eur_per_mw
        order = OrderDay(reference, positions, ordered_kw, np.asarray(baseline, dtype=np.float64), method,
                         price, penalty)
        _settle(order, metered_kwh)
        if uftp is not None and uftp.settlement_status != "open":
            order.dso_status, order.dso_net_eur, order.dso_reason = (
                uftp.settlement_status, uftp.their_net_eur, uftp.settlement_reason)
        orders.append(order)
    return orders


def _settle(order: OrderDay, metered_kwh: FloatArray) -> None:
    actual_kw = metered_kwh[order.positions] / ISP_H
    known = np.isfinite(actual_kw)
    n = len(order.positions)
    order.actual_kw = actual_kw
    order.delivered_kw, order.deficiency_kw, order.net_eur = (np.full(n, np.nan) for _ in range(3))
    if known.any():
        result = settle_flex_order(order.baseline_kw[known] / 1000.0, order.ordered_kw[known] / 1000.0,
                                   actual_kw[known] / 1000.0, order.price_eur_per_mw, order.penalty_eur_per_mw)
        order.delivered_kw[known] = result.delivered_mw * 1000.0
        order.deficiency_kw[known] = result.deficiency_mw * 1000.0
        order.net_eur[known] = result.net_eur
