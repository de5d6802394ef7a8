"""Typed UFTP 3.1.0 messages exchanged between an AGR and a DSO (wire units: power in W, prices in EUR).

Power sign is the prosumer view of the spec: positive = consumption, negative = production, which matches the
house convention. ISPs are numbered from 1 within the local day of ``time_zone``. Field metadata names the
XML attribute (``attr``) or repeated child element (``children``); ``codec.py`` reads it.
"""

# attr() and children() return dataclasses.field(), which RUF009 cannot see through.
# ruff: noqa: RUF009

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, ClassVar

UFTP_VERSION = "3.1.0"


class UsefRole(StrEnum):
    """Roles that may sign a UFTP message."""

    AGR = "AGR"
    CRO = "CRO"
    DSO = "DSO"


class AcceptedRejected(StrEnum):
    """Functional result of a response message."""

    ACCEPTED = "Accepted"
    REJECTED = "Rejected"


class AcceptedDisputed(StrEnum):
    """Outcome of checking one settled FlexOrder."""

    ACCEPTED = "Accepted"
    DISPUTED = "Disputed"


class Disposition(StrEnum):
    """Whether a FlexRequest ISP asks for flexibility or only gives headroom."""

    AVAILABLE = "Available"
    REQUESTED = "Requested"


def attr(
    name: str, default: Any = ..., *, factory: Callable[[], Any] | None = None, decimals: int | None = None
) -> Any:
    """Declare a dataclass field carried as XML attribute ``name``."""
    metadata = {"attr": name, "decimals": decimals}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    if default is ...:
        return field(metadata=metadata)
    return field(default=default, metadata=metadata)


def children(tag: str) -> Any:
    """Declare a tuple field carried as repeated child elements ``tag``."""
    return field(default=(), metadata={"children": tag})


def new_message_id() -> str:
    """A fresh UUID for MessageID/ConversationID."""
    return str(uuid.uuid4())


def utc_now() -> datetime:
    """Current time, timezone-aware."""
    return datetime.now(UTC)


@dataclass(frozen=True, kw_only=True)
class PayloadMessage:
    """Metadata common to every UFTP message."""

    xml_tag: ClassVar[str] = ""
    sender_domain: str = attr("SenderDomain")
    recipient_domain: str = attr("RecipientDomain")
    version: str = attr("Version", UFTP_VERSION)
    time_stamp: datetime = attr("TimeStamp", factory=utc_now)
    message_id: str = attr("MessageID", factory=new_message_id)
    conversation_id: str = attr("ConversationID", factory=new_message_id)


@dataclass(frozen=True, kw_only=True)
class PayloadMessageResponse(PayloadMessage):
    """A functional response: Accepted, or Rejected with a reason."""

    result: AcceptedRejected = attr("Result", AcceptedRejected.ACCEPTED)
    rejection_reason: str | None = attr("RejectionReason", None)


@dataclass(frozen=True, kw_only=True)
class FlexMessage(PayloadMessage):
    """A message about one congestion point on one local day."""

    period: date = attr("Period")
    congestion_point: str = attr("CongestionPoint")
    isp_duration: str = attr("ISP-Duration", "PT15M")
    time_zone: str = attr("TimeZone", "Europe/Amsterdam")


@dataclass(frozen=True, kw_only=True)
class TestMessage(PayloadMessage):
    """Liveness check."""

    xml_tag: ClassVar[str] = "TestMessage"


@dataclass(frozen=True, kw_only=True)
class TestMessageResponse(PayloadMessage):
    """Answer to a TestMessage."""

    xml_tag: ClassVar[str] = "TestMessageResponse"


@dataclass(frozen=True, kw_only=True)
class FlexRequestIsp:
    """Requested or available power band for a run of ISPs."""

    start: int = attr("Start")
    min_power_w: int = attr("MinPower")
    max_power_w: int = attr("MaxPower")
    duration: int = attr("Duration", 1)
    disposition: Disposition | None = attr("Disposition", Disposition.REQUESTED)


@dataclass(frozen=True, kw_only=True)
class FlexRequest(FlexMessage):
    """DSO asks the AGR for flexibility on a congestion point."""

    xml_tag: ClassVar[str] = "FlexRequest"
    isps: tuple[FlexRequestIsp, ...] = children("ISP")
    revision: int = attr("Revision", 1)
    expiration_date_time: datetime = attr("ExpirationDateTime")
    contract_id: str | None = attr("ContractID", None)
    service_type: str | None = attr("ServiceType", None)


@dataclass(frozen=True, kw_only=True)
class FlexRequestResponse(PayloadMessageResponse):
    """AGR's functional answer to a FlexRequest."""

    xml_tag: ClassVar[str] = "FlexRequestResponse"
    flex_request_message_id: str = attr("FlexRequestMessageID")


@dataclass(frozen=True, kw_only=True)
class PowerIsp:
    """Power for a run of ISPs (FlexOffer options, FlexOrders, D-Prognoses, reservation updates)."""

    start: int = attr("Start")
    power_w: int = attr("Power")
    duration: int = attr("Duration", 1)


