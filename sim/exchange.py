"""A simulated power exchange: clears a curve order (the exchange JSON) against a price series.

Each MTU clears at the given price; the accepted volume is the curve's demand at that price, linearly
interpolated between the curve points as an exchange does. The answer is in the clearing-result JSON format
that ``adapters.markets.dayahead.parse_results_json`` reads.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import numpy as np


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def clear_curve_order(order: str | Mapping[str, Any], prices: Mapping[datetime, float]) -> dict[str, Any]:
    """Clearing results per MTU of ``order`` at ``prices`` (by MTU start, UTC); MTUs without a price fail."""
    document = json.loads(order) if isinstance(order, str) else order
    results = []
    for curve in document["curves"]:
        start = _utc(curve["deliveryStart"])
        if start not in prices:
            raise KeyError(f"no clearing price for MTU {curve['deliveryStart']}")
        price = float(prices[start])
        points = curve["curvePoints"]
        levels = np.array([float(p["price"]) for p in points])
        volumes = np.array([float(p["volume"]) for p in points])
        accepted = float(np.interp(price, levels, volumes))
        results.append({"deliveryStart": curve["deliveryStart"], "deliveryEnd": curve["deliveryEnd"],
                        "price": round(price, 2), "volume": round(accepted, 1)})
    return {"results": results}
