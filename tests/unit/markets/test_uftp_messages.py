from __future__ import annotations

import base64
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from lxml import etree

from adapters.markets.uftp import (
    StaticKeyLookup,
    UftpSchemaError,
    UftpSignatureError,
    accept,
    from_xml,
    generate_signing_keypair,
    open_signed_message,
    reject,
    sign_message,
    to_xml,
    validate_uftp_xml,
)
from adapters.markets.uftp.messages import (
    AcceptedDisputed,
    AcceptedRejected,
    ContractSettlement,
    ContractSettlementIsp,
    ContractSettlementPeriod,
    DPrognosis,
    DPrognosisResponse,
    FlexOffer,
    FlexOfferOption,
    FlexOfferResponse,
    FlexOrder,
    FlexOrderResponse,
    FlexOrderSettlement,
    FlexOrderSettlementIsp,
    FlexOrderSettlementStatus,
    FlexRequest,
    FlexRequestIsp,
    FlexRequestResponse,
    FlexSettlement,
    FlexSettlementResponse,
    PayloadMessage,
    PowerIsp,
    UsefRole,
)

AGR, DSO = "agr.example.com", "dso.example.com"
DAY = date(2026, 6, 1)
POINT = "ean.871685900012636543"
EXPIRES = datetime(2026, 5, 31, 12, 0, tzinfo=UTC)
TO_DSO: dict[str, Any] = {"sender_domain": AGR, "recipient_domain": DSO}
TO_AGR: dict[str, Any] = {"sender_domain": DSO, "recipient_domain": AGR}

FLEX_REQUEST = FlexRequest(
    **TO_AGR,
    period=DAY,
    congestion_point=POINT,
    expiration_date_time=EXPIRES,
    isps=(FlexRequestIsp(start=69, duration=4, min_power_w=-200_000, max_power_w=-100_000),),
)
FLEX_OFFER = FlexOffer(
    **TO_DSO,
    period=DAY,
    congestion_point=POINT,
    expiration_date_time=EXPIRES,
    flex_request_message_id=FLEX_REQUEST.message_id,
    offer_options=(
        FlexOfferOption(
            option_reference="opt-1",
            price_eur=Decimal("42.5"),
            min_activation_factor=Decimal("0.5"),
            isps=(PowerIsp(start=69, duration=4, power_w=-150_000),),
        ),
    ),
)
FLEX_ORDER = FlexOrder(
    **TO_AGR,
    period=DAY,
    congestion_point=POINT,
    flex_offer_message_id=FLEX_OFFER.message_id,
    option_reference="opt-1",
    price_eur=Decimal("42.5"),
    order_reference="ORD-1",
    isps=(PowerIsp(start=69, duration=4, power_w=-150_000),),
)
D_PROGNOSIS = DPrognosis(
    **TO_DSO, period=DAY, congestion_point=POINT, isps=tuple(PowerIsp(start=n, power_w=400_000) for n in range(1, 97))
)
FLEX_SETTLEMENT = FlexSettlement(
    **TO_AGR,
    period_start=DAY,
    period_end=date(2026, 6, 30),
    flex_order_settlements=(
        FlexOrderSettlement(
            order_reference="ORD-1",
            period=DAY,
            congestion_point=POINT,
            price_eur=Decimal("42.5"),
            penalty_eur=Decimal("8.5"),
            net_settlement_eur=Decimal("34"),
            isps=(
                FlexOrderSettlementIsp(
                    start=69,
                    baseline_power_w=400_000,
                    ordered_flex_power_w=-150_000,
                    actual_power_w=280_000,
                    delivered_flex_power_w=-120_000,
                    power_deficiency_w=30_000,
                ),
            ),
        ),
    ),
    contract_settlements=(
        ContractSettlement(
            contract_id="C-1",
            periods=(ContractSettlementPeriod(period=DAY, isps=(ContractSettlementIsp(start=1, reserved_power_w=0),)),),
        ),
    ),
)
ALL_MESSAGES: list[PayloadMessage] = [
    FLEX_REQUEST,
    FlexRequestResponse(**TO_DSO, flex_request_message_id=FLEX_REQUEST.message_id),
    FLEX_OFFER,
    FlexOfferResponse(**TO_AGR, flex_offer_message_id=FLEX_OFFER.message_id),
    FLEX_ORDER,
    FlexOrderResponse(
        **TO_DSO,
        flex_order_message_id=FLEX_ORDER.message_id,
        result=AcceptedRejected.REJECTED,
        rejection_reason="ISP Conflict",
    ),
    D_PROGNOSIS,
    DPrognosisResponse(**TO_AGR, d_prognosis_message_id=D_PROGNOSIS.message_id),
    FLEX_SETTLEMENT,
    FlexSettlementResponse(
        **TO_DSO,
        flex_settlement_message_id=FLEX_SETTLEMENT.message_id,
        flex_order_settlement_statuses=(
            FlexOrderSettlementStatus(order_reference="ORD-1", disposition=AcceptedDisputed.ACCEPTED),
        ),
    ),
]


