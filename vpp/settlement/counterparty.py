"""A DSO's settlement of one of our FlexOrders, checked by the congestion feature's own comparison."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from vpp.congestion import service as congestion
from vpp.congestion.tables import CongestionOrder
from vpp.congestion.values import OrderSettlementIn, SettledIsp, SettlementVerdict
from vpp.domain.errors import NotFound
from vpp.ports import CongestionFlexSource
from vpp.settlement.schemas import CounterpartySettlementWrite


def check(db: Session, source: CongestionFlexSource, order_reference: str, body: CounterpartySettlementWrite,
          *, now: datetime) -> SettlementVerdict:
    """Record the DSO's figures and our verdict; NotFound, with the reason, for an order we never accepted."""
    known = db.scalar(select(CongestionOrder.id).where(CongestionOrder.dso_domain == body.dso_domain,
                                                       CongestionOrder.order_reference == order_reference))
    if known is None:
        raise NotFound(f"Unknown Reference: order {order_reference} of {body.dso_domain} was never accepted",
                       details={"order_reference": order_reference, "dso_domain": body.dso_domain})
    item = OrderSettlementIn(
        order_reference=order_reference, congestion_point=body.congestion_point, period=body.period,
        price_eur=body.price_eur, penalty_eur=body.penalty_eur, net_eur=body.net_eur,
        isps=tuple(SettledIsp(i.isp, i.baseline_kw, i.ordered_kw, i.actual_kw, i.delivered_kw, i.deficiency_kw)
                   for i in body.isps),
    )
    return congestion.check_settlement(db, source, dso_domain=body.dso_domain,
                                       settlement_message_id=f"api:{order_reference}", item=item, now=now)