@dataclass(frozen=True, kw_only=True)
class FlexOfferOption:
    """One alternative the DSO may order: a power profile at a total price."""

    isps: tuple[PowerIsp, ...] = children("ISP")
    option_reference: str = attr("OptionReference")
    price_eur: Decimal = attr("Price", decimals=4)
    min_activation_factor: Decimal = attr("MinActivationFactor", Decimal("1.00"), decimals=2)


@dataclass(frozen=True, kw_only=True)
class FlexOffer(FlexMessage):
    """AGR offers flexibility, usually answering a FlexRequest."""

    xml_tag: ClassVar[str] = "FlexOffer"
    offer_options: tuple[FlexOfferOption, ...] = children("OfferOption")
    expiration_date_time: datetime = attr("ExpirationDateTime")
    currency: str = attr("Currency", "EUR")
    unsolicited: bool | None = attr("Unsolicited", None)
    flex_request_message_id: str | None = attr("FlexRequestMessageID", None)
    contract_id: str | None = attr("ContractID", None)
    d_prognosis_message_id: str | None = attr("D-PrognosisMessageID", None)
    baseline_reference: str | None = attr("BaselineReference", None)


@dataclass(frozen=True, kw_only=True)
class FlexOfferResponse(PayloadMessageResponse):
    """DSO's functional answer to a FlexOffer."""

    xml_tag: ClassVar[str] = "FlexOfferResponse"
    flex_offer_message_id: str = attr("FlexOfferMessageID")


@dataclass(frozen=True, kw_only=True)
class FlexOfferRevocation(PayloadMessage):
    """AGR withdraws an offer that has not been ordered."""

    xml_tag: ClassVar[str] = "FlexOfferRevocation"
    flex_offer_message_id: str = attr("FlexOfferMessageID")


@dataclass(frozen=True, kw_only=True)
class FlexOfferRevocationResponse(PayloadMessageResponse):
    """DSO's answer to a FlexOfferRevocation."""

    xml_tag: ClassVar[str] = "FlexOfferRevocationResponse"
    flex_offer_revocation_message_id: str = attr("FlexOfferRevocationMessageID")


@dataclass(frozen=True, kw_only=True)
class FlexOrder(FlexMessage):
    """DSO orders one offer option; the AGR is now obliged to deliver."""

    xml_tag: ClassVar[str] = "FlexOrder"
    isps: tuple[PowerIsp, ...] = children("ISP")
    price_eur: Decimal = attr("Price", decimals=4)
    currency: str = attr("Currency", "EUR")
    order_reference: str = attr("OrderReference")
    flex_offer_message_id: str | None = attr("FlexOfferMessageID", None)
    option_reference: str | None = attr("OptionReference", None)
    activation_factor: Decimal = attr("ActivationFactor", Decimal("1.00"), decimals=2)
    unsolicited: bool | None = attr("Unsolicited", None)
    service_type: str | None = attr("ServiceType", None)
    contract_id: str | None = attr("ContractID", None)
    d_prognosis_message_id: str | None = attr("D-PrognosisMessageID", None)
    baseline_reference: str | None = attr("BaselineReference", None)


@dataclass(frozen=True, kw_only=True)
class FlexOrderResponse(PayloadMessageResponse):
    """AGR's functional answer to a FlexOrder."""

    xml_tag: ClassVar[str] = "FlexOrderResponse"
    flex_order_message_id: str = attr("FlexOrderMessageID")


@dataclass(frozen=True, kw_only=True)
class DPrognosis(FlexMessage):
    """AGR's baseline forecast for every ISP of the period on a congestion point."""

    xml_tag: ClassVar[str] = "D-Prognosis"
    isps: tuple[PowerIsp, ...] = children("ISP")
    revision: int = attr("Revision", 1)


@dataclass(frozen=True, kw_only=True)
class FlexOrderStatus:
    """Whether a FlexOrder is consistent with the D-Prognosis it refers to."""

    flex_order_message_id: str = attr("FlexOrderMessageID")
    is_validated: bool = attr("IsValidated")


@dataclass(frozen=True, kw_only=True)
class DPrognosisResponse(PayloadMessageResponse):
    """DSO's answer to a D-Prognosis."""

    xml_tag: ClassVar[str] = "D-PrognosisResponse"
    flex_order_statuses: tuple[FlexOrderStatus, ...] = children("FlexOrderStatus")
    d_prognosis_message_id: str = attr("D-PrognosisMessageID")


@dataclass(frozen=True, kw_only=True)
class FlexReservationUpdate(FlexMessage):
    """DSO tells which contracted power is still reserved per ISP (0 = released)."""

    xml_tag: ClassVar[str] = "FlexReservationUpdate"
    isps: tuple[PowerIsp, ...] = children("ISP")
    contract_id: str = attr("ContractID")
    reference: str = attr("Reference")


