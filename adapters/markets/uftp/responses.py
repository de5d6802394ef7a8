"""Build the functional response that answers a UFTP message (same conversation, domains swapped)."""

from __future__ import annotations

from typing import Any

from adapters.markets.uftp.messages import (
    AcceptedDisputed,
    AcceptedRejected,
    DPrognosis,
    DPrognosisResponse,
    FlexOffer,
    FlexOfferResponse,
    FlexOfferRevocation,
    FlexOfferRevocationResponse,
    FlexOrder,
    FlexOrderResponse,
    FlexOrderSettlementStatus,
    FlexRequest,
    FlexRequestResponse,
    FlexReservationUpdate,
    FlexReservationUpdateResponse,
    FlexSettlement,
    FlexSettlementResponse,
    PayloadMessage,
    TestMessage,
    TestMessageResponse,
)


def response_to(message: PayloadMessage, result: AcceptedRejected, reason: str | None = None) -> PayloadMessage | None:
    """The response message for ``message``, or None for messages that get no answer (responses)."""
    common: dict[str, Any] = {
        "sender_domain": message.recipient_domain,
        "recipient_domain": message.sender_domain,
        "conversation_id": message.conversation_id,
        "version": message.version,
    }
    if isinstance(message, TestMessage):
        return TestMessageResponse(**common)
    common["result"] = result
    common["rejection_reason"] = reason if result is AcceptedRejected.REJECTED else None
    referenced = message.message_id
    if isinstance(message, FlexRequest):
        return FlexRequestResponse(**common, flex_request_message_id=referenced)
    if isinstance(message, FlexOrder):
        return FlexOrderResponse(**common, flex_order_message_id=referenced)
    if isinstance(message, FlexReservationUpdate):
        return FlexReservationUpdateResponse(**common, flex_reservation_update_message_id=referenced)
    if isinstance(message, FlexSettlement):
        disposition = AcceptedDisputed.ACCEPTED if result is AcceptedRejected.ACCEPTED else AcceptedDisputed.DISPUTED
        statuses = tuple(
            FlexOrderSettlementStatus(
                order_reference=settlement.order_reference,
                disposition=disposition,
                dispute_reason=None if disposition is AcceptedDisputed.ACCEPTED else reason,
            )
            for settlement in message.flex_order_settlements
        )
        return FlexSettlementResponse(
            **common, flex_settlement_message_id=referenced, flex_order_settlement_statuses=statuses
        )
    if isinstance(message, FlexOffer):
        return FlexOfferResponse(**common, flex_offer_message_id=referenced)
    if isinstance(message, FlexOfferRevocation):
        return FlexOfferRevocationResponse(**common, flex_offer_revocation_message_id=referenced)
    if isinstance(message, DPrognosis):
        return DPrognosisResponse(**common, d_prognosis_message_id=referenced)
    return None


def accept(message: PayloadMessage) -> PayloadMessage | None:
    """The Accepted response to ``message``."""
    return response_to(message, AcceptedRejected.ACCEPTED)


def reject(message: PayloadMessage, reason: str) -> PayloadMessage | None:
    """The Rejected response to ``message`` with ``reason``."""
    return response_to(message, AcceptedRejected.REJECTED, reason)
