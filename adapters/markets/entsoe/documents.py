"""The aFRR document port (``vpp.ports.AfrrDocuments``) as an ENTSO-E ReserveBid_MarketDocument 7.4."""

from __future__ import annotations

from datetime import timedelta

from adapters.markets.entsoe._common import Direction
from adapters.markets.entsoe.reserve_bid import (
    AfrrCapacityBid,
    AfrrEnergyBid,
    ReserveBidDocumentInput,
    ReserveBidLimits,
    build_reserve_bid_document,
)
from vpp.domain.market_orders import AfrrBidDocument, AfrrCapacityOffer, AfrrEnergyOffer

# The document's revisionNumber has at most three digits.
MAX_REVISION = 999


def _direction(direction: str) -> Direction:
    return Direction.UP if direction == "up" else Direction.DOWN


def _bid(offer: AfrrCapacityOffer | AfrrEnergyOffer) -> AfrrCapacityBid | AfrrEnergyBid:
    if isinstance(offer, AfrrCapacityOffer):
        return AfrrCapacityBid(
            bid_id=offer.bid_id, direction=_direction(offer.direction), product_start_utc=offer.product_start_utc,
            capacity_kw=offer.capacity_kw, capacity_price_eur_per_mw_per_h=offer.capacity_price_eur_per_mw_per_h,
            product_length=timedelta(hours=offer.product_hours),
            energy_price_eur_per_mwh=offer.energy_price_eur_per_mwh)
    return AfrrEnergyBid(
        bid_id=offer.bid_id, direction=_direction(offer.direction), mtu_start_utc=offer.mtu_start_utc,
        volume_kw=offer.volume_kw, price_eur_per_mwh=offer.price_eur_per_mwh)


class ReserveBidDocuments:
    """aFRR capacity and energy bids written as one XSD-valid ReserveBid_MarketDocument."""

    def write_bids(self, document: AfrrBidDocument) -> bytes:
        """The document's bids in ENTSO-E codes and MW; InvalidInput for a bid outside the limits."""
        return build_reserve_bid_document(ReserveBidDocumentInput(
            document_id=document.document_id, sender_eic=document.sender_eic, receiver_eic=document.receiver_eic,
            domain_eic=document.domain_eic, created_at_utc=document.created_at_utc,
            bids=[_bid(offer) for offer in document.bids],
            revision_number=min(document.revision, MAX_REVISION),
            limits=ReserveBidLimits(minimum_bid_kw=document.minimum_bid_kw,
                                    energy_price_limit_eur_per_mwh=document.energy_price_limit_eur_per_mwh)))
