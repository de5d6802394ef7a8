"""The price forecast a bid is built on: given by the trader, or from the Dutch day-ahead history."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import numpy as np

from vpp.algorithms.price_forecast import forecast_prices
from vpp.bids.policy import BidPolicy
from vpp.domain.errors import InvalidInput

FloatArray = np.ndarray


def forecast_for(isps: Sequence[datetime], policy: BidPolicy, prices: Sequence[float] | None) -> FloatArray:
    """Prices per ISP: the trader's (one per ISP, finite), else the same-weekday forecast from history."""
    if prices is not None:
        if len(prices) != len(isps):
            raise InvalidInput(f"prices_eur_per_mwh has {len(prices)} values but the period has {len(isps)} MTUs")
        values = np.asarray(prices, dtype=np.float64)
        if not np.isfinite(values).all():
            raise InvalidInput("prices_eur_per_mwh must be finite numbers")
        return values
    from vpp.data.prices import load_day_ahead_prices

    return forecast_prices(load_day_ahead_prices(), isps, weeks=policy.forecast_weeks, tz=policy.market_timezone)
