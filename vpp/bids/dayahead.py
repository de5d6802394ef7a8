"""Day-ahead use cases: the pool's price-quantity curve per MTU, its validation, and clearing-result import."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np

from vpp.algorithms.bidding import build_demand_curves, price_ladder
from vpp.algorithms.scheduling import problem_from_instance
from vpp.bids.forecast import forecast_for
from vpp.bids.policy import BidPolicy
from vpp.domain.commitments import CommitmentKind, CommitmentValue
from vpp.domain.errors import InvalidInput
from vpp.domain.isp import delivery_day_isps
from vpp.domain.market_orders import ClearingResult, CurveOrder, CurvePoint, MtuCurve, PriceLimits
from vpp.ports import DayAheadDocuments, PortfolioView

# The day-ahead schedule is an energy position: the median forecast of arrivals leaves the least imbalance either way
# (the reliable low quantile of ``BidPolicy.reliability`` is for capacity, which must be there when called).
DAYAHEAD_RELIABILITY = 0.5


def iso(moment: datetime) -> str:
    """UTC ISO 8601 with a Z."""
    return moment.isoformat().replace("+00:00", "Z")


def parse_time(text: str, what: str) -> datetime:
    """An aware datetime from ISO 8601 text, or InvalidInput."""
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, AttributeError) as exc:
        raise InvalidInput(f"{what} {text!r} is not an ISO 8601 time") from exc
    if value.tzinfo is None:
        raise InvalidInput(f"{what} {text!r} has no UTC offset")
    return value


def _thin(levels: np.ndarray, demand: np.ndarray) -> list[dict[str, float]]:
    """Curve points without the inner points of flat runs (the exchange interpolates between points)."""
    keep = np.ones(levels.size, dtype=bool)
    flat = np.isclose(demand[1:-1], demand[:-2], atol=1e-6) & np.isclose(demand[1:-1], demand[2:], atol=1e-6)
    keep[1:-1] = ~flat
    return [{"price_eur_per_mwh": round(float(levels[i]), 2), "demand_kw": round(float(demand[i]), 3)}
            for i in np.flatnonzero(keep)]


def build_content(portfolio: PortfolioView, policy: BidPolicy, *, pool: str, day: date,
                  prices: Sequence[float] | None, method: str) -> dict[str, Any]:
    """The curve content of a day-ahead draft for ``pool`` and delivery day ``day``."""
    isps = [t.to_pydatetime() for t in delivery_day_isps(day, policy.market_timezone)]
    forecast = forecast_for(isps, policy, prices)
    # The schedule looks one day past the delivery day (at the history's forecast): a car plugged in tonight and
    # leaving tomorrow morning is bought where its whole stay is cheapest, not forced into tonight's ISPs.
    after = [t.to_pydatetime() for t in delivery_day_isps(day + timedelta(days=1), policy.market_timezone)]
    beyond = forecast_for(after, policy, None)
    step = isps[1] - isps[0]
    instance = portfolio.dayahead_instance(pool, isps[0], after[-1] + step, reliability=DAYAHEAD_RELIABILITY,
                                           prices_eur_per_mwh=[*map(float, forecast), *map(float, beyond)])
    if len(instance["prices_eur_per_mwh"]) != len(isps) + len(after):
        raise InvalidInput(f"the portfolio returned {len(instance['prices_eur_per_mwh'])} ISPs for two days of "
                           f"{len(isps) + len(after)} MTUs")
    problem = problem_from_instance(within_reach(instance, len(isps)))
    levels = price_ladder(forecast, min_price=policy.dayahead_min_price_eur_per_mwh,
                          max_price=policy.dayahead_max_price_eur_per_mwh, max_levels=policy.dayahead_max_levels)
    curves = build_demand_curves(problem, levels, method=method, mtus=np.arange(len(isps), dtype=np.int64))
    return {
        "delivery_day": day.isoformat(),
        "area_code": policy.dayahead_area_code,
        "portfolio": policy.dayahead_portfolio,
        "method": curves.method,
        "build_seconds": round(curves.seconds, 3),
        "sessions": problem.n_sessions,
        "levels": len(levels),
        "forecast_eur_per_mwh": [round(float(p), 2) for p in forecast],
        "forecast_pool_kw": [round(float(p), 3) for p in curves.forecast_pool_kw[: len(isps)]],
        "mtus": [{"mtu_start": iso(isps[int(t)]), "points": _thin(levels, row)}
                 for t, row in zip(curves.mtus, curves.demand_kw, strict=True)],
    }


def within_reach(instance: dict[str, Any], mtus: int) -> dict[str, Any]:
    """The instance cut to what the first ``mtus`` ISPs depend on: the sessions that arrive in them, up to the
    last departure among them (the next day's arrivals shape only the next day, bought tomorrow)."""
    sessions = [s for s in instance["sessions"] if int(s["arrival"]) < mtus]
    end = max([mtus, *(int(s["departure"]) for s in sessions)])
    cut = {**instance, "sessions": sessions, "prices_eur_per_mwh": list(instance["prices_eur_per_mwh"])[:end]}
    for key in ("pool_max_kw", "pool_min_kw"):
        if isinstance(cut.get(key), list):
            cut[key] = cut[key][:end]
    return cut


def curve_order(content: dict[str, Any], policy: BidPolicy, exchange: DayAheadDocuments, *,
                comment: str | None = None) -> CurveOrder:
    """The content as a curve order, checked by the exchange's rules (limits, monotonicity, MTUs of the day)."""
    order = CurveOrder(
        portfolio=str(content["portfolio"]),
        area_code=str(content["area_code"]),
        delivery_day=date.fromisoformat(str(content["delivery_day"])),
        curves=[
            MtuCurve(parse_time(m["mtu_start"], "mtu_start"),
                     [CurvePoint(float(p["price_eur_per_mwh"]), float(p["demand_kw"])) for p in m["points"]])
            for m in content["mtus"]
        ],
        comment=comment,
        market_time_zone=policy.market_timezone,
        limits=PriceLimits(policy.dayahead_min_price_eur_per_mwh, policy.dayahead_max_price_eur_per_mwh),
    )
    exchange.check_order(order)
    return order


def apply_patch(content: dict[str, Any], mtus: Sequence[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any],
                                                                                   dict[str, Any]]:
    """Replace the curves of the given MTUs; returns the new content and the replaced/new curves."""
    by_start = {parse_time(m["mtu_start"], "mtu_start"): i for i, m in enumerate(content["mtus"])}
    updated = [dict(m) for m in content["mtus"]]
    before: dict[str, Any] = {}
    after: dict[str, Any] = {}
    for item in mtus:
        start = parse_time(str(item["mtu_start"]), "mtu_start")
        if start not in by_start:
            raise InvalidInput(f"MTU {iso(start)} is not part of this bid")
        index = by_start[start]
        points = [{"price_eur_per_mwh": float(p["price_eur_per_mwh"]), "demand_kw": float(p["demand_kw"])}
                  for p in item["points"]]
        before[iso(start)] = updated[index]["points"]
        after[iso(start)] = points
        updated[index] = {"mtu_start": iso(start), "points": points}
    return {**content, "mtus": updated}, before, after


def commitments_from_results(content: dict[str, Any], results: Sequence[ClearingResult], *, pool: str,
                             reference: str) -> list[CommitmentValue]:
    """One day_ahead_schedule commitment per cleared MTU of the bid; results for other MTUs are refused."""
    mtus = {parse_time(m["mtu_start"], "mtu_start") for m in content["mtus"]}
    values = []
    for result in results:
        if result.mtu_start_utc not in mtus:
            raise InvalidInput(f"result for MTU {iso(result.mtu_start_utc)} is not part of this bid")
        if result.accepted_demand_kw < 0:
            raise InvalidInput(f"MTU {iso(result.mtu_start_utc)}: a buy curve cannot clear a sale")
        values.append(CommitmentValue(pool=pool, isp_start=result.mtu_start_utc,
                                      kind=CommitmentKind.DAY_AHEAD_SCHEDULE, power_kw=result.accepted_demand_kw,
                                      source="day-ahead", reference=reference,
                                      price_eur_per_mwh=result.price_eur_per_mwh))
    if not values:
        raise InvalidInput("the results contain no MTU")
    return values
