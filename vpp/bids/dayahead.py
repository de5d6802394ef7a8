"""Day-ahead use cases: the pool's price-quantity curve per MTU, its validation, and clearing-result import."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np

from vpp.algorithms.bidding import build_demand_curves, price_ladder
from vpp.algorithms.dispatch import car_power_kw
from vpp.algorithms.planning import taper_departure
from vpp.algorithms.scheduling import SchedulingProblem, problem_from_instance, solve_schedule
from vpp.algorithms.taper import ASSUMED_TARGET_SOC, taken_kwh
from vpp.bids.forecast import forecast_for
from vpp.bids.policy import BidPolicy
from vpp.domain.commitments import CommitmentKind, CommitmentValue
from vpp.domain.errors import InvalidInput
from vpp.domain.isp import delivery_day_isps, floor_to_isp
from vpp.domain.market_orders import ClearingResult, CurveOrder, CurvePoint, MtuCurve, PriceLimits
from vpp.ports import DayAheadDocuments, PortfolioView

# The day-ahead schedule is an energy position: the median forecast of arrivals leaves the least imbalance either way
# (the reliable low quantile of ``BidPolicy.reliability`` is for capacity, which must be there when called).
DAYAHEAD_RELIABILITY = 0.5
# The exchange's volume step (0.1 MW): a cleared volume may lie this far beyond the curve's own points.
VOLUME_STEP_KW = 100.0


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
                  prices: Sequence[float] | None, method: str, now: datetime | None = None,
                  committed_before: Sequence[datetime] = ()) -> dict[str, Any]:
    """The curve content of a day-ahead draft for ``pool`` and delivery day ``day``, built at ``now``.

    The instance starts at ``now`` (its ISP), not at the delivery day: cars plugged in this evening and still
    there after midnight charge on the delivery day too, and are part of its position. Up to the first ISP
    the pool holds a schedule for (``committed_before``: ISP starts before the day with a day-ahead commitment)
    nothing dispatches the pool, so the cars charge there as they come (``settle_lead``); from it on they are
    scheduled against prices like the rest.
    """
    isps = [t.to_pydatetime() for t in delivery_day_isps(day, policy.market_timezone)]
    forecast = forecast_for(isps, policy, prices)
    step = isps[1] - isps[0]
    lead = lead_isps(isps[0], now, step)
    lead_prices = forecast_for(lead, policy, None) if lead else np.zeros(0)
    # The schedule looks one day past the delivery day (at the history's forecast): a car plugged in tonight and
    # leaving tomorrow morning is bought where its whole stay is cheapest, not forced into tonight's ISPs.
    after = [t.to_pydatetime() for t in delivery_day_isps(day + timedelta(days=1), policy.market_timezone)]
    beyond = forecast_for(after, policy, None)
    instance = portfolio.dayahead_instance(
        pool, (lead or isps)[0], after[-1] + step, reliability=DAYAHEAD_RELIABILITY,
        prices_eur_per_mwh=[*map(float, lead_prices), *map(float, forecast), *map(float, beyond)])
    if len(instance["prices_eur_per_mwh"]) != len(lead) + len(isps) + len(after):
        raise InvalidInput(f"the portfolio returned {len(instance['prices_eur_per_mwh'])} ISPs for "
                           f"{len(lead) + len(isps) + len(after)}")
    committed = set(committed_before)
    uncontrolled = next((k for k, t in enumerate(lead) if t in committed), len(lead))
    instance = settle_lead(instance, uncontrolled, taper=policy.dayahead_planner_model)
    if policy.dayahead_planner_model:
        instance = as_planned(instance, taper_to_come=policy.dayahead_taper_to_come)
    offset = len(lead) - uncontrolled
    problem = problem_from_instance(within_reach(instance, offset + len(isps)))
    early = {str(item["id"]) for item in instance["sessions"]
             if item.get("arrived_before") or int(item["arrival"]) < offset}
    before_day = _before_day_kw(problem, [k for k, sid in enumerate(problem.session_ids) if sid in early],
                                offset, len(isps))
    levels = price_ladder(forecast, min_price=policy.dayahead_min_price_eur_per_mwh,
                          max_price=policy.dayahead_max_price_eur_per_mwh, max_levels=policy.dayahead_max_levels)
    curves = build_demand_curves(problem, levels, method=method,
                                 mtus=np.arange(offset, offset + len(isps), dtype=np.int64),
                                 v2g_spread_eur_per_mwh=policy.dayahead_v2g_spread_eur_per_mwh,
                                 day=_day_mask(problem.n_isps, offset, len(isps)) if policy.dayahead_curve_shift
                                 else None)
    return {
        "delivery_day": day.isoformat(),
        "area_code": policy.dayahead_area_code,
        "portfolio": policy.dayahead_portfolio,
        "method": curves.method,
        "build_seconds": round(curves.seconds, 3),
        "sessions": problem.n_sessions,
        "levels": len(levels),
        "forecast_eur_per_mwh": [round(float(p), 2) for p in forecast],
        "forecast_pool_kw": [round(float(p), 3) for p in curves.forecast_pool_kw[offset: offset + len(isps)]],
        "lead_isps": len(lead),
        # Of the forecast, what the cars plugged in before the day draw on it (the flexibility's bounds, which start
        # at the day, do not see them: the aFRR bid leaves it out of the energy it holds against them).
        "before_day_kw": [round(float(p), 3) for p in before_day],
        "mtus": [{"mtu_start": iso(isps[int(t) - offset]), "points": _thin(levels, row)}
                 for t, row in zip(curves.mtus, curves.demand_kw, strict=True)],
    }


def _before_day_kw(problem: SchedulingProblem, rows: list[int], offset: int, count: int) -> np.ndarray:
    """Per ISP of the day, the forecast schedule's power of the sessions ``rows`` (those that arrived before it)."""
    if not rows:
        return np.zeros(count)
    kept = np.isin(np.arange(problem.n_sessions), rows)
    fields = {name: getattr(problem, name) for name in problem.__dataclass_fields__}
    for name in ("energy_kwh",):
        fields[name] = np.where(kept, fields[name], 0.0)
    fields["min_kw"] = np.where(kept, np.maximum(problem.min_kw, 0.0), 0.0)
    schedule = solve_schedule(SchedulingProblem(**fields)).pool_kw
    out: np.ndarray = np.asarray(schedule[offset: offset + count], dtype=np.float64)
    return out


