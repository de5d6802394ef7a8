"""Activation_MarketDocument 6.4 (IEC 62325-451-7): parse activations into domain values, and write them.

Quantities arrive in MW (MAW) or kW (KWT) and leave as kW magnitudes plus a direction;
``consumption_delta_kw`` applies the house sign (upward regulation = less consumption = negative delta).
Each Point covers one ``resolution`` step from the Period start (curve type A01, fixed-size blocks).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from lxml import etree

from adapters.markets.entsoe._common import (
    KW_PER_MW,
    CodingScheme,
    Direction,
    Reader,
    check_eic,
    element_builder,
    format_duration,
    format_second,
    parse_duration,
    parse_root,
    parse_timestamp,
    reader,
    require_utc,
    to_bytes,
)
from adapters.markets.entsoe.validation import validate
from vpp.domain.errors import InvalidInput

NAMESPACE = "urn:iec62325.351:tc57wg16:451-7:activationdocument:6:4"

DOCUMENT_TYPE_ACTIVATION = "A39"
PROCESS_TYPE_AFRR = "A51"
BUSINESS_TYPE_AFRR = "A96"
STATUS_ACTIVATED = "A07"
ROLE_SYSTEM_OPERATOR = "A04"
ROLE_BSP = "A46"
_KW_PER_UNIT = {"MAW": KW_PER_MW, "KWT": 1.0}


@dataclass(frozen=True)
class ActivationPoint:
    """Activated power for one time step."""

    start_utc: datetime
    end_utc: datetime
    power_kw: float


@dataclass(frozen=True)
class ActivationTimeSeries:
    """Activated power of one resource/bid in one direction."""

    series_id: str
    resource_provider_eic: str
    business_type: str
    acquiring_domain_eic: str
    connecting_domain_eic: str
    direction: Direction
    status: str
    points: tuple[ActivationPoint, ...]
    registered_resource_mrid: str | None = None
    auction_id: str | None = None

    def consumption_delta_kw(self, point: ActivationPoint) -> float:
        """Requested change of consumption for ``point`` (negative for upward regulation)."""
        return -point.power_kw if self.direction is Direction.UP else point.power_kw


@dataclass(frozen=True)
class ActivationDocument:
    """An Activation_MarketDocument reduced to what dispatch and settlement need."""

    document_id: str
    revision_number: int
    document_type: str
    process_type: str | None
    sender_eic: str
    receiver_eic: str
    created_at_utc: datetime
    period_start_utc: datetime
    period_end_utc: datetime
    time_series: tuple[ActivationTimeSeries, ...]
    domain_eic: str | None = None
    order_document_id: str | None = None


def parse_activation_document(xml: bytes) -> ActivationDocument:
    """Validate and parse an Activation_MarketDocument 6.4."""
    validate(xml, "activation")
    root = parse_root(xml, NAMESPACE, "Activation_MarketDocument")
    read = reader(NAMESPACE)
    return ActivationDocument(
        document_id=read.text(root, "mRID"),
        revision_number=int(read.text(root, "revisionNumber")),
        document_type=read.text(root, "type"),
        process_type=read.optional_text(root, "process.processType"),
        sender_eic=read.text(root, "sender_MarketParticipant.mRID"),
        receiver_eic=read.text(root, "receiver_MarketParticipant.mRID"),
        created_at_utc=parse_timestamp(read.text(root, "createdDateTime")),
        period_start_utc=parse_timestamp(read.text(root, "activation_Time_Period.timeInterval/start")),
        period_end_utc=parse_timestamp(read.text(root, "activation_Time_Period.timeInterval/end")),
        time_series=tuple(_parse_series(read, series) for series in read.findall(root, "TimeSeries")),
        domain_eic=read.optional_text(root, "domain.mRID"),
        order_document_id=read.optional_text(root, "order_MarketDocument.mRID"),
    )


def _parse_series(read: Reader, series: etree._Element) -> ActivationTimeSeries:
    unit = read.text(series, "measurement_Unit.name")
    if unit not in _KW_PER_UNIT:
        raise InvalidInput(f"unsupported measurement unit {unit!r}")
    points: list[ActivationPoint] = []
    for period in read.findall(series, "Period"):
        start = parse_timestamp(read.text(period, "timeInterval/start"))
        end = parse_timestamp(read.text(period, "timeInterval/end"))
        step = parse_duration(read.text(period, "resolution"))
        for point in read.findall(period, "Point"):
            point_start = start + (int(read.text(point, "position")) - 1) * step
            if point_start + step > end:
                raise InvalidInput("activation point lies outside its period")
            quantity = float(read.text(point, "quantity"))
            points.append(ActivationPoint(point_start, point_start + step, quantity * _KW_PER_UNIT[unit]))
    return ActivationTimeSeries(
        series_id=read.text(series, "mRID"),
        resource_provider_eic=read.text(series, "resourceProvider_MarketParticipant.mRID"),
        business_type=read.text(series, "businessType"),
        acquiring_domain_eic=read.text(series, "acquiring_Domain.mRID"),
        connecting_domain_eic=read.text(series, "connecting_Domain.mRID"),
        direction=Direction(read.text(series, "flowDirection.direction")),
        status=read.text(series, "marketObjectStatus.status"),
        points=tuple(sorted(points, key=lambda item: item.start_utc)),
        registered_resource_mrid=read.optional_text(series, "registeredResource.mRID"),
        auction_id=read.optional_text(series, "auction.mRID"),
    )


@dataclass(frozen=True)
class ActivationSeriesInput:
    """One activated series to write: consecutive steps of ``resolution`` from ``start_utc``."""

    series_id: str
    resource_provider_eic: str
    direction: Direction
    start_utc: datetime
    power_kw: Sequence[float]
    resolution: timedelta = timedelta(minutes=15)
    status: str = STATUS_ACTIVATED
    business_type: str = BUSINESS_TYPE_AFRR


@dataclass(frozen=True)
class ActivationDocumentInput:
    """An activation document as a TSO (or our simulator) would send it to a BSP."""

    document_id: str
    sender_eic: str
    receiver_eic: str
    domain_eic: str
    created_at_utc: datetime
    series: Sequence[ActivationSeriesInput]
    revision_number: int = 1
    process_type: str = PROCESS_TYPE_AFRR


def build_activation_document(document: ActivationDocumentInput) -> bytes:
    """Write an Activation_MarketDocument 6.4 in MW, validated against the XSD."""
    for eic, what in (
        (document.sender_eic, "sender_eic"),
        (document.receiver_eic, "receiver_eic"),
        (document.domain_eic, "domain_eic"),
    ):
        check_eic(eic, what)
    if not document.series:
        raise InvalidInput("an activation document needs at least one series")
    spans = [
        (require_utc(item.start_utc, "start_utc"), item.start_utc + item.resolution * len(item.power_kw))
        for item in document.series
    ]
    xml = element_builder(NAMESPACE)
    root = xml.root("Activation_MarketDocument")
    xml.add(root, "mRID", document.document_id)
    xml.add(root, "revisionNumber", str(document.revision_number))
    xml.add(root, "type", DOCUMENT_TYPE_ACTIVATION)
    xml.add(root, "process.processType", document.process_type)
    xml.add(root, "sender_MarketParticipant.mRID", document.sender_eic, codingScheme=CodingScheme.EIC)
    xml.add(root, "sender_MarketParticipant.marketRole.type", ROLE_SYSTEM_OPERATOR)
    xml.add(root, "receiver_MarketParticipant.mRID", document.receiver_eic, codingScheme=CodingScheme.EIC)
    xml.add(root, "receiver_MarketParticipant.marketRole.type", ROLE_BSP)
    xml.add(root, "createdDateTime", format_second(require_utc(document.created_at_utc, "created_at_utc")))
    xml.add_interval(root, "activation_Time_Period.timeInterval", min(s for s, _ in spans), max(e for _, e in spans))
    xml.add(root, "domain.mRID", document.domain_eic, codingScheme=CodingScheme.EIC)
    for item, (start, end) in zip(document.series, spans, strict=True):
        if not item.power_kw:
            raise InvalidInput(f"series {item.series_id} has no points")
        series = xml.add(root, "TimeSeries")
        xml.add(series, "mRID", item.series_id)
        xml.add(
            series,
            "resourceProvider_MarketParticipant.mRID",
            check_eic(item.resource_provider_eic, "resource_provider_eic"),
            codingScheme=CodingScheme.EIC,
        )
        xml.add(series, "businessType", item.business_type)
        xml.add(series, "acquiring_Domain.mRID", document.domain_eic, codingScheme=CodingScheme.EIC)
        xml.add(series, "connecting_Domain.mRID", document.domain_eic, codingScheme=CodingScheme.EIC)
        xml.add(series, "measurement_Unit.name", "MAW")
        xml.add(series, "flowDirection.direction", item.direction.value)
        xml.add(series, "marketObjectStatus.status", item.status)
        period = xml.add(series, "Period")
        xml.add_interval(period, "timeInterval", start, end)
        xml.add(period, "resolution", format_duration(item.resolution))
        for position, power_kw in enumerate(item.power_kw, start=1):
            point = xml.add(period, "Point")
            xml.add(point, "position", str(position))
            xml.add(point, "quantity", f"{power_kw / KW_PER_MW:.3f}")
    payload = to_bytes(root)
    validate(payload, "activation")
    return payload
