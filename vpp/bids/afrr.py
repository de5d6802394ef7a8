"""aFRR use cases: capacity and energy bids sized from the headroom around the day-ahead schedule, priced from
opportunity cost plus the trader's margin; validation, the bid document (through the AfrrDocuments port), and
award import."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from vpp.algorithms.bidding import (
    capacity_per_product,
    energy_limited_capacity,
    opportunity_costs,
    round_price,
    size_afrr,
)
from vpp.bids.dayahead import iso, parse_time
from vpp.bids.forecast import forecast_for
from vpp.bids.policy import BidPolicy, Market
from vpp.bids.tables import Bid
from vpp.commitments import service as commitments
from vpp.domain.commitments import CommitmentKind, CommitmentValue
from vpp.domain.errors import InvalidInput
from vpp.domain.isp import ISP, delivery_day_bounds
from vpp.domain.market_orders import AfrrBidDocument, AfrrCapacityOffer, AfrrEnergyOffer
from vpp.ports import AfrrDocuments, PortfolioView

DIRECTIONS = ("up", "down")


def _products(isps: Sequence[datetime], policy: BidPolicy) -> list[tuple[int, datetime]]:
    """(first ISP index, start) of each whole product inside the ISPs, aligned to the local day's slices."""
    length = timedelta(hours=policy.afrr_product_hours)
    found = []
    for index, start in enumerate(isps):
        day_start, _ = delivery_day_bounds(policy.delivery_day(start), policy.market_timezone)
        end = start + length
        if (start - day_start) % length == timedelta(0) and index + int(length / ISP) <= len(isps) \
                and isps[index + int(length / ISP) - 1] + ISP == end:
            found.append((index, start))
    return found


def build_content(session: Session, portfolio: PortfolioView, policy: BidPolicy, *, pool: str, bid_key: str,
                  start: datetime, end: datetime, prices: Sequence[float] | None, products: Sequence[str],
                  margin_eur_per_mwh: float, capacity_margin_eur_per_mw_per_h: float) -> dict[str, Any]:
    """Capacity and/or energy bids of ``pool`` on [start, end)."""
    flex = portfolio.flexibility(pool, start, end)
    isps = list(flex.isp_starts)
    n = len(isps)
    if n == 0:
        raise InvalidInput("the period has no ISP")
    committed = {c.isp_start: c.power_kw for c in commitments.list_for(
        session, [pool], start, end, kinds=[CommitmentKind.DAY_AHEAD_SCHEDULE])}
    schedule = np.array([committed.get(t, float(flex.baseline_kw[i])) for i, t in enumerate(isps)])
    up_room, down_room = flex.headroom_kw(schedule, reliable=True)
    # The energy bounds start at the period: the cars plugged in before it, which the day-ahead position buys too,
    # are left out of the energy held against them.
    unseen = _before_period_kw(session, pool, isps) if committed else np.zeros(n)
    volumes = size_afrr(up_room, down_room, step_kw=policy.afrr_step_kw, minimum_kw=policy.afrr_minimum_kw)
    forecast = forecast_for(isps, policy, prices)
    up_cost, down_cost = opportunity_costs(forecast, recovery_isps=max(1, int(policy.afrr_recovery_hours * 4)))
    by_direction = {"up": (volumes.up_kw, up_cost), "down": (volumes.down_kw, down_cost)}
    energy: list[dict[str, Any]] = []
    capacity: list[dict[str, Any]] = []
    if "energy" in products:
        for direction, (volume, cost) in by_direction.items():
            for i in np.flatnonzero(volume > 0):
                energy.append({"bid_id": f"{bid_key}-E{direction[0].upper()}-{isps[i]:%Y%m%d%H%M}",
                               "direction": direction, "mtu_start": iso(isps[i]), "volume_kw": float(volume[i]),
                               "price_eur_per_mwh": round_price(float(cost[i]) + margin_eur_per_mwh)})
    if "capacity" in products:
        per_product = int(timedelta(hours=policy.afrr_product_hours) / ISP)
        for first, product_start in _products(isps, policy):
            window = slice(first, first + per_product)
            # Power alone is not enough: held for the whole product, the capacity's energy must fit the cars.
            energy_room = dict(zip(DIRECTIONS, energy_limited_capacity(
                schedule - unseen, flex.energy_min_kwh, flex.energy_max_kwh, first, per_product), strict=True))
            for direction, (volume, cost) in by_direction.items():
                held = float(capacity_per_product(volume[window], per_product)[0])
                held = float(size_afrr(np.array([min(held, energy_room[direction])]), np.zeros(1),
                                       step_kw=policy.afrr_step_kw, minimum_kw=policy.afrr_minimum_kw).up_kw[0])
                if held <= 0:
                    continue
                energy_price = float(np.mean(cost[window])) + margin_eur_per_mwh
                capacity.append({
                    "bid_id": f"{bid_key}-C{direction[0].upper()}-{product_start:%Y%m%d%H%M}",
                    "direction": direction, "product_start": iso(product_start),
                    "product_hours": policy.afrr_product_hours, "capacity_kw": held,
                    "capacity_price_eur_per_mw_per_h": round_price(
                        capacity_margin_eur_per_mw_per_h + policy.afrr_activation_share * float(np.mean(cost[window]))),
                    "energy_price_eur_per_mwh": round_price(energy_price),
                })
    return {
        "schedule_source": "day_ahead_commitment" if committed else "baseline",
        "schedule_kw": [round(float(v), 3) for v in schedule],
        "headroom_up_kw": [round(float(v), 3) for v in up_room],
        "headroom_down_kw": [round(float(v), 3) for v in down_room],
        "forecast_eur_per_mwh": [round(float(p), 2) for p in forecast],
        "capacity": capacity,
        "energy": energy,
    }