def _day_mask(n_isps: int, offset: int, count: int) -> np.ndarray:
    """ISPs x bool: the delivery day's ISPs of the instance."""
    mask = np.zeros(n_isps, dtype=bool)
    mask[offset: offset + count] = True
    return mask


def lead_isps(day_start: datetime, now: datetime | None, step: timedelta) -> list[datetime]:
    """The ISPs from ``now``'s to the delivery day's start (at most a day; none when built on the day)."""
    if now is None or now >= day_start:
        return []
    first = max(floor_to_isp(now), day_start - timedelta(days=1))
    return [first + k * step for k in range(int((day_start - first) / step))]


def _full_kw(item: dict[str, Any]) -> float:
    """What the planner takes a session's car to draw at full power: on an AC charger at most 11 kW unless seen
    drawing more (``vpp.algorithms.dispatch.car_power_kw``), elsewhere its charger's maximum."""
    return float(car_power_kw(np.array([max(float(item["max_kw"]), 0.0)]), None)[0][0])


def _target(item: dict[str, Any]) -> tuple[float | None, float]:
    """The battery (None: the taper's assumed one) and the state of charge a session's need ends at: its own where
    the instance knows its state of charge and battery, else its learned ``target_soc`` (``vpp.algorithms.
    end_soc``), else full (``vpp.algorithms.taper``'s assumption), as the re-plan's ``taper_departure`` has it."""
    battery, soc = item.get("battery_kwh"), item.get("soc_kwh")
    if battery is None or soc is None or not float(battery) > 0:
        learned = item.get("target_soc")
        if learned is None or not math.isfinite(float(learned)):
            return None, ASSUMED_TARGET_SOC
        return None, min(max(float(learned), 0.0), 1.0)
    return float(battery), min(max((float(soc) + float(item["energy_kwh"])) / float(battery), 0.0), 1.0)


def settle_lead(instance: dict[str, Any], lead: int, *, taper: bool = False) -> dict[str, Any]:
    """The instance from ISP ``lead`` on, its first ``lead`` ISPs charged as the cars come (full power from
    arrival until their energy is in): what an undispatched pool draws. A session's energy is what is left;
    a V2G car's state of charge rises by what it took; sessions gone by then, or done and charge-only, drop.

    ``taper``: the cars charge as the planner models them (``as_planned``): on AC at most 11 kW, and a need's
    end slows near full (``vpp.algorithms.taper``), so more of a late car's need is left for the day."""
    if lead <= 0:
        return instance
    hours = float(instance.get("isp_minutes", 15)) / 60.0
    sessions = []
    for item in instance["sessions"]:
        arrival, departure = int(item["arrival"]), int(item["departure"])
        if departure <= lead:
            continue
        charging_h = hours * max(lead - arrival, 0)
        if taper:
            battery, target = _target(item)
            taken = float(taken_kwh(np.array([charging_h]), np.array([_full_kw(item)]),
                                    np.array([max(float(item["energy_kwh"]), 0.0)]), battery_kwh=battery,
                                    target_soc=target)[0])
        else:
            taken = min(float(item["energy_kwh"]), max(float(item["max_kw"]), 0.0) * charging_h)
        settled = {**item, "arrival": max(arrival - lead, 0), "departure": departure - lead,
                   "energy_kwh": float(item["energy_kwh"]) - taken}
        if arrival < lead:
            settled["arrived_before"] = True
        if item.get("soc_kwh") is not None:
            battery = float(item.get("battery_kwh") or math.inf)
            settled["soc_kwh"] = min(float(item["soc_kwh"]) + taken, battery)
        elif settled["energy_kwh"] <= 1e-9:
            continue
        sessions.append(settled)
    cut = {**instance, "sessions": sessions, "prices_eur_per_mwh": list(instance["prices_eur_per_mwh"])[lead:]}
    for key in ("pool_max_kw", "pool_min_kw"):
        if isinstance(cut.get(key), list):
            cut[key] = cut[key][lead:]
    if isinstance(instance.get("start"), str):
        start = parse_time(str(instance["start"]), "start")
        cut["start"] = iso(start + lead * timedelta(hours=hours))
    return cut


