"""Day-ahead (SDAC) curve-order export and clearing-result import, per 15-minute MTU."""

from adapters.markets.dayahead.curve_order import curve_order_to_csv, curve_order_to_json, validate_curve_order
from adapters.markets.dayahead.results import parse_results_csv, parse_results_json
from vpp.domain.market_orders import ClearingResult, CurveOrder, CurvePoint, MtuCurve, PriceLimits

__all__ = [
    "ClearingResult",
    "CurveOrder",
    "CurvePoint",
    "MtuCurve",
    "PriceLimits",
    "curve_order_to_csv",
    "curve_order_to_json",
    "parse_results_csv",
    "parse_results_json",
    "validate_curve_order",
]