def _before_period_kw(session: Session, pool: str, isps: Sequence[datetime]) -> np.ndarray:
    """Per ISP, the power the pool's day-ahead bids forecast for cars plugged in before their day
    (``before_day_kw`` of the day-ahead content; 0 where no bid says)."""
    out = np.zeros(len(isps))
    if not isps:
        return out
    where = {t: k for k, t in enumerate(isps)}
    bids = session.scalars(select(Bid).where(
        Bid.market == Market.DAY_AHEAD.value, Bid.pool == pool, Bid.period_start < isps[-1] + ISP,
        Bid.period_end > isps[0]))
    for bid in bids:
        values = bid.content.get("before_day_kw") or []
        for m, value in zip(bid.content.get("mtus", []), values, strict=False):
            k = where.get(parse_time(m["mtu_start"], "mtu_start"))
            if k is not None:
                out[k] = float(value)
    return out


def _offers(content: dict[str, Any]) -> list[AfrrCapacityOffer | AfrrEnergyOffer]:
    offers: list[AfrrCapacityOffer | AfrrEnergyOffer] = []
    for item in content.get("capacity", []):
        offers.append(AfrrCapacityOffer(
            bid_id=item["bid_id"], direction="up" if item["direction"] == "up" else "down",
            product_start_utc=parse_time(item["product_start"], "product_start"),
            product_hours=float(item["product_hours"]), capacity_kw=float(item["capacity_kw"]),
            capacity_price_eur_per_mw_per_h=float(item["capacity_price_eur_per_mw_per_h"]),
            energy_price_eur_per_mwh=item.get("energy_price_eur_per_mwh")))
    for item in content.get("energy", []):
        offers.append(AfrrEnergyOffer(
            bid_id=item["bid_id"], direction="up" if item["direction"] == "up" else "down",
            mtu_start_utc=parse_time(item["mtu_start"], "mtu_start"), volume_kw=float(item["volume_kw"]),
            price_eur_per_mwh=float(item["price_eur_per_mwh"])))
    return offers


def validate(content: dict[str, Any], policy: BidPolicy) -> None:
    """Refuse, with the reason, any bid below the minimum, off the MW step or beyond the price limits."""
    limit = policy.afrr_energy_price_limit_eur_per_mwh
    for item in content.get("capacity", []):
        _check_volume(item["bid_id"], float(item["capacity_kw"]), policy)
        _check_price(item["bid_id"], float(item["capacity_price_eur_per_mw_per_h"]), 0.0,
                     policy.afrr_capacity_price_max_eur_per_mw_per_h, "EUR/MW/h")
        if item.get("energy_price_eur_per_mwh") is not None:
            _check_price(item["bid_id"], float(item["energy_price_eur_per_mwh"]), -limit, limit, "EUR/MWh")
    for item in content.get("energy", []):
        _check_volume(item["bid_id"], float(item["volume_kw"]), policy)
        _check_price(item["bid_id"], float(item["price_eur_per_mwh"]), -limit, limit, "EUR/MWh")


def _check_volume(bid_id: str, volume_kw: float, policy: BidPolicy) -> None:
    if volume_kw < policy.afrr_minimum_kw - 1e-6:
        raise InvalidInput(f"bid {bid_id}: {volume_kw} kW is below the minimum bid of {policy.afrr_minimum_kw} kW",
                           details={"bid_id": bid_id})
    steps = volume_kw / policy.afrr_step_kw
    if abs(steps - round(steps)) > 1e-6:
        raise InvalidInput(f"bid {bid_id}: {volume_kw} kW is not a whole number of {policy.afrr_step_kw} kW steps",
                           details={"bid_id": bid_id})


def _check_price(bid_id: str, price: float, lowest: float, highest: float, unit: str) -> None:
    if not lowest <= price <= highest:
        raise InvalidInput(f"bid {bid_id}: price {price} {unit} is outside the limits [{lowest}, {highest}]",
                           details={"bid_id": bid_id})


