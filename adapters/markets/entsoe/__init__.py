"""ENTSO-E IEC 62325-451 documents for aFRR: ReserveBid 7.4 out, Activation 6.4 and Acknowledgement 8.1 in."""

from adapters.markets.entsoe._common import Direction
from adapters.markets.entsoe.acknowledgement import (
    Acknowledgement,
    AcknowledgementReason,
    RejectedTimeSeries,
    build_acknowledgement,
    parse_acknowledgement,
)
from adapters.markets.entsoe.activation import (
    ActivationDocument,
    ActivationDocumentInput,
    ActivationPoint,
    ActivationSeriesInput,
    ActivationTimeSeries,
    build_activation_document,
    parse_activation_document,
)
from adapters.markets.entsoe.reserve_bid import (
    AfrrCapacityBid,
    AfrrEnergyBid,
    ReserveBidDocumentInput,
    ReserveBidLimits,
    build_reserve_bid_document,
)
from adapters.markets.entsoe.validation import SchemaViolation, validate

__all__ = [
    "Acknowledgement",
    "AcknowledgementReason",
    "ActivationDocument",
    "ActivationDocumentInput",
    "ActivationPoint",
    "ActivationSeriesInput",
    "ActivationTimeSeries",
    "AfrrCapacityBid",
    "AfrrEnergyBid",
    "Direction",
    "RejectedTimeSeries",
    "ReserveBidDocumentInput",
    "ReserveBidLimits",
    "SchemaViolation",
    "build_acknowledgement",
    "build_activation_document",
    "build_reserve_bid_document",
    "parse_acknowledgement",
    "parse_activation_document",
    "validate",
]
