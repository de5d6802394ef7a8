"""Acknowledgement_MarketDocument 8.1 (IEC 62325-451-1): the receipt a TSO returns for a bid document.

Reason code A01 = fully accepted, A02 = fully rejected, A03 = some time series rejected (listed in
``Rejected_TimeSeries``); anything else is reported as not accepted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from lxml import etree

from adapters.markets.entsoe._common import (
    CodingScheme,
    ElementBuilder,
    check_eic,
    element_builder,
    format_second,
    parse_root,
    parse_timestamp,
    reader,
    require_utc,
    to_bytes,
)
from adapters.markets.entsoe.validation import validate
from vpp.domain.errors import InvalidInput

NAMESPACE = "urn:iec62325.351:tc57wg16:451-1:acknowledgementdocument:8:1"

REASON_FULLY_ACCEPTED = "A01"
REASON_FULLY_REJECTED = "A02"
REASON_PARTLY_REJECTED = "A03"


@dataclass(frozen=True)
class AcknowledgementReason:
    """A reason code with optional free text."""

    code: str
    text: str | None = None


@dataclass(frozen=True)
class RejectedTimeSeries:
    """A time series (bid) the receiver refused, with its reasons."""

    series_id: str
    reasons: tuple[AcknowledgementReason, ...] = ()


@dataclass(frozen=True)
class Acknowledgement:
    """A parsed or to-be-written acknowledgement of a received document."""

    document_id: str
    created_at_utc: datetime
    sender_eic: str
    sender_role: str
    receiver_eic: str
    reasons: Sequence[AcknowledgementReason]
    received_document_id: str | None = None
    received_revision_number: int | None = None
    received_document_type: str | None = None
    rejected_time_series: Sequence[RejectedTimeSeries] = ()
    receiver_role: str | None = None

    @property
    def fully_accepted(self) -> bool:
        """True when the receiver accepted the whole document."""
        return any(reason.code == REASON_FULLY_ACCEPTED for reason in self.reasons) and not (self.rejected_time_series)

    @property
    def rejected_series_ids(self) -> tuple[str, ...]:
        """Ids of the bids the receiver refused."""
        return tuple(series.series_id for series in self.rejected_time_series)


def parse_acknowledgement(xml: bytes) -> Acknowledgement:
    """Validate and parse an Acknowledgement_MarketDocument 8.1."""
    validate(xml, "acknowledgement")
    root = parse_root(xml, NAMESPACE, "Acknowledgement_MarketDocument")
    read = reader(NAMESPACE)

    def reasons_of(parent: etree._Element) -> tuple[AcknowledgementReason, ...]:
        return tuple(
            AcknowledgementReason(read.text(reason, "code"), read.optional_text(reason, "text"))
            for reason in read.findall(parent, "Reason")
        )

    revision = read.optional_text(root, "received_MarketDocument.revisionNumber")
    return Acknowledgement(
        document_id=read.text(root, "mRID"),
        created_at_utc=parse_timestamp(read.text(root, "createdDateTime")),
        sender_eic=read.text(root, "sender_MarketParticipant.mRID"),
        sender_role=read.text(root, "sender_MarketParticipant.marketRole.type"),
        receiver_eic=read.text(root, "receiver_MarketParticipant.mRID"),
        receiver_role=read.optional_text(root, "receiver_MarketParticipant.marketRole.type"),
        received_document_id=read.optional_text(root, "received_MarketDocument.mRID"),
        received_revision_number=int(revision) if revision else None,
        received_document_type=read.optional_text(root, "received_MarketDocument.type"),
        rejected_time_series=tuple(
            RejectedTimeSeries(read.text(series, "mRID"), reasons_of(series))
            for series in read.findall(root, "Rejected_TimeSeries")
        ),
        reasons=reasons_of(root),
    )


def build_acknowledgement(acknowledgement: Acknowledgement) -> bytes:
    """Write an Acknowledgement_MarketDocument 8.1, validated against the XSD."""
    if not acknowledgement.reasons:
        raise InvalidInput("an acknowledgement needs at least one reason")
    check_eic(acknowledgement.sender_eic, "sender_eic")
    check_eic(acknowledgement.receiver_eic, "receiver_eic")
    xml = element_builder(NAMESPACE)
    root = xml.root("Acknowledgement_MarketDocument")
    xml.add(root, "mRID", acknowledgement.document_id)
    xml.add(root, "createdDateTime", format_second(require_utc(acknowledgement.created_at_utc, "created_at_utc")))
    xml.add(root, "sender_MarketParticipant.mRID", acknowledgement.sender_eic, codingScheme=CodingScheme.EIC)
    xml.add(root, "sender_MarketParticipant.marketRole.type", acknowledgement.sender_role)
    xml.add(root, "receiver_MarketParticipant.mRID", acknowledgement.receiver_eic, codingScheme=CodingScheme.EIC)
    if acknowledgement.receiver_role:
        xml.add(root, "receiver_MarketParticipant.marketRole.type", acknowledgement.receiver_role)
    if acknowledgement.received_document_id:
        xml.add(root, "received_MarketDocument.mRID", acknowledgement.received_document_id)
    if acknowledgement.received_revision_number is not None:
        xml.add(root, "received_MarketDocument.revisionNumber", str(acknowledgement.received_revision_number))
    if acknowledgement.received_document_type:
        xml.add(root, "received_MarketDocument.type", acknowledgement.received_document_type)
    for rejected in acknowledgement.rejected_time_series:
        series = xml.add(root, "Rejected_TimeSeries")
        xml.add(series, "mRID", rejected.series_id)
        for reason in rejected.reasons:
            _add_reason(xml, series, reason)
    for reason in acknowledgement.reasons:
        _add_reason(xml, root, reason)
    payload = to_bytes(root)
    validate(payload, "acknowledgement")
    return payload


def _add_reason(xml: ElementBuilder, parent: etree._Element, reason: AcknowledgementReason) -> None:
    element = xml.add(parent, "Reason")
    xml.add(element, "code", reason.code)
    if reason.text:
        xml.add(element, "text", reason.text[:512])
