from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from adapters.markets.entsoe import (
    Acknowledgement,
    AcknowledgementReason,
    ActivationDocumentInput,
    ActivationSeriesInput,
    Direction,
    RejectedTimeSeries,
    SchemaViolation,
    build_acknowledgement,
    build_activation_document,
    parse_acknowledgement,
    parse_activation_document,
    validate,
)
from vpp.domain.errors import InvalidInput

TSO_EIC = "10XDE-RWENET---W"
BSP_EIC = "10X1001A1001A264"
AREA_EIC = "10YNL----------L"
START = datetime(2025, 10, 2, 8, 0, tzinfo=UTC)


def _activation_xml() -> bytes:
    return build_activation_document(
        ActivationDocumentInput(
            document_id="act-42",
            sender_eic=TSO_EIC,
            receiver_eic=BSP_EIC,
            domain_eic=AREA_EIC,
            created_at_utc=START,
            series=[
                ActivationSeriesInput("up-1", BSP_EIC, Direction.UP, START, [1_500.0, 2_000.0]),
                ActivationSeriesInput("down-1", BSP_EIC, Direction.DOWN, START + timedelta(minutes=30), [1_000.0]),
            ],
        )
    )


def test_generated_activation_document_validates_and_parses_into_kw_with_house_sign() -> None:
    xml = _activation_xml()
    validate(xml, "activation")

    document = parse_activation_document(xml)

    assert document.document_id == "act-42"
    assert document.period_start_utc == START
    assert document.period_end_utc == START + timedelta(minutes=45)
    up, down = document.time_series
    assert up.direction is Direction.UP
    assert [(p.start_utc, p.power_kw) for p in up.points] == [
        (START, 1_500.0),
        (START + timedelta(minutes=15), 2_000.0),
    ]
    assert up.consumption_delta_kw(up.points[0]) == -1_500.0
    assert down.consumption_delta_kw(down.points[0]) == 1_000.0


def test_activation_parsing_refuses_a_document_that_breaks_the_schema() -> None:
    tampered = _activation_xml().replace(b"<type>A39</type>", b"<type>XX</type>")

    with pytest.raises(SchemaViolation):
        parse_activation_document(tampered)


def test_activation_parsing_refuses_a_reserve_bid_document() -> None:
    with pytest.raises(InvalidInput):
        parse_activation_document(b"<ReserveBid_MarketDocument/>")


def _acknowledgement(**changes: object) -> Acknowledgement:
    values: dict[str, object] = {
        "document_id": "ack-1",
        "created_at_utc": START,
        "sender_eic": TSO_EIC,
        "sender_role": "A04",
        "receiver_eic": BSP_EIC,
        "receiver_role": "A46",
        "reasons": [AcknowledgementReason("A01")],
        "received_document_id": "doc-0001",
        "received_revision_number": 1,
        "received_document_type": "A37",
    }
    values.update(changes)
    return Acknowledgement(**values)  # type: ignore[arg-type]


def test_positive_acknowledgement_round_trips() -> None:
    xml = build_acknowledgement(_acknowledgement())
    validate(xml, "acknowledgement")

    parsed = parse_acknowledgement(xml)

    assert parsed.fully_accepted
    assert parsed.received_document_id == "doc-0001"
    assert parsed.received_revision_number == 1
    assert parsed.rejected_series_ids == ()


def test_partial_rejection_names_the_refused_bids_and_their_reasons() -> None:
    rejected = RejectedTimeSeries("en-down-1", (AcknowledgementReason("A59", "price above local cap"),))
    xml = build_acknowledgement(
        _acknowledgement(reasons=[AcknowledgementReason("A03")], rejected_time_series=[rejected])
    )

    parsed = parse_acknowledgement(xml)

    assert not parsed.fully_accepted
    assert parsed.rejected_series_ids == ("en-down-1",)
    assert parsed.rejected_time_series[0].reasons[0].text == "price above local cap"


def test_acknowledgement_without_reason_is_refused() -> None:
    with pytest.raises(InvalidInput, match="at least one reason"):
        build_acknowledgement(_acknowledgement(reasons=[]))
