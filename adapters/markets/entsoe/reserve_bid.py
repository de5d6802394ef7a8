"""aFRR bids as an ENTSO-E ReserveBid_MarketDocument (IEC 62325-451-7, version 7.4).

One ``Bid_TimeSeries`` per bid. Capacity bids cover one product (4 h by default) with a single point:
``quantity.quantity`` in MW (MAW), ``price.amount`` in EUR per MW per hour of the product
(``price_Measurement_Unit`` MAW, ``marketAgreement.type`` A01 daily auction) and optionally the carried-over
energy price in ``energy_Price.amount`` (EUR/MWh). Energy bids cover one 15-minute MTU (``PT15M``) with
``price.amount`` in EUR/MWh (MWH). Directions: A01 up (less consumption), A02 down (more consumption).
Codes: document A37 (reserve tender), process A51 (aFRR), business type B74 (offer), sender role A46 (BSP),
product type A01 (standard), linked-bid status A55 (not available if linked bid activated).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from lxml import etree

from adapters.markets.entsoe._common import (
    ISP,
    CodingScheme,
    Direction,
    ElementBuilder,
    check_eic,
    element_builder,
    format_duration,
    format_second,
    money,
    require_quarter_hour,
    require_utc,
    to_bytes,
    whole_mw,
)
from adapters.markets.entsoe.validation import validate
from vpp.domain.errors import InvalidInput

NAMESPACE = "urn:iec62325.351:tc57wg16:451-7:reservebiddocument:7:4"

DOCUMENT_TYPE_RESERVE_TENDER = "A37"
PROCESS_TYPE_AFRR = "A51"
BUSINESS_TYPE_OFFER = "B74"
ROLE_BSP = "A46"
ROLE_SYSTEM_OPERATOR = "A04"
MARKET_AGREEMENT_DAILY = "A01"
STANDARD_PRODUCT = "A01"
STATUS_UNAVAILABLE_IF_LINKED_ACTIVATED = "A55"
YES, NO = "A01", "A02"
UNIT_MW, UNIT_MWH, CURRENCY_EUR = "MAW", "MWH", "EUR"


@dataclass(frozen=True)
class ReserveBidLimits:
    """Size and price limits a bid must respect; defaults follow the PICASSO/DE rules in markets.md §1."""

    minimum_bid_kw: float = 1_000.0
    maximum_bid_kw: float = 9_999_000.0
    # Transitional harmonised aFRR energy price limit (ACER 03/2022) until July 2026.
    energy_price_limit_eur_per_mwh: float = 15_000.0
    capacity_price_max_eur_per_mw_per_h: float = 99_999.0


@dataclass(frozen=True)
class AfrrCapacityBid:
    """A balancing-capacity bid for one product (e.g. a 4-hour slice) in one direction."""

    bid_id: str
    direction: Direction
    product_start_utc: datetime
    capacity_kw: float
    capacity_price_eur_per_mw_per_h: float
    product_length: timedelta = timedelta(hours=4)
    energy_price_eur_per_mwh: float | None = None
    divisible: bool = True
    minimum_capacity_kw: float | None = None
    linked_bids_id: str | None = None
    registered_resource_mrid: str | None = None


@dataclass(frozen=True)
class AfrrEnergyBid:
    """A balancing-energy bid for one 15-minute MTU in one direction."""

    bid_id: str
    direction: Direction
    mtu_start_utc: datetime
    volume_kw: float
    price_eur_per_mwh: float
    divisible: bool = True
    minimum_volume_kw: float | None = None
    linked_bids_id: str | None = None
    unavailable_if_activated_bid_ids: tuple[str, ...] = ()
    registered_resource_mrid: str | None = None


AfrrBid = AfrrCapacityBid | AfrrEnergyBid


@dataclass(frozen=True)
class ReserveBidDocumentInput:
    """Everything needed to write one ReserveBid document; bids may mix capacity and energy."""

    document_id: str
    sender_eic: str
    receiver_eic: str
    domain_eic: str
    created_at_utc: datetime
    bids: Sequence[AfrrBid]
    revision_number: int = 1
    receiver_role: str = ROLE_SYSTEM_OPERATOR
    connecting_domain_eic: str | None = None
    period_start_utc: datetime | None = None
    period_end_utc: datetime | None = None
    limits: ReserveBidLimits = field(default_factory=ReserveBidLimits)


@dataclass(frozen=True)
class _CheckedBid:
    bid: AfrrBid
    start_utc: datetime
    end_utc: datetime
    quantity_mw: int
    minimum_mw: int | None


def build_reserve_bid_document(document: ReserveBidDocumentInput) -> bytes:
    """Write the bids as a ReserveBid_MarketDocument 7.4 (UTF-8 XML), validated against the XSD."""
    checked = _check_document(document)
    period_start = min(bid.start_utc for bid in checked)
    period_end = max(bid.end_utc for bid in checked)
    if document.period_start_utc is not None:
        period_start = _outer_bound(document.period_start_utc, period_start, "period_start_utc", before=True)
    if document.period_end_utc is not None:
        period_end = _outer_bound(document.period_end_utc, period_end, "period_end_utc", before=False)

    xml = element_builder(NAMESPACE)
    root = xml.root("ReserveBid_MarketDocument")
    xml.add(root, "mRID", document.document_id)
    xml.add(root, "revisionNumber", str(document.revision_number))
    xml.add(root, "type", DOCUMENT_TYPE_RESERVE_TENDER)
    xml.add(root, "process.processType", PROCESS_TYPE_AFRR)
    xml.add(root, "sender_MarketParticipant.mRID", document.sender_eic, codingScheme=CodingScheme.EIC)
    xml.add(root, "sender_MarketParticipant.marketRole.type", ROLE_BSP)
    xml.add(root, "receiver_MarketParticipant.mRID", document.receiver_eic, codingScheme=CodingScheme.EIC)
    xml.add(root, "receiver_MarketParticipant.marketRole.type", document.receiver_role)
    xml.add(root, "createdDateTime", format_second(require_utc(document.created_at_utc, "created_at_utc")))
    xml.add_interval(root, "reserveBid_Period.timeInterval", period_start, period_end)
    xml.add(root, "domain.mRID", document.domain_eic, codingScheme=CodingScheme.EIC)
    connecting = document.connecting_domain_eic or document.domain_eic
    for item in checked:
        _add_bid_time_series(xml, root, item, document.domain_eic, connecting)
    payload = to_bytes(root)
    validate(payload, "reserve_bid")
    return payload


def _outer_bound(given: datetime, needed: datetime, what: str, *, before: bool) -> datetime:
    value = require_quarter_hour(given, what)
    if (before and value > needed) or (not before and value < needed):
        raise InvalidInput(f"{what} {value.isoformat()} does not cover every bid", details={"field": what})
    return value


def _check_document(document: ReserveBidDocumentInput) -> list[_CheckedBid]:
    if not document.bids:
        raise InvalidInput("a reserve bid document needs at least one bid")
    if not document.document_id or len(document.document_id) > 60:
        raise InvalidInput("document_id must have 1 to 60 characters")
    if not 1 <= document.revision_number <= 999:
        raise InvalidInput("revision_number must be between 1 and 999")
    check_eic(document.sender_eic, "sender_eic")
    check_eic(document.receiver_eic, "receiver_eic")
    check_eic(document.domain_eic, "domain_eic")
    if document.connecting_domain_eic is not None:
        check_eic(document.connecting_domain_eic, "connecting_domain_eic")
    seen: set[str] = set()
    checked = []
    for bid in document.bids:
        if bid.bid_id in seen:
            raise InvalidInput(f"duplicate bid_id {bid.bid_id!r}", details={"bid_id": bid.bid_id})
        seen.add(bid.bid_id)
        checked.append(_check_bid(bid, document.limits))
    return checked


def _check_bid(bid: AfrrBid, limits: ReserveBidLimits) -> _CheckedBid:
    if not bid.bid_id or len(bid.bid_id) > 60:
        raise InvalidInput("bid_id must have 1 to 60 characters", details={"bid_id": bid.bid_id})
    if isinstance(bid, AfrrCapacityBid):
        start = require_quarter_hour(bid.product_start_utc, "product_start_utc")
        if bid.product_length <= timedelta(0) or bid.product_length % ISP:
            raise InvalidInput("product_length must be a positive multiple of 15 minutes")
        end = start + bid.product_length
        volume_kw, minimum_kw = bid.capacity_kw, bid.minimum_capacity_kw
        _check_price(bid.bid_id, bid.capacity_price_eur_per_mw_per_h, 0.0, limits.capacity_price_max_eur_per_mw_per_h)
        if bid.energy_price_eur_per_mwh is not None:
            limit = limits.energy_price_limit_eur_per_mwh
            _check_price(bid.bid_id, bid.energy_price_eur_per_mwh, -limit, limit)
    else:
        start = require_quarter_hour(bid.mtu_start_utc, "mtu_start_utc")
        end = start + ISP
        volume_kw, minimum_kw = bid.volume_kw, bid.minimum_volume_kw
        limit = limits.energy_price_limit_eur_per_mwh
        _check_price(bid.bid_id, bid.price_eur_per_mwh, -limit, limit)
    quantity_mw = _check_volume(bid.bid_id, volume_kw, limits)
    minimum_mw = None
    if minimum_kw is not None:
        if not bid.divisible:
            raise InvalidInput("an indivisible bid has no minimum quantity", details={"bid_id": bid.bid_id})
        minimum_mw = _check_volume(bid.bid_id, minimum_kw, limits)
        if minimum_mw > quantity_mw:
            raise InvalidInput("minimum quantity exceeds bid quantity", details={"bid_id": bid.bid_id})
    return _CheckedBid(bid, start, end, quantity_mw, minimum_mw)


def _check_volume(bid_id: str, volume_kw: float, limits: ReserveBidLimits) -> int:
    if volume_kw < limits.minimum_bid_kw:
        raise InvalidInput(
            f"bid {bid_id}: {volume_kw} kW is below the minimum bid size of {limits.minimum_bid_kw} kW",
            details={"bid_id": bid_id, "volume_kw": volume_kw},
        )
    if volume_kw > limits.maximum_bid_kw:
        raise InvalidInput(
            f"bid {bid_id}: {volume_kw} kW exceeds the maximum bid size of {limits.maximum_bid_kw} kW",
            details={"bid_id": bid_id, "volume_kw": volume_kw},
        )
    return whole_mw(volume_kw, f"bid {bid_id} volume")


def _check_price(bid_id: str, price: float, lowest: float, highest: float) -> None:
    if not lowest <= price <= highest:
        raise InvalidInput(
            f"bid {bid_id}: price {price} is outside the limits [{lowest}, {highest}]",
            details={"bid_id": bid_id, "price": price},
        )


def _add_bid_time_series(
    xml: ElementBuilder, root: etree._Element, item: _CheckedBid, acquiring: str, connecting: str
) -> None:
    bid = item.bid
    is_capacity = isinstance(bid, AfrrCapacityBid)
    series = xml.add(root, "Bid_TimeSeries")
    xml.add(series, "mRID", bid.bid_id)
    xml.add(series, "businessType", BUSINESS_TYPE_OFFER)
    xml.add(series, "acquiring_Domain.mRID", acquiring, codingScheme=CodingScheme.EIC)
    xml.add(series, "connecting_Domain.mRID", connecting, codingScheme=CodingScheme.EIC)
    xml.add(series, "quantity_Measurement_Unit.name", UNIT_MW)
    xml.add(series, "currency_Unit.name", CURRENCY_EUR)
    xml.add(series, "price_Measurement_Unit.name", UNIT_MW if is_capacity else UNIT_MWH)
    xml.add(series, "divisible", YES if bid.divisible else NO)
    if bid.linked_bids_id:
        xml.add(series, "linkedBidsIdentification", bid.linked_bids_id)
    if bid.registered_resource_mrid:
        xml.add(series, "registeredResource.mRID", bid.registered_resource_mrid, codingScheme=CodingScheme.EIC)
    xml.add(series, "flowDirection.direction", bid.direction.value)
    if bid.divisible:
        xml.add(series, "stepIncrementQuantity", "1")
    energy_price = bid.energy_price_eur_per_mwh if isinstance(bid, AfrrCapacityBid) else None
    if energy_price is not None:
        xml.add(series, "energyPrice_Measurement_Unit.name", UNIT_MWH)
    if is_capacity:
        xml.add(series, "marketAgreement.type", MARKET_AGREEMENT_DAILY)
    xml.add(series, "standard_MarketProduct.marketProductType", STANDARD_PRODUCT)
    period = xml.add(series, "Period")
    xml.add_interval(period, "timeInterval", item.start_utc, item.end_utc)
    xml.add(period, "resolution", format_duration(item.end_utc - item.start_utc))
    point = xml.add(period, "Point")
    xml.add(point, "position", "1")
    xml.add(point, "quantity.quantity", str(item.quantity_mw))
    if item.minimum_mw is not None:
        xml.add(point, "minimum_Quantity.quantity", str(item.minimum_mw))
    price = bid.capacity_price_eur_per_mw_per_h if isinstance(bid, AfrrCapacityBid) else bid.price_eur_per_mwh
    xml.add(point, "price.amount", money(price))
    if energy_price is not None:
        xml.add(point, "energy_Price.amount", money(energy_price))
    if isinstance(bid, AfrrEnergyBid):
        for linked_id in bid.unavailable_if_activated_bid_ids:
            linked = xml.add(series, "Linked_BidTimeSeries")
            xml.add(linked, "mRID", linked_id)
            status = xml.add(linked, "status")
            xml.add(status, "value", STATUS_UNAVAILABLE_IF_LINKED_ACTIVATED)
