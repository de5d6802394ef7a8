"""HTTP routes of the congestion market for traders: the UFTP message log and the orders with their settlement."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from vpp.api.deps import Limit, SessionDep, TraderDep
from vpp.api.errors import error_responses
from vpp.api.types import IsoDate, Text, UtcDatetime
from vpp.congestion import outbox, service
from vpp.congestion.schemas import CongestionOrderRead, UftpMessageRead

router = APIRouter(prefix="/api/v1/congestion", tags=["congestion"], responses=error_responses(401, 403, 422))


@router.get("/messages", operation_id="list_congestion_messages")
def list_messages(
    session: SessionDep,
    _trader: TraderDep,
    direction: Literal["in", "out"] | None = None,
    message_type: Annotated[Text | None, Query(description="e.g. FlexRequest, FlexOffer")] = None,
    conversation_id: Annotated[Text | None, Query()] = None,
    peer_domain: Annotated[Text | None, Query(description="sender or recipient domain")] = None,
    status: Annotated[Text | None, Query(description="e.g. received, queued, delivered, failed")] = None,
    since: Annotated[UtcDatetime | None, Query()] = None,
    until: Annotated[UtcDatetime | None, Query()] = None,
    include_xml: bool = False,
    limit: Limit = 100,
) -> list[UftpMessageRead]:
    """UFTP messages in and out, newest first."""
    rows = outbox.list_messages(
        session,
        direction=direction,
        message_type=message_type,
        conversation_id=conversation_id,
        peer_domain=peer_domain,
        status=status,
        since=since,
        until=until,
        limit=limit,
    )
    return [
        UftpMessageRead.model_validate(row).model_copy(update={"xml": row.xml if include_xml else None}) for row in rows
    ]


@router.get("/orders", operation_id="list_congestion_orders")
def list_orders(
    session: SessionDep,
    _trader: TraderDep,
    congestion_point: Annotated[Text | None, Query()] = None,
    dso_domain: Annotated[Text | None, Query()] = None,
    period_from: Annotated[IsoDate | None, Query()] = None,
    period_to: Annotated[IsoDate | None, Query()] = None,
    settlement_status: Literal["open", "accepted", "disputed"] | None = None,
    limit: Limit = 100,
) -> list[CongestionOrderRead]:
    """Accepted FlexOrders with their settlement state, newest period first."""
    rows = service.list_orders(
        session,
        congestion_point=congestion_point,
        dso_domain=dso_domain,
        period_from=period_from,
        period_to=period_to,
        settlement_status=settlement_status,
        limit=limit,
    )
    return [CongestionOrderRead.model_validate(row) for row in rows]