def as_planned(instance: dict[str, Any], *, taper_to_come: bool = True) -> dict[str, Any]:
    """The instance's cars as the rolling-horizon planner that controls them models them (``vpp.portfolio.planning.
    plan_problem``), so that what the position buys is what the control will draw: each car at most what it is
    taken to draw at full power (on AC 11 kW), done by the taper's departure (``vpp.algorithms.planning.
    taper_departure``: a need taken to end where its state of charge and battery put it, else at the ``target_soc``
    learned from finished sessions, else full, is planned to be in the taper's extra time before the car leaves).
    A stay that reaches the instance's end (cut there) keeps its departure: its taper falls after the end.

    Bought with each car at its charger's power up to its departure, the position put the evening's needs into the
    cheapest ISPs just before the cars leave, where the control, which plans them to be done earlier, never draws.

    ``taper_to_come``: the cars still to come (``to_come``) are tapered too. Before any finished session has shown
    where cars stop (in the demo at the trading moment: every one of them taken to end full of 60 kWh), that
    forces energy into the delivery day's evening: on the quarter demo 1,538 kWh of D 18:00-24:00 could fall
    nowhere else, 1,058 without their taper (docs/scenarios.md, "The position's evening, traced"). False: they
    are bought up to their departure (at most 11 kW on AC), as the re-plan plans its forecast arrivals.
    """
    n_isps = len(instance["prices_eur_per_mwh"])
    items = list(instance["sessions"])
    if not items:
        return instance
    full = np.array([_full_kw(item) for item in items])
    energy = np.array([max(float(item["energy_kwh"]), 0.0) for item in items])
    targets = [_target(item) for item in items]
    battery = np.array([np.nan if b is None else b for b, _ in targets])
    soc = np.array([float(item["soc_kwh"]) if b is not None else np.nan
                    for item, (b, _) in zip(items, targets, strict=True)])
    arrival = np.array([int(item["arrival"]) for item in items], dtype=np.int64)
    departure = np.array([int(item["departure"]) for item in items], dtype=np.int64)
    planned = taper_departure(departure, energy, full, float(instance.get("isp_minutes", 15)) / 60.0,
                              soc_kwh=soc, battery_kwh=battery, arrival=arrival,
                              target_soc=np.array([t for _, t in targets]))
    # Without ``taper_to_come`` a car still to come (``to_come``, a forecast arrival) is bought up to its
    # departure, as the re-plan plans its own forecast arrivals (``vpp.portfolio.planning.plan_problem``).
    to_come = np.array([not taper_to_come and bool(item.get("to_come")) for item in items])
    planned = np.where((departure >= n_isps) | to_come, departure, np.minimum(planned, departure))
    sessions = []
    for k, item in enumerate(items):
        changed = {**item, "departure": int(planned[k])}
        if float(item["max_kw"]) > full[k]:
            changed["max_kw"] = float(full[k])
        sessions.append(changed)
    return {**instance, "sessions": sessions}


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


def _lowest_demand(content: dict[str, Any], mtu_start: datetime) -> float:
    """The least demand (kW, negative: a sale) on the bid's curve for the MTU."""
    for m in content["mtus"]:
        if parse_time(m["mtu_start"], "mtu_start") == mtu_start:
            return min(float(p["demand_kw"]) for p in m["points"])
    return 0.0


def commitments_from_results(content: dict[str, Any], results: Sequence[ClearingResult], *, pool: str,
                             reference: str) -> list[CommitmentValue]:
    """One day_ahead_schedule commitment per cleared MTU of the bid; results for other MTUs are refused."""
    mtus = {parse_time(m["mtu_start"], "mtu_start") for m in content["mtus"]}
    values = []
    for result in results:
        if result.mtu_start_utc not in mtus:
            raise InvalidInput(f"result for MTU {iso(result.mtu_start_utc)} is not part of this bid")
        # A sale (V2G) only as far as the curve offers one, within the exchange's 0.1 MW volume step.
        if result.accepted_demand_kw < 0 and min(_lowest_demand(content, result.mtu_start_utc), 0.0) \
                > result.accepted_demand_kw + VOLUME_STEP_KW:
            raise InvalidInput(f"MTU {iso(result.mtu_start_utc)}: the result sells more than the curve offers")
        values.append(CommitmentValue(pool=pool, isp_start=result.mtu_start_utc,
                                      kind=CommitmentKind.DAY_AHEAD_SCHEDULE, power_kw=result.accepted_demand_kw,
                                      source="day-ahead", reference=reference,
                                      price_eur_per_mwh=result.price_eur_per_mwh))
    if not values:
        raise InvalidInput("the results contain no MTU")
    return values
