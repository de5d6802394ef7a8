"""Import day-ahead clearing results (price and accepted volume per 15-minute MTU) from CSV or JSON.

CSV header ``delivery_start_utc,delivery_end_utc,price_eur_per_mwh,volume_mw`` (extra columns such as
``contract_id`` are ignored). JSON ``{"results": [{"deliveryStart", "deliveryEnd", "price", "volume"}]}`` or a
bare list of those objects. Volume is MW with + = bought (the pool's demand); it comes back as ``accepted_demand_kw``.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from adapters.markets.dayahead.curve_order import KW_PER_MW, MTU
from vpp.domain.errors import InvalidInput
from vpp.domain.market_orders import ClearingResult, PriceLimits


def parse_results_csv(text: str, limits: PriceLimits | None = None) -> list[ClearingResult]:
    """Parse clearing results from CSV (see module docstring)."""
    reader = csv.DictReader(io.StringIO(text))
    required = {"delivery_start_utc", "delivery_end_utc", "price_eur_per_mwh", "volume_mw"}
    missing = required - set(reader.fieldnames or ())
    if missing:
        raise InvalidInput(f"results CSV lacks columns {sorted(missing)}")
    rows = (
        (row["delivery_start_utc"], row["delivery_end_utc"], row["price_eur_per_mwh"], row["volume_mw"])
        for row in reader
    )
    return _results(rows, limits or PriceLimits())


def parse_results_json(text: str, limits: PriceLimits | None = None) -> list[ClearingResult]:
    """Parse clearing results from JSON (see module docstring)."""
    try:
        document: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"results are not valid JSON: {exc}") from exc
    items = document.get("results") if isinstance(document, Mapping) else document
    if not isinstance(items, list):
        raise InvalidInput("results JSON must be a list or an object with a 'results' list")
    try:
        rows = [(item["deliveryStart"], item["deliveryEnd"], item["price"], item["volume"]) for item in items]
    except (KeyError, TypeError) as exc:
        raise InvalidInput(f"result entry lacks a field: {exc}") from exc
    return _results(rows, limits or PriceLimits())


def _results(rows: Iterable[tuple[Any, Any, Any, Any]], limits: PriceLimits) -> list[ClearingResult]:
    results: dict[datetime, ClearingResult] = {}
    for number, (start_text, end_text, price_text, volume_text) in enumerate(rows, start=1):
        try:
            start, end = _timestamp(str(start_text)), _timestamp(str(end_text))
            price, volume_mw = float(price_text), float(volume_text)
        except ValueError as exc:
            raise InvalidInput(f"result {number}: {exc}", details={"row": number}) from exc
        if end - start != MTU or start.minute % 15 or start.second:
            raise InvalidInput(f"result {number}: {start_text}..{end_text} is not one 15-minute MTU")
        if not limits.min_price_eur_per_mwh <= price <= limits.max_price_eur_per_mwh:
            raise InvalidInput(f"result {number}: clearing price {price} EUR/MWh is outside the limits")
        if start in results:
            raise InvalidInput(f"result {number}: MTU {start_text} appears twice")
        results[start] = ClearingResult(start, end, price, volume_mw * KW_PER_MW)
    return [results[start] for start in sorted(results)]


def _timestamp(text: str) -> datetime:
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"timestamp {text!r} has no UTC offset")
    return value.astimezone(UTC)
