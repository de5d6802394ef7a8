"""The day-ahead document port (``vpp.ports.DayAheadDocuments``) in the exchange-style formats of this package."""

from __future__ import annotations

from adapters.markets.dayahead.curve_order import curve_order_to_csv, curve_order_to_json, validate_curve_order
from adapters.markets.dayahead.results import parse_results_csv, parse_results_json
from vpp.domain.market_orders import ClearingResult, CurveOrder


class CurveOrderDocuments:
    """Curve orders out as JSON (Nord Pool style) or long CSV; clearing results in from either."""

    def check_order(self, order: CurveOrder) -> None:
        """Refuse an order that breaks the exchange's rules (grid, monotonicity, price limits, points)."""
        validate_curve_order(order)

    def write_order(self, order: CurveOrder, fmt: str) -> str:
        """The order as JSON (``fmt`` "json") or CSV (anything else the caller allowed: "csv")."""
        return curve_order_to_json(order) if fmt == "json" else curve_order_to_csv(order)

    def read_results(self, text: str, fmt: str) -> list[ClearingResult]:
        """Clearing results from JSON (``fmt`` "json") or CSV, within the default SDAC price limits."""
        return parse_results_json(text) if fmt == "json" else parse_results_csv(text)
