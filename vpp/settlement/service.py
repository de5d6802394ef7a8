"""Settle a pool's day: gather the day's data, run every use case, persist one run (a recompute replaces it)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from vpp.activations.tables import AfrrSetpoint, PoolResponse
from vpp.algorithms.baselines import UNCONTROLLED
from vpp.algorithms.settlement import attribute_to_sessions, flexibility_value_per_charger_month
from vpp.commitments.tables import Commitment
from vpp.db import utcnow
from vpp.domain.errors import InvalidInput, NotFound
from vpp.domain.pools import PoolId
from vpp.settlement import afrr, congestion, dayahead, reconciliation
from vpp.settlement import sessions as pool_sessions
from vpp.settlement.tables import (
    SettlementActivationResult,
    SettlementIspResult,
    SettlementOrderResult,
    SettlementRun,
    SettlementSessionResult,
)
from vpp.settlement.values import STEP_S, DayGrid, SettlementParams

FloatArray = npt.NDArray[np.float64]
ISP_H = 0.25


@dataclass(frozen=True)
class ActivationShare:
    """One activation as the sessions share it: ISP weights, direction and the amounts to split."""

    kind: str
    reference: str
    start_at: datetime
    end_at: datetime
    direction: int
    weights: FloatArray
    totals: dict[str, float]


def _cents(value: float) -> float:
    return round(value * 100) / 100.0


def pools_with_data(db: Session, grid: DayGrid) -> list[str]:
    """Pools that have pool responses, setpoints or commitments on the day."""
    found: set[str] = set()
    for column, moment in ((PoolResponse.pool, PoolResponse.at), (AfrrSetpoint.pool, AfrrSetpoint.timestamp),
                           (Commitment.pool, Commitment.isp_start)):
        found.update(db.scalars(select(column).where(moment >= grid.start, moment < grid.end).distinct()))
    return sorted(found)


def settle(db: Session, *, day: date, pool: str, time_zone: str, params: SettlementParams | None = None,
           now: datetime | None = None) -> SettlementRun:
    """Settle ``pool`` on local ``day`` and persist it; a second run replaces the first, row for row."""
    params = params or SettlementParams()
    pool = str(PoolId.parse(pool))
    grid = DayGrid.of(day, time_zone)
    now = now or utcnow()
    if grid.end > now:
        raise InvalidInput(f"day {day.isoformat()} has not closed yet: it ends at {grid.end.isoformat()}")
    members = pool_sessions.load_pool_sessions(db, pool, grid)
    readings = pool_sessions.load_readings(db, members, grid)
    meter = pool_sessions.meter_grid(members, readings, grid.isps, gap_tolerance_s=params.cell_gap_tolerance_s)
    steps = afrr.load_steps(db, pool, grid, setpoint_max_age_s=params.setpoint_max_age_s)
    schedule = dayahead.schedule_kw(db, pool, grid)
    if not members.n and not steps.has_data and np.isnan(schedule).all() and not _has_orders(db, pool, grid):
        raise NotFound(f"nothing to settle for pool {pool!r} on {day.isoformat()}: no sessions, pool responses, "
                       "setpoints or commitments", details={"pool": pool, "day": day.isoformat()})

    afrr_day = afrr.settle_afrr_day(db, pool, grid, params, steps)
    counterfactual = pool_sessions.counterfactual(members, meter, grid.isps)
    gap_sessions = meter.gap.sum(axis=0)
    metered_kwh = np.where(gap_sessions > 0, np.nan, np.nansum(meter.energy_kwh, axis=0)) if members.n \
        else np.full(grid.isps, np.nan)
    pool_counterfactual_kw = counterfactual.values_kw.sum(axis=0) if members.n else np.zeros(grid.isps)
    orders = congestion.settle_orders(db, pool, grid, params, metered_kwh=metered_kwh, schedule_kw=schedule,
                                      counterfactual_kw=pool_counterfactual_kw)
    prices = params.imbalance_prices(grid.isps)
    imbalance = dayahead.imbalance(metered_kwh, schedule, prices)
    checked = reconciliation.reconcile(members, meter, params)
    has_cdr = np.isfinite(members.cdr_energy_kwh)
    flags = _session_flags(checked, has_cdr, meter)
    excluded = np.array([bool(f) for f in flags], dtype=bool)

    activations = _activations(grid, afrr_day, orders)
    contribution_isp = counterfactual.values_kw * ISP_H - meter.energy_kwh
    per_activation = np.full((members.n, len(activations)), np.nan)
    revenue = np.zeros(members.n)
    penalty = np.zeros(members.n)
    attributed: list[tuple[float, float]] = []
    for k, activation in enumerate(activations):
        used = activation.weights > 0
        per_activation[:, k] = activation.direction * (contribution_isp[:, used] * activation.weights[used]).sum(axis=1)
        shares = attribute_to_sessions(per_activation[:, k], activation.totals["revenue_eur"],
                                       activation.totals["penalty_eur"], excluded=excluded)
        revenue += shares.revenue_eur
        penalty += shares.penalty_eur
        attributed.append((float(shares.revenue_eur.sum()), float(shares.penalty_eur.sum())))
    net = revenue - penalty
    chargers = sorted(set(members.charger))
    charger_index = np.array([chargers.index(c) for c in members.charger], dtype=np.int64) if members.n \
        else np.zeros(0, dtype=np.int64)
    value = flexibility_value_per_charger_month(net, charger_index, len(chargers), grid.isps / 96.0) \
        if members.n else np.zeros(0)

    run = _upsert_run(db, day, pool)
    run.status = "settled"
    run.baseline_method = UNCONTROLLED
    run.parameters = params.as_json()
    run.computed_at = now
    db.execute(delete(SettlementIspResult).where(SettlementIspResult.run_id == run.id))
    db.execute(delete(SettlementActivationResult).where(SettlementActivationResult.run_id == run.id))
    db.execute(delete(SettlementOrderResult).where(SettlementOrderResult.run_id == run.id))
    db.execute(delete(SettlementSessionResult).where(SettlementSessionResult.run_id == run.id))
    result = afrr_day.result
    isp_rows = [
        {"run_id": run.id, "isp_start": start, "isp": k + 1,
         "afrr_requested_mwh": float(result.requested_mwh[k]), "afrr_delivered_mwh": float(result.delivered_mwh[k]),
         "afrr_shortfall_mwh": float(result.shortfall_mwh[k]),
         "afrr_counted_shortfall_mwh": float(result.counted_shortfall_mwh[k]),
         "afrr_missing_steps": int(afrr_day.missing_active_steps[k]),
         "afrr_flagged_steps": int(afrr_day.flagged_steps[k]),
         "afrr_price_eur_per_mwh": float(afrr_day.price_eur_per_mwh[k]), "afrr_price_source": afrr_day.price_source[k],
         "afrr_payment_eur": float(result.payment_eur[k]), "afrr_penalty_eur": float(result.penalty_eur[k]),
         "counterfactual_mwh": float(pool_counterfactual_kw[k] * ISP_H / 1000.0),
         "scheduled_mwh": _opt(schedule[k] * ISP_H / 1000.0), "metered_mwh": _opt(metered_kwh[k] / 1000.0),
         "gap_sessions": int(gap_sessions[k]) if members.n else 0,
         "imbalance_mwh": _opt(imbalance.imbalance_mwh[k]), "imbalance_price_eur_per_mwh": float(prices[k]),
         "imbalance_cost_eur": _opt(imbalance.cost_eur[k])}
        for k, start in enumerate(grid.isp_starts)
    ]
    activation_rows = [
        {"run_id": run.id, "seq": k + 1, "kind": a.kind, "reference": a.reference, "start_at": a.start_at,
         "end_at": a.end_at, "direction": "up" if a.direction > 0 else "down", **a.totals,
         "attributed_revenue_eur": attributed[k][0], "attributed_penalty_eur": attributed[k][1]}
        for k, a in enumerate(activations)
    ]
    order_rows = [
        {"run_id": run.id, "reference": o.reference, "isp_start": grid.isp_starts[p], "isp": p + 1,
         "baseline_method": o.baseline_method, "baseline_kw": _opt(o.baseline_kw[j]),
         "ordered_kw": float(o.ordered_kw[j]), "actual_kw": _opt(o.actual_kw[j]),
         "delivered_kw": _opt(o.delivered_kw[j]), "deficiency_kw": _opt(o.deficiency_kw[j]),
         "price_eur_per_mw": o.price_eur_per_mw, "penalty_eur_per_mw": o.penalty_eur_per_mw,
         "net_eur": _opt(o.net_eur[j]), "dso_status": o.dso_status, "dso_net_eur": o.dso_net_eur,
         "dso_reason": o.dso_reason}
        for o in orders for j, p in enumerate(o.positions)
    ]
    session_energy = np.nansum(meter.energy_kwh, axis=1) if members.n else np.zeros(0)
    session_rows = [
        {"run_id": run.id, "session_id": sid, "charger": members.charger[s], "baseline_method": counterfactual.method,
         "counterfactual_kwh": float(counterfactual.values_kw[s].sum() * ISP_H),
         "metered_kwh": None if meter.gap[s].any() else float(session_energy[s]),
         "contribution_kwh": _opt(np.sum(per_activation[s])) if activations else 0.0,
         "activation_kwh": [_opt(v) for v in per_activation[s]],
         "revenue_eur": float(revenue[s]), "penalty_eur": float(penalty[s]), "net_eur": _cents(float(net[s])),
         "charger_value_eur_per_month": float(value[charger_index[s]]),
         "cdr_energy_kwh": _opt(members.cdr_energy_kwh[s]), "session_metered_kwh": _opt(checked.metered_kwh[s]),
         "cdr_difference_kwh": _opt(checked.difference_kwh[s]) if has_cdr[s] else None,
         "flags": flags[s], "excluded": bool(excluded[s])}
        for s, sid in enumerate(members.ids)
    ]
    for table, rows in ((SettlementIspResult, isp_rows), (SettlementActivationResult, activation_rows),
                        (SettlementOrderResult, order_rows), (SettlementSessionResult, session_rows)):
        if rows:
            db.execute(insert(table), rows)
    run.summary = _summary(run, grid, afrr_day, orders, imbalance.total_cost_eur, imbalance.missing, members.n,
                           flags, activations, attributed, metered_kwh, schedule)
    db.flush()
    return run


def _opt(value: Any) -> float | None:
    number = float(value)
    return number if np.isfinite(number) else None


def _has_orders(db: Session, pool: str, grid: DayGrid) -> bool:
    return db.scalar(select(Commitment.id).where(Commitment.pool == pool, Commitment.isp_start >= grid.start,
                                                 Commitment.isp_start < grid.end).limit(1)) is not None


def _session_flags(checked: Any, has_cdr: npt.NDArray[np.bool_], meter: pool_sessions.MeterGrid) -> list[list[str]]:
    named = {
        "cdr_mismatch": checked.mismatch & has_cdr,
        "reading_gap": checked.gap,
        "no_readings": checked.no_readings,
        "missing_period": meter.missing_periods > 0,
        "meter_gap_in_day": meter.gap.any(axis=1),
    }
    return [[name for name, mask in named.items() if mask[s]] for s in range(has_cdr.shape[0])]


def _activations(grid: DayGrid, afrr_day: afrr.AfrrDay, orders: list[congestion.OrderDay]) -> list[ActivationShare]:
    from datetime import timedelta

    found: list[ActivationShare] = []
    for activation in afrr_day.activations:
        totals = afrr.activation_totals(afrr_day, activation)
        totals["revenue_eur"] = _cents(totals["revenue_eur"])
        totals["penalty_eur"] = _cents(totals["penalty_eur"])
        found.append(ActivationShare(
            "afrr", f"afrr:{activation.first_step}", grid.start + timedelta(seconds=activation.first_step * STEP_S),
            grid.start + timedelta(seconds=(activation.last_step + 1) * STEP_S), activation.direction,
            afrr.isp_weights(activation, grid.isps), totals))
    for order in orders:
        weights = np.zeros(grid.isps)
        weights[order.positions] = 1.0
        found.append(ActivationShare(
            "flex_order", order.reference, grid.isp_starts[min(order.positions)],
            grid.isp_starts[max(order.positions)] + timedelta(minutes=15), 1, weights,
            {"requested_mwh": float(order.ordered_kw.sum() * ISP_H / 1000.0),
             "delivered_mwh": float(np.nansum(order.delivered_kw) * ISP_H / 1000.0),
             "shortfall_mwh": float(np.nansum(order.deficiency_kw) * ISP_H / 1000.0),
             "revenue_eur": _cents(order.revenue_eur), "penalty_eur": _cents(order.penalty_eur)}))
    return found


def _summary(run: SettlementRun, grid: DayGrid, afrr_day: afrr.AfrrDay, orders: list[congestion.OrderDay],
             imbalance_cost: float, imbalance_missing: npt.NDArray[np.bool_], sessions: int,
             flags: list[list[str]], activations: list[ActivationShare], attributed: list[tuple[float, float]],
             metered_kwh: FloatArray, schedule: FloatArray) -> dict[str, Any]:
    result = afrr_day.result
    revenue = sum(a.totals["revenue_eur"] for a in activations)
    penalty = sum(a.totals["penalty_eur"] for a in activations)
    flag_counts: dict[str, int] = {}
    for names in flags:
        for name in names:
            flag_counts[name] = flag_counts.get(name, 0) + 1
    return {
        "day": grid.day.isoformat(), "pool": run.pool, "isps": grid.isps,
        "baseline_methods": {"afrr": afrr.AFRR_BASELINE_METHOD, "sessions": UNCONTROLLED,
                             "orders": sorted({o.baseline_method for o in orders})},
        "afrr": {
            "requested_mwh": float(result.requested_mwh.sum()), "delivered_mwh": float(result.delivered_mwh.sum()),
            "shortfall_mwh": float(result.shortfall_mwh.sum()),
            "counted_shortfall_mwh": float(result.counted_shortfall_mwh.sum()),
            "payment_eur": _cents(float(result.payment_eur.sum())),
            "penalty_eur": _cents(float(result.penalty_eur.sum())),
            "activations": len(afrr_day.activations), "flagged_steps": int(afrr_day.flagged_steps.sum()),
            "missing_steps": int(afrr_day.missing_active_steps.sum()),
        },
        "congestion": {"orders": len(orders), "net_eur": _cents(sum(float(np.nansum(o.net_eur)) for o in orders)),
                       "disputed": sum(1 for o in orders if o.dso_status == "disputed")},
        "day_ahead": {"scheduled_isps": int(np.isfinite(schedule).sum()),
                      "metered_gap_isps": int(np.isnan(metered_kwh).sum()),
                      "imbalance_cost_eur": _cents(imbalance_cost),
                      "unsettled_isps": int((imbalance_missing & np.isfinite(schedule)).sum())},
        "sessions": {"count": sessions, "excluded": sum(1 for f in flags if f), "flags": flag_counts},
        "revenue_eur": _cents(revenue), "penalty_eur": _cents(penalty),
        "attributed_revenue_eur": _cents(sum(r for r, _ in attributed)),
        "attributed_penalty_eur": _cents(sum(p for _, p in attributed)),
        "unattributed_eur": _cents(revenue - penalty - sum(r - p for r, p in attributed)),
    }


def _upsert_run(db: Session, day: date, pool: str) -> SettlementRun:
    run = db.scalar(select(SettlementRun).where(SettlementRun.day == day, SettlementRun.pool == pool))
    if run is None:
        run = SettlementRun(day=day, pool=pool, status="settled", baseline_method=UNCONTROLLED)
        db.add(run)
        db.flush()
    return run


def settle_day(db: Session, *, day: date, time_zone: str, pool: str | None = None,
               params: SettlementParams | None = None, now: datetime | None = None,
               only_missing: bool = False) -> list[SettlementRun]:
    """Settle one pool, or every pool with data on the day (``only_missing``: skip pools already settled)."""
    if pool is not None:
        return [settle(db, day=day, pool=pool, time_zone=time_zone, params=params, now=now)]
    grid = DayGrid.of(day, time_zone)
    runs = []
    done = set(db.scalars(select(SettlementRun.pool).where(SettlementRun.day == day))) if only_missing else set()
    for name in pools_with_data(db, grid):
        if name not in done:
            runs.append(settle(db, day=day, pool=name, time_zone=time_zone, params=params, now=now))
    return runs


def get_run(db: Session, day: date, pool: str) -> SettlementRun:
    """The stored settlement of a pool's day, or NotFound saying how to produce it."""
    run = db.scalar(select(SettlementRun).where(SettlementRun.day == day, SettlementRun.pool == pool))
    if run is None:
        raise NotFound(f"pool {pool!r} has no settlement for {day.isoformat()}: run `vpp settle --day "
                       f"{day.isoformat()} --pool {pool}` or POST .../settlement/days/{day.isoformat()}/run",
                       details={"pool": pool, "day": day.isoformat()})
    return run


def list_runs(db: Session, day: date) -> list[SettlementRun]:
    """Every stored settlement of a day, by pool."""
    return list(db.scalars(select(SettlementRun).where(SettlementRun.day == day).order_by(SettlementRun.pool)))
