"""The day-ahead schedule looks past the delivery day: an overnight car is bought where its whole stay is cheapest."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from vpp.bids import dayahead
from vpp.bids.policy import BidPolicy
from vpp.domain.isp import delivery_day_isps

DAY = date(2024, 6, 12)


class OneOvernightCar:
    """A pool of one car: plugged in at 20:00 local on the delivery day, leaving at 07:00 the next morning."""

    def __init__(self) -> None:
        self.asked: list[tuple[datetime, datetime, float]] = []

    def dayahead_instance(self, pool: str, start: datetime, end: datetime, *, reliability: float = 0.5,
                          prices_eur_per_mwh: list[float]) -> dict[str, Any]:
        self.asked.append((start, end, reliability))
        isps = [t.to_pydatetime() for t in delivery_day_isps(DAY, "Europe/Amsterdam")]
        arrival = isps.index(next(t for t in isps if t.astimezone(UTC).hour == 18))  # 20:00 CEST is 18:00 UTC
        return {"start": start.isoformat(), "isp_minutes": 15, "prices_eur_per_mwh": prices_eur_per_mwh,
                "sessions": [{"id": "car", "arrival": arrival, "departure": len(isps) + 7 * 4, "energy_kwh": 22.0,
                              "max_kw": 11.0, "min_kw": 0.0}]}


def test_an_overnight_car_is_not_bought_on_a_dear_evening_when_the_night_after_midnight_is_cheaper() -> None:
    # The trader's prices for the delivery day are far above any night of the history: the car's 22 kWh belong
    # after midnight, so the curve asks for nothing on the delivery day at the forecast prices.
    portfolio = OneOvernightCar()
    content = dayahead.build_content(portfolio, BidPolicy(), pool="zone:NL", day=DAY, prices=[900.0] * 96,
                                     method="auto")
    (start, end, reliability), = portfolio.asked
    assert (end - start).total_seconds() == 2 * 24 * 3600  # the delivery day and the next one
    assert reliability == dayahead.DAYAHEAD_RELIABILITY == 0.5
    assert len(content["mtus"]) == 96 and len(content["forecast_pool_kw"]) == 96
    assert sum(content["forecast_pool_kw"]) == 0.0
    # At a low enough price the curve still buys the car on the delivery day: the price response stays.
    evening = [m for m in content["mtus"] if m["mtu_start"] >= "2024-06-12T18:00:00Z"]
    assert max(p["demand_kw"] for m in evening for p in m["points"]) == 11.0
