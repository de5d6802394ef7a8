"""The day-ahead schedule looks past the delivery day: an overnight car is bought where its whole stay is cheapest."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
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


class EveningBeforeCar:
    """A pool of one car, plugged in at 22:00 local the evening before the delivery day with 44 kWh to charge at
    11 kW, leaving at 07:00 on it; the instance starts where it is asked to (the build time)."""

    def __init__(self) -> None:
        self.asked: list[tuple[datetime, datetime]] = []

    def dayahead_instance(self, pool: str, start: datetime, end: datetime, *, reliability: float = 0.5,
                          prices_eur_per_mwh: list[float]) -> dict[str, Any]:
        self.asked.append((start, end))
        arrival = datetime(2024, 6, 11, 20, 0, tzinfo=UTC)  # 22:00 CEST
        leaves = datetime(2024, 6, 12, 5, 0, tzinfo=UTC)  # 07:00 CEST
        step = timedelta(minutes=15)
        # A forecast arrival: an instance starting after it does not have it.
        cars = [{"id": "car", "arrival": int((arrival - start) / step), "departure": int((leaves - start) / step),
                 "energy_kwh": 44.0, "max_kw": 11.0, "min_kw": 0.0}] if start <= arrival else []
        return {"start": start.isoformat(), "isp_minutes": 15, "prices_eur_per_mwh": prices_eur_per_mwh,
                "sessions": cars}


def test_a_car_plugged_in_the_evening_before_is_part_of_the_delivery_days_position() -> None:
    # Built at 10:00 local the day before: the car arrives at 22:00, charges as it comes until midnight
    # (2 h x 11 kW = 22 kWh: nothing dispatches the pool before its schedule starts), and its other 22 kWh
    # are bought on the delivery day, where its stay is.
    portfolio = EveningBeforeCar()
    now = datetime(2024, 6, 11, 8, 0, tzinfo=UTC)
    content = dayahead.build_content(portfolio, BidPolicy(), pool="zone:NL", day=DAY, prices=[50.0] * 96,
                                     method="auto", now=now)
    (start, end), = portfolio.asked
    assert start == now and end == datetime(2024, 6, 13, 22, 0, tzinfo=UTC)
    assert content["lead_isps"] == 14 * 4
    assert len(content["mtus"]) == 96
    assert abs(sum(content["forecast_pool_kw"]) / 4.0 - 22.0) < 1e-6
    assert content["before_day_kw"] == content["forecast_pool_kw"]  # all of it is the car of the evening before
    # Without the build time (or built on the day) the car is not seen, as before.
    before = dayahead.build_content(EveningBeforeCar(), BidPolicy(), pool="zone:NL", day=DAY, prices=[50.0] * 96,
                                    method="auto")
    assert sum(before["forecast_pool_kw"]) == 0.0


def test_where_the_pool_holds_a_schedule_before_the_day_the_lead_is_scheduled_not_charged_as_it_comes() -> None:
    # The evening before is committed (the pool is dispatched there) and dear: the whole 44 kWh go after midnight.
    portfolio = EveningBeforeCar()
    now = datetime(2024, 6, 11, 8, 0, tzinfo=UTC)
    held = [now + k * timedelta(minutes=15) for k in range(14 * 4)]
    content = dayahead.build_content(portfolio, BidPolicy(), pool="zone:NL", day=DAY, prices=[1.0] * 96,
                                     method="auto", now=now, committed_before=held)
    assert abs(sum(content["forecast_pool_kw"]) / 4.0 - 44.0) < 1e-6


def test_settle_lead_charges_as_the_cars_come_and_cuts_the_lead() -> None:
    instance = {"start": "2024-06-11T20:00:00Z", "isp_minutes": 15, "prices_eur_per_mwh": [1.0] * 12,
                "pool_max_kw": [30.0] * 12,
                "sessions": [
                    {"id": "gone", "arrival": 0, "departure": 3, "energy_kwh": 5.0, "max_kw": 11.0, "min_kw": 0.0},
                    {"id": "done", "arrival": 1, "departure": 9, "energy_kwh": 4.0, "max_kw": 11.0, "min_kw": 0.0},
                    {"id": "half", "arrival": 2, "departure": 9, "energy_kwh": 10.0, "max_kw": 8.0, "min_kw": 0.0},
                    {"id": "v2g", "arrival": 3, "departure": 9, "energy_kwh": 2.0, "max_kw": 8.0, "min_kw": -8.0,
                     "battery_kwh": 60.0, "soc_kwh": 30.0, "min_soc_kwh": 10.0},
                    {"id": "later", "arrival": 6, "departure": 9, "energy_kwh": 3.0, "max_kw": 11.0, "min_kw": 0.0},
                ]}
    cut = dayahead.settle_lead(instance, 4)
    assert cut["start"] == "2024-06-11T21:00:00Z"
    assert len(cut["prices_eur_per_mwh"]) == 8 and cut["pool_max_kw"] == [30.0] * 8
    by_id = {s["id"]: s for s in cut["sessions"]}
    assert set(by_id) == {"half", "v2g", "later"}  # gone before the day; done charging as it came
    assert by_id["half"]["energy_kwh"] == 10.0 - 2 * 8.0 * 0.25 and by_id["half"]["arrival"] == 0
    assert by_id["half"]["departure"] == 5
    assert by_id["v2g"]["energy_kwh"] == 0.0 and by_id["v2g"]["soc_kwh"] == 32.0  # stays: it may still discharge
    assert by_id["later"] == {**instance["sessions"][4], "arrival": 2, "departure": 5}
    assert dayahead.settle_lead(instance, 0) is instance
    # A state of charge never passes the battery (a need larger than its room is charged only to full).
    full = {**instance, "sessions": [{**instance["sessions"][3], "soc_kwh": 59.0, "energy_kwh": 8.0}]}
    assert dayahead.settle_lead(full, 4)["sessions"][0]["soc_kwh"] == 60.0