@dataclass(frozen=True, kw_only=True)
class FlexReservationUpdateResponse(PayloadMessageResponse):
    """AGR's answer to a FlexReservationUpdate."""

    xml_tag: ClassVar[str] = "FlexReservationUpdateResponse"
    flex_reservation_update_message_id: str = attr("FlexReservationUpdateMessageID")


@dataclass(frozen=True, kw_only=True)
class FlexOrderSettlementIsp:
    """Settled powers (W) of one ISP run of a FlexOrder."""

    start: int = attr("Start")
    baseline_power_w: int = attr("BaselinePower")
    ordered_flex_power_w: int = attr("OrderedFlexPower")
    actual_power_w: int = attr("ActualPower")
    delivered_flex_power_w: int = attr("DeliveredFlexPower")
    power_deficiency_w: int = attr("PowerDeficiency", 0)
    duration: int = attr("Duration", 1)


@dataclass(frozen=True, kw_only=True)
class FlexOrderSettlement:
    """Settlement of one FlexOrder (pay-as-bid price, penalty, net)."""

    isps: tuple[FlexOrderSettlementIsp, ...] = children("ISP")
    order_reference: str = attr("OrderReference")
    period: date = attr("Period")
    congestion_point: str = attr("CongestionPoint")
    price_eur: Decimal = attr("Price", decimals=4)
    net_settlement_eur: Decimal = attr("NetSettlement", decimals=4)
    penalty_eur: Decimal = attr("Penalty", Decimal(0), decimals=4)
    contract_id: str | None = attr("ContractID", None)
    d_prognosis_message_id: str | None = attr("D-PrognosisMessageID", None)
    baseline_reference: str | None = attr("BaselineReference", None)


@dataclass(frozen=True, kw_only=True)
class ContractSettlementIsp:
    """Reserved (and optionally requested/available/offered/ordered) power of one ISP run."""

    start: int = attr("Start")
    reserved_power_w: int = attr("ReservedPower")
    duration: int = attr("Duration", 1)
    requested_power_w: int | None = attr("RequestedPower", None)
    available_power_w: int | None = attr("AvailablePower", None)
    offered_power_w: int | None = attr("OfferedPower", None)
    ordered_power_w: int | None = attr("OrderedPower", None)


@dataclass(frozen=True, kw_only=True)
class ContractSettlementPeriod:
    """One day of a bilateral contract's settlement."""

    isps: tuple[ContractSettlementIsp, ...] = children("ISP")
    period: date = attr("Period")


@dataclass(frozen=True, kw_only=True)
class ContractSettlement:
    """Settlement of one bilateral contract; UFTP 3.1.0 requires at least one per FlexSettlement."""

    periods: tuple[ContractSettlementPeriod, ...] = children("Period")
    contract_id: str | None = attr("ContractID", None)


@dataclass(frozen=True, kw_only=True)
class FlexSettlement(PayloadMessageResponse):
    """DSO's (monthly) settlement of FlexOrders; the 3.1.0 XSD derives it from the response type."""

    xml_tag: ClassVar[str] = "FlexSettlement"
    flex_order_settlements: tuple[FlexOrderSettlement, ...] = children("FlexOrderSettlement")
    contract_settlements: tuple[ContractSettlement, ...] = children("ContractSettlement")
    period_start: date = attr("PeriodStart")
    period_end: date = attr("PeriodEnd")
    currency: str = attr("Currency", "EUR")


@dataclass(frozen=True, kw_only=True)
class FlexOrderSettlementStatus:
    """AGR's verdict on one settled FlexOrder."""

    order_reference: str = attr("OrderReference")
    disposition: AcceptedDisputed = attr("Disposition")
    dispute_reason: str | None = attr("DisputeReason", None)


@dataclass(frozen=True, kw_only=True)
class FlexSettlementResponse(PayloadMessageResponse):
    """AGR's answer to a FlexSettlement, one status per FlexOrder."""

    xml_tag: ClassVar[str] = "FlexSettlementResponse"
    flex_order_settlement_statuses: tuple[FlexOrderSettlementStatus, ...] = children("FlexOrderSettlementStatus")
    flex_settlement_message_id: str = attr("FlexSettlementMessageID")


MESSAGE_TYPES: tuple[type[PayloadMessage], ...] = (
    TestMessage,
    TestMessageResponse,
    FlexRequest,
    FlexRequestResponse,
    FlexOffer,
    FlexOfferResponse,
    FlexOfferRevocation,
    FlexOfferRevocationResponse,
    FlexOrder,
    FlexOrderResponse,
    DPrognosis,
    DPrognosisResponse,
    FlexReservationUpdate,
    FlexReservationUpdateResponse,
    FlexSettlement,
    FlexSettlementResponse,
)

# What a DSO may send to an AGR; anything else arriving at the AGR endpoint is misdirected.
AGR_INBOUND_TYPES: tuple[type[PayloadMessage], ...] = (
    TestMessage,
    TestMessageResponse,
    FlexRequest,
    FlexOfferResponse,
    FlexOfferRevocationResponse,
    FlexOrder,
    DPrognosisResponse,
    FlexReservationUpdate,
    FlexSettlement,
)