@pytest.mark.parametrize("message", ALL_MESSAGES, ids=lambda message: type(message).__name__)
def test_message_serialises_to_schema_valid_xml_and_parses_back_unchanged(message: PayloadMessage) -> None:
    xml = to_xml(message)

    validate_uftp_xml(xml)
    assert etree.fromstring(xml).tag == message.xml_tag
    assert from_xml(xml) == message


def test_flex_settlement_without_contract_settlement_breaks_the_3_1_0_schema() -> None:
    incomplete = FlexSettlement(
        **TO_AGR, period_start=DAY, period_end=DAY, flex_order_settlements=FLEX_SETTLEMENT.flex_order_settlements
    )

    with pytest.raises(UftpSchemaError, match="ContractSettlement"):
        to_xml(incomplete)


def test_invalid_congestion_point_is_refused_by_the_schema() -> None:
    bad = FlexRequest(
        **TO_AGR, period=DAY, congestion_point="EAN-123", expiration_date_time=EXPIRES, isps=FLEX_REQUEST.isps
    )

    with pytest.raises(UftpSchemaError, match="CongestionPoint"):
        to_xml(bad)


def test_responses_answer_in_the_same_conversation_with_domains_swapped() -> None:
    accepted = accept(FLEX_REQUEST)
    rejected = reject(FLEX_ORDER, "ISP Conflict")
    settled = reject(FLEX_SETTLEMENT, "actual power differs from our meter data")

    assert isinstance(accepted, FlexRequestResponse)
    assert accepted.flex_request_message_id == FLEX_REQUEST.message_id
    assert accepted.conversation_id == FLEX_REQUEST.conversation_id
    assert (accepted.sender_domain, accepted.recipient_domain) == (AGR, DSO)
    assert accepted.result is AcceptedRejected.ACCEPTED
    assert isinstance(rejected, FlexOrderResponse)
    assert rejected.rejection_reason == "ISP Conflict"
    assert isinstance(settled, FlexSettlementResponse)
    assert settled.flex_order_settlement_statuses[0].disposition is AcceptedDisputed.DISPUTED
    for response in (accepted, rejected, settled):
        validate_uftp_xml(to_xml(response))


def test_signed_message_round_trip_verifies_with_the_senders_public_key() -> None:
    keys = generate_signing_keypair()
    lookup = StaticKeyLookup({(DSO, UsefRole.DSO): keys.public_key_b64})

    envelope = sign_message(FLEX_REQUEST, UsefRole.DSO, keys.private_key_b64)
    verified = open_signed_message(envelope, lookup)

    validate_uftp_xml(envelope)
    assert verified.message == FLEX_REQUEST
    assert (verified.sender_domain, verified.sender_role) == (DSO, UsefRole.DSO)
    body = base64.b64decode(etree.fromstring(envelope).get("Body", ""))
    assert body[64:] == verified.payload_xml  # combined mode: 64-byte signature, then the XML


def test_tampered_body_is_refused() -> None:
    keys = generate_signing_keypair()
    lookup = StaticKeyLookup({(DSO, UsefRole.DSO): keys.public_key_b64})
    envelope = etree.fromstring(sign_message(FLEX_REQUEST, UsefRole.DSO, keys.private_key_b64))
    sealed = base64.b64decode(envelope.get("Body", ""))
    envelope.set("Body", base64.b64encode(sealed.replace(b"-200000", b"-900000")).decode())

    with pytest.raises(UftpSignatureError, match="does not verify"):
        open_signed_message(etree.tostring(envelope), lookup)


def test_message_signed_with_another_key_is_refused() -> None:
    registered, forged = generate_signing_keypair(), generate_signing_keypair()
    lookup = StaticKeyLookup({(DSO, UsefRole.DSO): registered.public_key_b64})

    with pytest.raises(UftpSignatureError, match="does not verify"):
        open_signed_message(sign_message(FLEX_REQUEST, UsefRole.DSO, forged.private_key_b64), lookup)


def test_unsigned_or_unknown_sender_messages_are_refused() -> None:
    keys = generate_signing_keypair()
    lookup = StaticKeyLookup({})

    with pytest.raises(UftpSignatureError, match="not signed"):
        open_signed_message(to_xml(FLEX_REQUEST), lookup)
    with pytest.raises(UftpSignatureError, match="no public key"):
        open_signed_message(sign_message(FLEX_REQUEST, UsefRole.DSO, keys.private_key_b64), lookup)
    short_body = b'<SignedMessage SenderDomain="dso.example.com" SenderRole="DSO" Body="AAAA"/>'
    with pytest.raises(UftpSignatureError, match="not signed"):
        open_signed_message(short_body, StaticKeyLookup({(DSO, UsefRole.DSO): keys.public_key_b64}))
