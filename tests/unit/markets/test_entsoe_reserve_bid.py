from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from lxml import etree

from adapters.markets.entsoe import (
    AfrrCapacityBid,
    AfrrEnergyBid,
    Direction,
    ReserveBidDocumentInput,
    SchemaViolation,
    build_reserve_bid_document,
    validate,
)
from vpp.domain.errors import InvalidInput

NS = {"rb": "urn:iec62325.351:tc57wg16:451-7:reservebiddocument:7:4"}
BSP_EIC = "10X1001A1001A264"
TSO_EIC = "10XDE-RWENET---W"
AREA_EIC = "10YNL----------L"
DAY_START = datetime(2025, 10, 1, 22, 0, tzinfo=UTC)


def _document(*bids: AfrrCapacityBid | AfrrEnergyBid) -> ReserveBidDocumentInput:
    return ReserveBidDocumentInput(
        document_id="doc-0001",
        sender_eic=BSP_EIC,
        receiver_eic=TSO_EIC,
        domain_eic=AREA_EIC,
        created_at_utc=DAY_START - timedelta(hours=14),
        bids=list(bids),
    )


def _capacity(**changes: object) -> AfrrCapacityBid:
    bid = AfrrCapacityBid(
        bid_id="cap-up-0",
        direction=Direction.UP,
        product_start_utc=DAY_START,
        capacity_kw=3_000,
        capacity_price_eur_per_mw_per_h=11.5,
        energy_price_eur_per_mwh=180,
    )
    return replace(bid, **changes)  # type: ignore[arg-type]


def _energy(**changes: object) -> AfrrEnergyBid:
    bid = AfrrEnergyBid(
        bid_id="en-down-1",
        direction=Direction.DOWN,
        mtu_start_utc=DAY_START + timedelta(minutes=15),
        volume_kw=1_000,
        price_eur_per_mwh=-35.25,
    )
    return replace(bid, **changes)  # type: ignore[arg-type]


def _texts(xml: bytes, path: str) -> list[str]:
    found = etree.fromstring(xml).xpath(f"{path}/text()", namespaces=NS)
    assert isinstance(found, list)
    return [str(text) for text in found]


def test_capacity_bid_document_validates_and_carries_a_4_hour_product_in_mw() -> None:
    xml = build_reserve_bid_document(_document(_capacity(), _capacity(bid_id="cap-down-0", direction=Direction.DOWN)))

    validate(xml, "reserve_bid")
    assert _texts(xml, "rb:process.processType") == ["A51"]
    assert _texts(xml, "rb:type") == ["A37"]
    assert _texts(xml, "rb:Bid_TimeSeries/rb:flowDirection.direction") == ["A01", "A02"]
    assert _texts(xml, "rb:Bid_TimeSeries/rb:Period/rb:resolution") == ["PT4H", "PT4H"]
    assert _texts(xml, "rb:Bid_TimeSeries/rb:Period/rb:Point/rb:quantity.quantity") == ["3", "3"]
    assert _texts(xml, "rb:Bid_TimeSeries/rb:price_Measurement_Unit.name") == ["MAW", "MAW"]
    assert _texts(xml, "rb:Bid_TimeSeries/rb:marketAgreement.type") == ["A01", "A01"]
    assert _texts(xml, "rb:Bid_TimeSeries/rb:Period/rb:Point/rb:energy_Price.amount") == ["180.00", "180.00"]
    assert _texts(xml, "rb:reserveBid_Period.timeInterval/rb:end") == ["2025-10-02T02:00Z"]


def test_product_length_is_configurable() -> None:
    xml = build_reserve_bid_document(_document(_capacity(product_length=timedelta(hours=1))))

    assert _texts(xml, "rb:Bid_TimeSeries/rb:Period/rb:resolution") == ["PT1H"]


def test_energy_bid_document_validates_with_15_minute_mtu_divisibility_and_linked_bid() -> None:
    bid = _energy(minimum_volume_kw=1_000, volume_kw=2_000, unavailable_if_activated_bid_ids=("en-down-0",))

    xml = build_reserve_bid_document(_document(bid))

    validate(xml, "reserve_bid")
    assert _texts(xml, "rb:Bid_TimeSeries/rb:Period/rb:resolution") == ["PT15M"]
    assert _texts(xml, "rb:Bid_TimeSeries/rb:price_Measurement_Unit.name") == ["MWH"]
    assert _texts(xml, "rb:Bid_TimeSeries/rb:divisible") == ["A01"]
    assert _texts(xml, "rb:Bid_TimeSeries/rb:Period/rb:Point/rb:minimum_Quantity.quantity") == ["1"]
    assert _texts(xml, "rb:Bid_TimeSeries/rb:Period/rb:Point/rb:price.amount") == ["-35.25"]
    assert _texts(xml, "rb:Bid_TimeSeries/rb:Linked_BidTimeSeries/rb:status/rb:value") == ["A55"]


def test_indivisible_energy_bid_is_written_with_a02() -> None:
    xml = build_reserve_bid_document(_document(_energy(divisible=False)))

    assert _texts(xml, "rb:Bid_TimeSeries/rb:divisible") == ["A02"]
    assert _texts(xml, "rb:Bid_TimeSeries/rb:stepIncrementQuantity") == []


@pytest.mark.parametrize(
    ("bid", "reason"),
    [
        (_energy(volume_kw=999), "below the minimum bid size"),
        (_capacity(capacity_kw=500), "below the minimum bid size"),
        (_energy(volume_kw=1_500), "not a whole number of MW"),
        (_energy(price_eur_per_mwh=15_000.01), "outside the limits"),
        (_energy(price_eur_per_mwh=-15_000.01), "outside the limits"),
        (_capacity(capacity_price_eur_per_mw_per_h=-1), "outside the limits"),
        (_capacity(energy_price_eur_per_mwh=20_000), "outside the limits"),
        (_energy(mtu_start_utc=DAY_START + timedelta(minutes=5)), "15-minute grid"),
        (_energy(mtu_start_utc=datetime(2025, 10, 1, 22, 0)), "timezone-aware"),
        (_energy(minimum_volume_kw=3_000, volume_kw=2_000), "minimum quantity exceeds"),
        (_energy(divisible=False, minimum_volume_kw=1_000), "indivisible"),
    ],
)
def test_bid_outside_the_rules_is_refused_with_a_reason(bid: AfrrCapacityBid | AfrrEnergyBid, reason: str) -> None:
    with pytest.raises(InvalidInput, match=reason):
        build_reserve_bid_document(_document(bid))


def test_document_with_a_malformed_eic_or_duplicate_bid_ids_is_refused() -> None:
    with pytest.raises(InvalidInput, match="EIC"):
        build_reserve_bid_document(replace(_document(_energy()), receiver_eic="TENNET"))
    with pytest.raises(InvalidInput, match="duplicate bid_id"):
        build_reserve_bid_document(_document(_energy(), _energy()))
    with pytest.raises(InvalidInput, match="at least one bid"):
        build_reserve_bid_document(_document())


def test_validate_rejects_a_code_outside_the_codelist() -> None:
    xml = build_reserve_bid_document(_document(_energy()))
    tampered = xml.replace(b"<flowDirection.direction>A02<", b"<flowDirection.direction>A09<")

    with pytest.raises(SchemaViolation, match="reservebiddocument_v7_4"):
        validate(tampered, "reserve_bid")


def test_validate_refuses_an_unknown_schema_name() -> None:
    with pytest.raises(InvalidInput, match="unknown schema"):
        validate(b"<a/>", "nonsense")
