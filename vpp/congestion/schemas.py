"""API models of the congestion feature (trader read side)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict


class UftpMessageRead(BaseModel):
    """A logged UFTP message; the XML only when asked for."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    direction: Literal["in", "out"]
    message_type: str
    message_id: str
    conversation_id: str
    sender_domain: str
    recipient_domain: str
    status: str
    reason: str | None
    created_at: datetime
    xml: str | None = None


class OrderedIspRead(BaseModel):
    """Ordered reduction of one ISP."""

    isp: int
    isp_start: datetime
    reduction_kw: float


class CongestionOrderRead(BaseModel):
    """An accepted FlexOrder and where its settlement stands (open, accepted or disputed)."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    order_reference: str
    message_id: str
    dso_domain: str
    congestion_point: str
    period: date
    price_eur: Decimal
    activation_factor: Decimal
    isps: list[OrderedIspRead]
    settlement_status: Literal["open", "accepted", "disputed"]
    settlement_reason: str | None
    settlement_message_id: str | None
    our_net_eur: float | None
    their_net_eur: float | None
    settled_at: datetime | None
    created_at: datetime