def apply_patch(content: dict[str, Any], capacity: Sequence[dict[str, Any]], energy: Sequence[dict[str, Any]]
                ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Change volumes and prices of listed bids (volume 0 removes a bid); returns new content, before, after."""
    before: dict[str, Any] = {}
    after: dict[str, Any] = {}
    result = dict(content)
    for key, changes, volume_field in (("capacity", capacity, "capacity_kw"), ("energy", energy, "volume_kw")):
        items = {item["bid_id"]: dict(item) for item in content.get(key, [])}
        for change in changes:
            bid_id = str(change.get("bid_id"))
            if bid_id not in items:
                raise InvalidInput(f"bid {bid_id!r} is not part of this draft")
            before[bid_id] = dict(items[bid_id])
            for field_name, value in change.items():
                if field_name != "bid_id" and value is not None:
                    items[bid_id][field_name] = value
            after[bid_id] = items[bid_id] if items[bid_id][volume_field] else None
        result[key] = [item for item in items.values() if item[volume_field]]
    return result, before, after


def document(content: dict[str, Any], policy: BidPolicy, writer: AfrrDocuments, *, document_id: str, revision: int,
             created_at: datetime) -> bytes:
    """The bids as the TSO's document (an XSD-valid ReserveBid_MarketDocument with the ENTSO-E writer)."""
    offers = _offers(content)
    if not offers:
        raise InvalidInput("the draft has no aFRR bid (the headroom is below the minimum bid size)")
    return writer.write_bids(AfrrBidDocument(
        document_id=document_id, revision=revision, created_at_utc=created_at, sender_eic=policy.bsp_eic,
        receiver_eic=policy.tso_eic, domain_eic=policy.afrr_domain_eic, bids=offers,
        minimum_bid_kw=policy.afrr_minimum_kw,
        energy_price_limit_eur_per_mwh=policy.afrr_energy_price_limit_eur_per_mwh))


def parse_awards(text: str, fmt: str) -> dict[str, float]:
    """Awarded MW per bid id from JSON (``{"awards": [{"bid_id", "awarded_mw"}]}`` or a list) or CSV."""
    rows: list[tuple[Any, Any]]
    if fmt == "csv":
        reader = csv.DictReader(io.StringIO(text))
        if not {"bid_id", "awarded_mw"} <= set(reader.fieldnames or ()):
            raise InvalidInput("award CSV needs the columns bid_id,awarded_mw")
        rows = [(row["bid_id"], row["awarded_mw"]) for row in reader]
    else:
        try:
            document_: Any = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"awards are not valid JSON: {exc}") from exc
        items = document_.get("awards") if isinstance(document_, dict) else document_
        if not isinstance(items, list):
            raise InvalidInput("award JSON must be a list or an object with an 'awards' list")
        try:
            rows = [(item["bid_id"], item["awarded_mw"]) for item in items]
        except (KeyError, TypeError) as exc:
            raise InvalidInput(f"an award lacks a field: {exc}") from exc
    awards: dict[str, float] = {}
    for bid_id, value in rows:
        try:
            awards[str(bid_id)] = float(value)
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"award for {bid_id}: awarded_mw {value!r} is not a number") from exc
    return awards


def apply_awards(content: dict[str, Any], awards: dict[str, float], *, pool: str, reference: str
                 ) -> tuple[dict[str, Any], list[CommitmentValue]]:
    """Mark awarded volumes on the bids; capacity awards become afrr_capacity_up/down commitments per ISP."""
    capacity = {item["bid_id"]: dict(item) for item in content.get("capacity", [])}
    energy = {item["bid_id"]: dict(item) for item in content.get("energy", [])}
    values: list[CommitmentValue] = []
    for bid_id, awarded_mw in awards.items():
        item = capacity.get(bid_id) or energy.get(bid_id)
        if item is None:
            raise InvalidInput(f"award for unknown bid {bid_id!r}")
        offered_kw = float(item["capacity_kw"] if "capacity_kw" in item else item["volume_kw"])
        awarded_kw = awarded_mw * 1000.0
        if awarded_kw < 0 or awarded_kw > offered_kw + 1e-6 or abs(awarded_mw - round(awarded_mw)) > 1e-6:
            raise InvalidInput(f"award for {bid_id}: {awarded_mw} MW is not a whole MW between 0 and the "
                               f"{offered_kw / 1000.0:g} MW offered")
        item["awarded_kw"] = awarded_kw
        if bid_id in capacity:
            kind = CommitmentKind.AFRR_CAPACITY_UP if item["direction"] == "up" else CommitmentKind.AFRR_CAPACITY_DOWN
            start = parse_time(item["product_start"], "product_start")
            for k in range(int(timedelta(hours=float(item["product_hours"])) / ISP)):
                values.append(CommitmentValue(pool=pool, isp_start=start + k * ISP, kind=kind, power_kw=awarded_kw,
                                              source="afrr", reference=reference,
                                              price_eur_per_mwh=item.get("energy_price_eur_per_mwh")))
    return {**content, "capacity": list(capacity.values()), "energy": list(energy.values())}, values
