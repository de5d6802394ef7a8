"""Value objects of the congestion market in domain words (kW, EUR, ISP numbers of the local day)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from vpp.domain.errors import InvalidInput
from vpp.domain.pools import PoolId, PoolKind

ISP = timedelta(minutes=15)


def day_isp_starts(period: date, time_zone: str) -> list[datetime]:
    """UTC starts of ISPs 1..N of a local day (92, 96 or 100 ISPs)."""
    try:
        zone = ZoneInfo(time_zone)
    except (KeyError, ValueError) as exc:
        raise InvalidInput(f"unknown TimeZone {time_zone!r}") from exc
    start = datetime.combine(period, time(0), zone).astimezone(UTC)
    end = datetime.combine(period + timedelta(days=1), time(0), zone).astimezone(UTC)
    return [start + ISP * i for i in range((end - start) // ISP)]


def isp_start(period: date, time_zone: str, isp: int) -> datetime:
    """UTC start of ISP number ``isp`` (1-based) of a local day."""
    starts = day_isp_starts(period, time_zone)
    if not 1 <= isp <= len(starts):
        raise InvalidInput(f"ISP {isp} is outside 1..{len(starts)} of {period.isoformat()}")
    return starts[isp - 1]


def congestion_pool(congestion_point: str) -> str:
    """The pool of a UFTP congestion point: ``ean.<EAN>`` becomes ``congestion_point:<EAN>``."""
    key = congestion_point[4:] if congestion_point.lower().startswith("ean.") else congestion_point
    if not key:
        raise InvalidInput("empty congestion point")
    return str(PoolId(PoolKind.CONGESTION_POINT, key))


@dataclass(frozen=True, slots=True)
class RequestedIsp:
    """A requested ISP: the DSO's wanted power band (kW, negative = less consumption)."""

    isp: int
    min_kw: float
    max_kw: float


@dataclass(frozen=True, slots=True)
class FlexRequestIn:
    """A DSO's request for flexibility on one congestion point and local day (only Requested ISPs)."""

    dso_domain: str
    message_id: str
    congestion_point: str
    period: date
    time_zone: str
    requested: tuple[RequestedIsp, ...]
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class OfferPlan:
    """What we answer a request with: the day's prognosis and the reduction offered per requested ISP."""

    prognosis_kw: tuple[float, ...]
    offered_kw: tuple[tuple[int, float], ...]
    price_eur: Decimal


@dataclass(frozen=True, slots=True)
class FlexOrderIn:
    """A DSO's order of one of our offer options (power per ISP in kW, negative = reduction)."""

    dso_domain: str
    message_id: str
    order_reference: str
    flex_offer_message_id: str | None
    option_reference: str | None
    congestion_point: str
    period: date
    time_zone: str
    price_eur: Decimal
    activation_factor: Decimal
    isps: tuple[tuple[int, float], ...]


@dataclass(frozen=True, slots=True)
class SettledIsp:
    """The DSO's settled figures of one ISP (kW; delivered and deficiency as magnitudes)."""

    isp: int
    baseline_kw: float
    ordered_kw: float
    actual_kw: float
    delivered_kw: float
    deficiency_kw: float


@dataclass(frozen=True, slots=True)
class OrderSettlementIn:
    """The DSO's settlement of one of our orders."""

    order_reference: str
    congestion_point: str
    period: date
    price_eur: Decimal
    penalty_eur: Decimal
    net_eur: Decimal
    isps: tuple[SettledIsp, ...]


@dataclass(frozen=True, slots=True)
class SettlementVerdict:
    """Our answer to one order settlement: accepted, or disputed with a reason and the differing ISPs."""

    order_reference: str
    accepted: bool
    reason: str = ""
    differing_isps: tuple[int, ...] = ()
