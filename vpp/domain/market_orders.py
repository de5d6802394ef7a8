"""What bids hand to a market and read back from it, in the domain's units (kW, EUR/MWh, UTC).

The market adapters (adapters/markets) turn these into their platforms' documents and back, through the ports
in ``vpp.ports`` (``DayAheadDocuments``, ``AfrrDocuments``); wire codes, MW lots and XML stay there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime


@dataclass(frozen=True)
class PriceLimits:
    """Harmonised SDAC clearing price limits; check the NEMO Committee before relying on the defaults."""

    min_price_eur_per_mwh: float = -500.0
    max_price_eur_per_mwh: float = 4_000.0
    max_points_per_curve: int = 200


@dataclass(frozen=True)
class CurvePoint:
    """The pool's demand if the MTU clears at this price."""

    price_eur_per_mwh: float
    demand_kw: float


@dataclass(frozen=True)
class MtuCurve:
    """A demand curve for one 15-minute MTU, points in increasing price order."""

    mtu_start_utc: datetime
    points: Sequence[CurvePoint]


@dataclass(frozen=True)
class CurveOrder:
    """The pool's curve order for one delivery day and bidding area."""

    portfolio: str
    area_code: str
    delivery_day: date
    curves: Sequence[MtuCurve]
    auction_id: str | None = None
    comment: str | None = None
    market_time_zone: str = "Europe/Amsterdam"
    limits: PriceLimits = field(default_factory=PriceLimits)


@dataclass(frozen=True)
class ClearingResult:
    """Clearing price and the pool's accepted demand for one MTU."""

    mtu_start_utc: datetime
    mtu_end_utc: datetime
    price_eur_per_mwh: float
    accepted_demand_kw: float




@dataclass(frozen=True)
class AfrrCapacityOffer:
    """Balancing capacity offered for one product (e.g. a 4-hour slice); ``direction`` "up" (less consumption)
    or "down" (more consumption)."""

    bid_id: str
    direction: str
    product_start_utc: datetime
    product_hours: float
    capacity_kw: float
    capacity_price_eur_per_mw_per_h: float
    energy_price_eur_per_mwh: float | None = None


@dataclass(frozen=True)
class AfrrEnergyOffer:
    """Balancing energy offered for one 15-minute MTU; ``direction`` "up" or "down" as for capacity."""

    bid_id: str
    direction: str
    mtu_start_utc: datetime
    volume_kw: float
    price_eur_per_mwh: float


@dataclass(frozen=True)
class AfrrBidDocument:
    """One aFRR bid document: who sends it to whom for which area, its bids, and the limits they must keep."""

    document_id: str
    revision: int
    created_at_utc: datetime
    sender_eic: str
    receiver_eic: str
    domain_eic: str
    bids: Sequence[AfrrCapacityOffer | AfrrEnergyOffer]
    minimum_bid_kw: float
    energy_price_limit_eur_per_mwh: float
