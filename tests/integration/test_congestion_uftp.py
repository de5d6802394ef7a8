"""The congestion market over UFTP: a simulated DSO on real HTTP against our service, on SQLite and PostgreSQL."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import select

from adapters.markets.uftp import generate_signing_keypair, sign_message, to_xml
from adapters.markets.uftp.messages import (
    AcceptedDisputed,
    AcceptedRejected,
    Disposition,
    DPrognosis,
    FlexOffer,
    FlexOfferOption,
    FlexOfferResponse,
    FlexOrder,
    FlexOrderResponse,
    FlexRequest,
    FlexRequestIsp,
    FlexRequestResponse,
    FlexSettlementResponse,
    PowerIsp,
    UsefRole,
)
from adapters.markets.uftp.router import DEFAULT_PATH
from sim.dso import ordered_reduction_kw
from tests.conftest import make_key
from tests.integration import test_congestion_support as support
from tests.integration.test_congestion_support import DAY, POINT, POOL, Stack
from vpp.commitments import service as commitments
from vpp.congestion.flexsource import StaticFlexSource
from vpp.congestion.tables import UftpMessage, UftpOutbox
from vpp.congestion.values import day_isp_starts
from vpp.db import unit_of_work
from vpp.domain.commitments import CommitmentKind

congestion_engine, factory, flex, stack = support.congestion_engine, support.factory, support.flex, support.stack
XML = {"Content-Type": "text/xml; charset=utf-8"}
REQUESTED = [(69, 4, -200.0, -100.0)]


def _request_and_offer(stack: Stack) -> tuple[FlexRequest, FlexOffer]:
    request = stack.dso.request_flex(POINT, DAY, REQUESTED)
    return request, stack.dso.wait_for(FlexOffer, lambda m: m.flex_request_message_id == request.message_id)


def _messages(stack: Stack) -> list[UftpMessage]:
    with unit_of_work(stack.factory) as session:
        return list(session.scalars(select(UftpMessage).order_by(UftpMessage.created_at)))


def test_signed_flex_request_from_the_simulated_dso_yields_signed_flex_offers_delivered_over_http(
    stack: Stack, flex: StaticFlexSource
) -> None:
    request, offer = _request_and_offer(stack)

    response = stack.dso.wait_for(FlexRequestResponse)
    assert response.result is AcceptedRejected.ACCEPTED
    assert response.flex_request_message_id == request.message_id
    (option,) = offer.offer_options
    assert option.isps == (PowerIsp(start=69, duration=4, power_w=-150_000),)
    assert float(option.price_eur) == 0.15 * 4 * 0.25 * 200.0
    assert offer.conversation_id == request.conversation_id
    prognosis = stack.dso.wait_for(DPrognosis)
    assert offer.d_prognosis_message_id == prognosis.message_id
    assert sum(i.duration for i in prognosis.isps) == 96 and {i.power_w for i in prognosis.isps} == {400_000}
    assert flex.asked_reliability == [stack.settings.uftp_offer_reliability]
    assert stack.dso.refused == []  # the DSO verified every signature with our public key
    logged = _messages(stack)
    assert [(m.direction, m.message_type, m.status) for m in logged] == [
        ("in", "FlexRequest", "processed"),
        ("out", "FlexRequestResponse", "delivered"),
        ("out", "D-Prognosis", "delivered"),
        ("out", "FlexOffer", "delivered"),
    ]
    assert "uftp.deliver_outbox" in stack.queue.names


def test_unsigned_or_wrongly_signed_message_is_refused_with_401_and_not_processed(stack: Stack) -> None:
    request = FlexRequest(
        sender_domain=stack.dso.domain, recipient_domain=stack.settings.uftp_domain, period=DAY,
        congestion_point=POINT, expiration_date_time=datetime.now(UTC) + timedelta(hours=1),
        isps=(FlexRequestIsp(start=69, min_power_w=-200_000, max_power_w=-100_000),),
    )
    unsigned = stack.client.post(DEFAULT_PATH, content=to_xml(request), headers=XML)
    forged_body = sign_message(request, UsefRole.DSO, generate_signing_keypair().private_key_b64)
    forged = stack.client.post(DEFAULT_PATH, content=forged_body, headers=XML)

    assert (unsigned.status_code, forged.status_code) == (401, 401)
    assert "not signed" in unsigned.text and "does not verify" in forged.text
    assert _messages(stack) == []
    assert stack.dso.received == []


def test_flex_order_becomes_flex_order_commitments_per_isp(stack: Stack) -> None:
    request, _offer = _request_and_offer(stack)

    (order,) = stack.dso.order(request, needed_kw=150.0)

    answer = stack.dso.wait_for(FlexOrderResponse)
    assert answer.result is AcceptedRejected.ACCEPTED and answer.flex_order_message_id == order.message_id
    starts = day_isp_starts(DAY, "Europe/Amsterdam")
    with unit_of_work(stack.factory) as session:
        rows = commitments.list_for(session, [POOL], starts[68], starts[72], [CommitmentKind.FLEX_ORDER])
    assert [(c.isp_start, c.power_kw, c.source) for c in rows] == [(starts[i], 150.0, "uftp") for i in range(68, 72)]
    assert rows[0].reference.endswith(order.order_reference)
    assert rows[0].price_eur_per_mwh is not None and abs(rows[0].price_eur_per_mwh - 200.0) < 1e-9


def test_flex_order_that_does_not_match_the_offer_is_rejected_with_a_reason(stack: Stack) -> None:
    _request, offer = _request_and_offer(stack)
    (option,) = offer.offer_options
    greedy = FlexOrder(
        sender_domain=stack.dso.domain, recipient_domain=offer.sender_domain, conversation_id=offer.conversation_id,
        period=offer.period, congestion_point=offer.congestion_point, flex_offer_message_id=offer.message_id,
        option_reference=option.option_reference, price_eur=option.price_eur, order_reference="ORD-GREEDY",
        isps=(PowerIsp(start=69, duration=1, power_w=-200_000), PowerIsp(start=70, duration=3, power_w=-150_000)),
    )

    stack.dso.send(greedy)

    answer = stack.dso.wait_for(FlexOrderResponse)
    assert answer.result is AcceptedRejected.REJECTED
    assert answer.rejection_reason == "ISPs differ from the FlexOffer: 69"
    with unit_of_work(stack.factory) as session:
        start = day_isp_starts(DAY, "Europe/Amsterdam")[0]
        assert commitments.list_for(session, [POOL], start, start + timedelta(days=1)) == []
    assert _messages(stack)[-2].status == "rejected"


def test_flex_settlement_matching_our_numbers_is_accepted_and_a_differing_one_disputed_with_the_isps(
    stack: Stack, flex: StaticFlexSource
) -> None:
    first_request, _ = _request_and_offer(stack)
    (first,) = stack.dso.order(first_request, needed_kw=150.0, reference_prefix="A")
    second_request, _ = _request_and_offer(stack)
    (second,) = stack.dso.order(second_request, needed_kw=150.0, reference_prefix="B")
    starts = day_isp_starts(DAY, "Europe/Amsterdam")
    measured = {69: 250.0, 70: 260.0, 71: 300.0, 72: 240.0}  # 400 kW baseline, 150 kW ordered
    for isp, kw in measured.items():
        flex.measured_kw[(POOL, starts[isp - 1])] = kw

    matching = stack.dso.settlement_for(first, measured)
    differing = stack.dso.settlement_for(second, measured, misreport_delivered_kw={70: 150.0})
    stack.dso.settle([matching, differing])

    answer = stack.dso.wait_for(FlexSettlementResponse)
    assert answer.result is AcceptedRejected.ACCEPTED
    verdicts = {s.order_reference: s for s in answer.flex_order_settlement_statuses}
    assert verdicts[first.order_reference].disposition is AcceptedDisputed.ACCEPTED
    assert verdicts[second.order_reference].disposition is AcceptedDisputed.DISPUTED
    assert verdicts[second.order_reference].dispute_reason is not None
    assert verdicts[second.order_reference].dispute_reason.startswith("ISP 70 differ")
    headers = {"Authorization": f"Bearer {make_key(stack.factory, 'trader')}"}
    orders = stack.client.get("/api/v1/congestion/orders", headers=headers).json()
    states = {o["order_reference"]: (o["settlement_status"], o["our_net_eur"]) for o in orders}
    assert states[first.order_reference][0] == "accepted"
    assert states[second.order_reference][0] == "disputed"
    assert abs(states[first.order_reference][1] - float(matching.net_settlement_eur)) < 1e-3
    assert sum(ordered_reduction_kw(first).values()) == 600.0


def test_flex_settlement_with_missing_measured_load_is_disputed_never_settled_as_zero(stack: Stack) -> None:
    request, _ = _request_and_offer(stack)
    (order,) = stack.dso.order(request, needed_kw=150.0)
    settlement = stack.dso.settlement_for(order, {69: 250.0, 70: 250.0, 71: 250.0, 72: 250.0})

    stack.dso.settle([settlement])

    (status,) = stack.dso.wait_for(FlexSettlementResponse).flex_order_settlement_statuses
    assert status.disposition is AcceptedDisputed.DISPUTED
    assert status.dispute_reason == "No measured load for ISP 69, 70, 71, 72"


def test_flex_settlement_for_an_unknown_order_is_refused_with_the_reason(stack: Stack) -> None:
    request, _ = _request_and_offer(stack)
    (order,) = stack.dso.order(request, needed_kw=150.0)
    settlement = stack.dso.settlement_for(order, {69: 250.0, 70: 250.0, 71: 250.0, 72: 250.0})

    stack.dso.settle([replace(settlement, order_reference="NEVER-ORDERED")])

    answer = stack.dso.wait_for(FlexSettlementResponse)
    assert answer.result is AcceptedRejected.REJECTED
    assert answer.rejection_reason == "Unknown Reference: order NEVER-ORDERED was never accepted"
    (status,) = answer.flex_order_settlement_statuses
    assert status.disposition is AcceptedDisputed.DISPUTED


def test_duplicate_message_ids_are_not_processed_twice(stack: Stack) -> None:
    request = stack.dso.request_flex(POINT, DAY, REQUESTED)

    stack.dso.send(request)

    assert len(stack.dso.messages(FlexOffer)) == 1
    assert len(stack.dso.messages(FlexRequestResponse)) == 1
    inbound = [m for m in _messages(stack) if m.direction == "in"]
    assert [(m.message_type, m.message_id) for m in inbound] == [("FlexRequest", request.message_id)]
    with unit_of_work(stack.factory) as session:
        assert len(list(session.scalars(select(UftpOutbox)))) == 3


def test_flex_request_for_an_unregistered_congestion_point_is_rejected_with_the_reason(stack: Stack) -> None:
    stack.dso.request_flex("ean.871685900000000001", DAY, REQUESTED)

    answer = stack.dso.wait_for(FlexRequestResponse)
    assert answer.result is AcceptedRejected.REJECTED
    assert answer.rejection_reason is not None and answer.rejection_reason.startswith("Unknown CongestionPoint")
    assert stack.dso.messages(FlexOffer) == []


def test_traders_read_the_message_log_with_filters_and_other_roles_may_not(stack: Stack) -> None:
    request, _ = _request_and_offer(stack)
    trader = {"Authorization": f"Bearer {make_key(stack.factory, 'trader')}"}
    dso = {"Authorization": f"Bearer {make_key(stack.factory, 'dso')}"}

    everything = stack.client.get("/api/v1/congestion/messages", headers=trader)
    offers = stack.client.get(
        "/api/v1/congestion/messages",
        params={"message_type": "FlexOffer", "include_xml": True, "conversation_id": request.conversation_id},
        headers=trader,
    )

    assert everything.status_code == 200 and len(everything.json()) == 4
    (offer,) = offers.json()
    assert offer["direction"] == "out" and offer["status"] == "delivered" and offer["xml"].startswith("<?xml")
    assert stack.client.get("/api/v1/congestion/messages", headers=dso).status_code == 403
    assert stack.client.get("/api/v1/congestion/orders").status_code == 401


def test_only_requested_reductions_are_offered_capped_by_the_request_and_by_what_is_available(stack: Stack) -> None:
    request = FlexRequest(
        sender_domain=stack.dso.domain, recipient_domain=stack.settings.uftp_domain, period=DAY,
        congestion_point=POINT, expiration_date_time=datetime.now(UTC) + timedelta(hours=1),
        isps=(
            FlexRequestIsp(start=10, min_power_w=-100_000, max_power_w=-50_000),
            FlexRequestIsp(start=11, min_power_w=-300_000, max_power_w=-200_000),
            FlexRequestIsp(start=12, min_power_w=0, max_power_w=50_000),
            FlexRequestIsp(start=20, min_power_w=-300_000, max_power_w=0, disposition=Disposition.AVAILABLE),
        ),
    )

    stack.dso.send(request)

    (option,) = stack.dso.wait_for(FlexOffer).offer_options
    assert option.isps == (PowerIsp(start=10, power_w=-100_000), PowerIsp(start=11, power_w=-150_000))


def test_authentic_but_misdirected_or_expired_messages_are_logged_and_answered_rejected(stack: Stack) -> None:
    stale = FlexRequest(
        sender_domain=stack.dso.domain, recipient_domain=stack.settings.uftp_domain, period=DAY,
        congestion_point=POINT, expiration_date_time=datetime.now(UTC) - timedelta(minutes=1),
        isps=(FlexRequestIsp(start=69, min_power_w=-200_000, max_power_w=-100_000),),
    )
    misdirected = FlexOffer(
        sender_domain=stack.dso.domain, recipient_domain=stack.settings.uftp_domain, period=DAY,
        congestion_point=POINT, expiration_date_time=datetime.now(UTC) + timedelta(hours=1),
        offer_options=(
            FlexOfferOption(option_reference="x", price_eur=Decimal(1), isps=(PowerIsp(start=1, power_w=0),)),
        ),
    )

    stack.dso.send(stale)
    stack.dso.send(misdirected)

    assert str(stack.dso.wait_for(FlexRequestResponse).rejection_reason).startswith("FlexRequest expired")
    assert stack.dso.wait_for(FlexOfferResponse).rejection_reason == "Invalid Message: FlexOffer from DSO"
    assert [(m.message_type, m.status) for m in _messages(stack) if m.direction == "in"] == [
        ("FlexRequest", "rejected"),
        ("FlexOffer", "rejected"),
    ]
