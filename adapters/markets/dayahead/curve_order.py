"""Day-ahead price-quantity curve orders per 15-minute MTU, exported as exchange-style JSON and CSV.

A curve order gives, for each MTU, step points (price, volume) that the exchange interpolates; a curve's
volume must not increase with price. Volumes are MW (+ = buy = the pool's charging demand, - = sell = its V2G
cars discharging where the price is high), rounded to the
0.1 MW lot; prices EUR/MWh at 0.01, within the harmonised SDAC limits (-500 / +4,000 EUR/MWh). Each exported
curve is padded to start at the minimum and end at the maximum price, since exchanges require both.

JSON (shaped like the Nord Pool auction API curve order)::

    {"auctionId": "...", "portfolio": "...", "areaCode": "NL", "comment": "...",
     "curves": [{"contractId": "...", "deliveryStart": "2025-10-01T22:00:00Z",
                 "deliveryEnd": "2025-10-01T22:15:00Z",
                 "curvePoints": [{"price": -500.0, "volume": 1.2}, ..., {"price": 4000.0, "volume": 0.0}]}]}

CSV, one row per curve point in MTU then price order::

    delivery_start_utc,delivery_end_utc,contract_id,price_eur_per_mwh,volume_mw
    2025-10-01T22:00:00Z,2025-10-01T22:15:00Z,NL-QH-20251002-01,-500.00,1.2

``contractId`` is ``<auctionId or area>-QH-<local delivery date>-<MTU number in the local day, from 01>``.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from vpp.domain.errors import InvalidInput
from vpp.domain.market_orders import CurveOrder, MtuCurve, PriceLimits

MTU = timedelta(minutes=15)
KW_PER_MW = 1000.0
CSV_COLUMNS = ("delivery_start_utc", "delivery_end_utc", "contract_id", "price_eur_per_mwh", "volume_mw")


@dataclass(frozen=True)
class _WirePoint:
    price_eur_per_mwh: float
    volume_mw: float


@dataclass(frozen=True)
class _WireCurve:
    contract_id: str
    start_utc: datetime
    points: tuple[_WirePoint, ...]


def validate_curve_order(order: CurveOrder) -> None:
    """Raise InvalidInput with the reason if a curve is non-monotone, off-grid or outside the price limits."""
    _wire_curves(order)


def curve_order_to_json(order: CurveOrder) -> str:
    """Export the order as exchange-style JSON (see module docstring)."""
    curves = _wire_curves(order)
    document = {
        "auctionId": order.auction_id,
        "portfolio": order.portfolio,
        "areaCode": order.area_code,
        "comment": order.comment,
        "curves": [
            {
                "contractId": curve.contract_id,
                "deliveryStart": _iso(curve.start_utc),
                "deliveryEnd": _iso(curve.start_utc + MTU),
                "curvePoints": [{"price": p.price_eur_per_mwh, "volume": p.volume_mw} for p in curve.points],
            }
            for curve in curves
        ],
    }
    return json.dumps(document, indent=2)


def curve_order_to_csv(order: CurveOrder) -> str:
    """Export the order as long-format CSV, one row per curve point (see module docstring)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for curve in _wire_curves(order):
        for point in curve.points:
            writer.writerow(
                (
                    _iso(curve.start_utc),
                    _iso(curve.start_utc + MTU),
                    curve.contract_id,
                    f"{point.price_eur_per_mwh:.2f}",
                    f"{point.volume_mw:.1f}",
                )
            )
    return buffer.getvalue()


def _wire_curves(order: CurveOrder) -> list[_WireCurve]:
    if not order.curves:
        raise InvalidInput("a curve order needs at least one MTU curve")
    zone = ZoneInfo(order.market_time_zone)
    day_start = datetime.combine(order.delivery_day, datetime.min.time(), zone).astimezone(UTC)
    day_end = datetime.combine(order.delivery_day + timedelta(days=1), datetime.min.time(), zone).astimezone(UTC)
    prefix = f"{order.auction_id or order.area_code}-QH-{order.delivery_day:%Y%m%d}"
    seen: set[datetime] = set()
    curves = []
    for curve in sorted(order.curves, key=lambda item: _aware(item.mtu_start_utc)):
        start = _aware(curve.mtu_start_utc)
        if start.minute % 15 or start.second or start.microsecond:
            raise InvalidInput(f"MTU {_iso(start)} is not on the 15-minute grid", details={"mtu": _iso(start)})
        if not day_start <= start < day_end:
            raise InvalidInput(
                f"MTU {_iso(start)} lies outside delivery day {order.delivery_day}", details={"mtu": _iso(start)}
            )
        if start in seen:
            raise InvalidInput(f"MTU {_iso(start)} appears twice", details={"mtu": _iso(start)})
        seen.add(start)
        number = int((start - day_start) / MTU) + 1
        points = _wire_points(curve, order.limits)
        curves.append(_WireCurve(f"{prefix}-{number:02d}", start, points))
    return curves


def _wire_points(curve: MtuCurve, limits: PriceLimits) -> tuple[_WirePoint, ...]:
    mtu = _iso(_aware(curve.mtu_start_utc))
    if not curve.points:
        raise InvalidInput(f"MTU {mtu}: the curve has no points", details={"mtu": mtu})
    points: list[_WirePoint] = []
    for index, point in enumerate(curve.points):
        price = round(float(point.price_eur_per_mwh), 2)
        if not limits.min_price_eur_per_mwh <= price <= limits.max_price_eur_per_mwh:
            raise InvalidInput(
                f"MTU {mtu}: price {price} EUR/MWh is outside the limits "
                f"[{limits.min_price_eur_per_mwh}, {limits.max_price_eur_per_mwh}]",
                details={"mtu": mtu, "point": index},
            )
        if points and price <= points[-1].price_eur_per_mwh:
            raise InvalidInput(
                f"MTU {mtu}: prices must strictly increase along the curve", details={"mtu": mtu, "point": index}
            )
        volume_mw = round(point.demand_kw / KW_PER_MW, 1)
        if points and volume_mw > points[-1].volume_mw:
            raise InvalidInput(
                f"MTU {mtu}: demand rises from {points[-1].volume_mw} to {volume_mw} MW as the price rises "
                f"to {price} EUR/MWh; a buy curve must be non-increasing",
                details={"mtu": mtu, "point": index},
            )
        points.append(_WirePoint(price, volume_mw))
    if points[0].price_eur_per_mwh > limits.min_price_eur_per_mwh:
        points.insert(0, _WirePoint(limits.min_price_eur_per_mwh, points[0].volume_mw))
    if points[-1].price_eur_per_mwh < limits.max_price_eur_per_mwh:
        points.append(_WirePoint(limits.max_price_eur_per_mwh, points[-1].volume_mw))
    if len(points) > limits.max_points_per_curve:
        raise InvalidInput(
            f"MTU {mtu}: {len(points)} points exceed the {limits.max_points_per_curve} allowed",
            details={"mtu": mtu},
        )
    return tuple(points)


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput("MTU start times must be timezone-aware")
    return value.astimezone(UTC)


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
