"""Re-planning a pool: build its plan problem from the fleet, commitments and prices, plan, store the plan.

The planner (``vpp.algorithms.planning``) is pure; this module reads what it needs (the fleet now, the pool's
forecast arrivals, its commitments over the horizon, cleared and forecast prices), stores the result in
``pool_plans`` (one row per pool, so a restarted or new dispatcher finds it) and tells the dispatcher's snapshot
each session's planned power now. A plan is re-made every ISP (Celery beat, ``plan.replan_pools``) and on events:
the dispatcher's snapshot source sees an arrival, a departure, a changed need or a new commitment or limit
against the stored plan and asks for a re-plan (``BackgroundReplanner``).
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from vpp.algorithms.dispatch import (
    AC_CAR_ASSUMED_KW,
    AC_CHARGER_MAX_KW,
    DISCHARGE_LAXITY_DERATE,
    FINISH_MARGIN_S,
)
from vpp.algorithms.planning import (
    Plan,
    PlanProblem,
    arrivals_draw_kw,
    car_limited_kw,
    drawn_kw,
    need_end_soc,
    peak_guard_kw,
    plan_pool,
    planned_max_kw,
    recharge_soc_floor_kwh,
    taper_departure,
    uncontrolled_load_kw,
)
from vpp.algorithms.scheduling import SchedulingProblem
from vpp.commitments.tables import Commitment
from vpp.db import unit_of_work, utcnow
from vpp.domain.commitments import CommitmentKind
from vpp.domain.errors import DomainError
from vpp.domain.isp import ISP, IspHorizon, delivery_day_bounds, delivery_day_of, floor_to_isp
from vpp.domain.pools import PoolId, PoolKind
from vpp.portfolio.fleet import Fleet
from vpp.portfolio.sites import equipped_sites, plan_sites
from vpp.portfolio.tables import PoolPlan

if TYPE_CHECKING:
    from vpp.algorithms.price_forecast import ForecastMemo
    from vpp.config import Settings
    from vpp.portfolio.service import ForecastFlex, PortfolioService

log = logging.getLogger(__name__)
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
ISP_H = ISP.total_seconds() / 3600.0
MAX_PLAN_ISPS = 4 * 24 * 7



@dataclass(frozen=True)
class PlanSettings:
    """How pools are planned (from Settings where a setting exists)."""

    imbalance_eur_per_mwh: float = 50.0
    market_timezone: str = "Europe/Amsterdam"
    forecast_weeks: int = 4
    # Forecast arrivals planned: the median count (the day-ahead bid takes a reliable low quantile instead).
    quantile: str = "p50"
    # ISPs of each present session's plan kept for the dispatcher (a missed re-plan still leaves a plan).
    stored_isps: int = 8
    # Events re-plan a pool at most this often (service-clock seconds); a new ISP always does.
    event_min_seconds: float = 60.0

    @classmethod
    def from_settings(cls, settings: Settings) -> PlanSettings:
        """The settings' imbalance price and market time zone."""
        return cls(imbalance_eur_per_mwh=settings.plan_imbalance_eur_per_mwh,
                   market_timezone=settings.market_timezone, forecast_weeks=settings.bids_forecast_weeks)


def plan_horizon(fleet: Fleet, idx: IntArray, at: datetime, tz: str) -> IspHorizon:
    """From now's ISP to the last departure, and at least to the end of the next delivery day (a week at most)."""
    start = floor_to_isp(at)
    _, end = delivery_day_bounds(delivery_day_of(at, tz) + timedelta(days=1), tz)
    if idx.size:
        last = pd.Timestamp(fleet.departure[idx].max())
        if not pd.isna(last):
            end = max(end, last.to_pydatetime())
    count = min(max(1, math.ceil((end - start) / ISP)), MAX_PLAN_ISPS)
    return IspHorizon(start, count)


def _per_isp(db: Session, pools: Sequence[str], horizon: IspHorizon, kind: CommitmentKind,
             combine: str) -> dict[str, FloatArray]:
    """Commitments of ``kind`` per pool and ISP of the horizon (NaN where none); summed or the minimum."""
    rows = db.execute(select(Commitment.pool, Commitment.isp_start, Commitment.power_kw).where(
        Commitment.pool.in_(list(pools)), Commitment.kind == kind.value, Commitment.isp_start >= horizon.start,
        Commitment.isp_start < horizon.end)).all()
    out: dict[str, FloatArray] = {}
    for pool, isp_start, power_kw in rows:
        values = out.setdefault(pool, np.full(horizon.count, np.nan))
        t = int((isp_start - horizon.start) / ISP)
        old = values[t]
        if math.isnan(old):
            values[t] = power_kw
        else:
            values[t] = old + power_kw if combine == "sum" else min(old, power_kw)
    return out


def plan_prices(db: Session, pool: str, horizon: IspHorizon, settings: PlanSettings,
                forecast: Callable[[list[datetime]], FloatArray] | None = None) -> tuple[FloatArray, FloatArray]:
    """Prices per ISP (cleared day-ahead where the pool holds a schedule, a forecast elsewhere) and the position."""
    rows = db.execute(select(Commitment.isp_start, Commitment.power_kw, Commitment.price_eur_per_mwh).where(
        Commitment.pool == pool, Commitment.kind == CommitmentKind.DAY_AHEAD_SCHEDULE.value,
        Commitment.isp_start >= horizon.start, Commitment.isp_start < horizon.end)).all()
    cleared = np.full(horizon.count, np.nan)
    position = np.full(horizon.count, np.nan)
    for isp_start, power_kw, price in rows:
        t = int((isp_start - horizon.start) / ISP)
        position[t] = power_kw + (0.0 if math.isnan(position[t]) else position[t])
        if price is not None:
            cleared[t] = price
    missing = np.isnan(cleared)
    if missing.any():
        isps = [ts.to_pydatetime() for ts in horizon.index]
        try:
            guessed = (forecast or _history_forecast(settings))(isps)
        except DomainError:
            known = cleared[~missing]
            guessed = np.full(horizon.count, float(known.mean()) if known.size else 0.0)
        cleared = np.where(missing, guessed, cleared)
    return cleared, position


def _history_forecast(settings: PlanSettings) -> Callable[[list[datetime]], FloatArray]:
    def forecast(isps: list[datetime]) -> FloatArray:
        from vpp.algorithms.price_forecast import forecast_prices
        from vpp.data.prices import load_day_ahead_prices

        history = load_day_ahead_prices()
        return forecast_prices(history, isps, weeks=settings.forecast_weeks, tz=settings.market_timezone,
                               memo=_price_memo(history))

    return forecast


_PRICE_MEMO: list[ForecastMemo] = []


def _price_memo(history: pd.Series) -> ForecastMemo:
    """The forecast memo of the bundled price history (read once and kept: ``load_day_ahead_prices``), so that each
    re-plan forecasts only the ISPs its horizon gained; a new one if the history was read again."""
    from vpp.algorithms.price_forecast import ForecastMemo

    if not _PRICE_MEMO or _PRICE_MEMO[0].history is not history:
        _PRICE_MEMO[:] = [ForecastMemo(history)]
    return _PRICE_MEMO[0]


def _group_caps(db: Session, fleet: Fleet, idx: IntArray, horizon: IspHorizon,
                site_load_kw: dict[str, float]) -> tuple[IntArray, FloatArray]:
    """Each present session's capped group (congestion point first, then site; -1: none) and the caps per ISP."""
    names: list[str] = []
    static: list[float] = []
    for column, limits in ((fleet.congestion_pool, fleet.congestion_max_kw), (fleet.site_pool,
                                                                              fleet.site_capacity_kw)):
        for name in sorted({v for v in column[idx] if v is not None}):
            names.append(name)
            static.append(limits.get(name, math.inf) - site_load_kw.get(name, 0.0))
    ordered = _per_isp(db, names, horizon, CommitmentKind.CONGESTION_LIMIT, "min") if names else {}
    caps = np.full((len(names), horizon.count), np.inf)
    for g, name in enumerate(names):
        caps[g] = np.maximum(np.fmin(np.full(horizon.count, static[g]), ordered.get(name, np.inf)), 0.0)
    capped = np.isfinite(caps).any(axis=1) if names else np.zeros(0, dtype=bool)
    group = np.full(idx.size, -1, dtype=np.int64)
    for g, name in enumerate(names):
        if not capped[g]:
            continue
        column = fleet.congestion_pool if name.startswith("congestion_point:") else fleet.site_pool
        free = (group < 0) & (column[idx] == name)
        group[free] = g
    return group, caps


def _device_caps(db: Session, fleet: Fleet, idx: IntArray, horizon: IspHorizon) -> FloatArray | None:
    """Present sessions x ISPs caps of §14a curtailments (inf where none); None without any."""
    rows = db.execute(select(Commitment.pool).where(
        Commitment.kind == CommitmentKind.DEVICE_CURTAILMENT.value, Commitment.isp_start >= horizon.start,
        Commitment.isp_start < horizon.end).distinct()).scalars().all()
    if not rows:
        return None
    per_pool = _per_isp(db, list(rows), horizon, CommitmentKind.DEVICE_CURTAILMENT, "min")
    caps = np.full((idx.size, horizon.count), np.inf)
    for pool, values in per_pool.items():
        try:
            members = np.isin(idx, fleet.members(pool))
        except (DomainError, ValueError):
            continue
        caps[members] = np.fmin(caps[members], values[None, :])
    return caps


def _forecast_arrivals(forecast: ForecastFlex | None, horizon: IspHorizon,
                       quantile: str) -> list[tuple[int, int, float]]:
    """(arrival ISP, departure ISP, energy) of the forecast cars arriving after now's ISP."""
    from vpp.portfolio.service import forecast_stays  # the service imports this module

    if forecast is None:
        return []
    expected = np.asarray(forecast.arrivals[quantile], dtype=np.float64).copy()
    expected[:1] = 0.0
    return forecast_stays(forecast, expected, horizon.count)


def drawable_kw(db: Session, fleet: Fleet, idx: IntArray, pool: str,
                known: dict[str, float] | None = None, *, at: datetime | None = None) -> FloatArray:
    """What each present session's car is known to draw at most (NaN: its charger's maximum), learned from its
    latest reading against the limit the dispatcher had in force (``vpp.algorithms.planning.car_limited_kw``).

    With ``at`` (the plan's moment), only the limits sent up to it count: a dispatcher that goes on cycling while
    the plan is made records later ones (``DispatchPools`` starts the re-plan once the cycle of its moment has
    recorded its limits, so that cycle's are always seen).
    """
    from vpp.dispatch.service import limits_sent_at

    n = idx.size
    if n == 0 or fleet.reading_start_s.size == 0:
        return np.full(n, np.nan)
    sent = limits_sent_at(db, pool, until=at)
    limit = np.full(n, np.nan)
    sent_s = np.full(n, np.nan)
    for k, i in enumerate(idx):
        found = sent.get(fleet.session_ids[i])
        if found is not None:
            limit[k], sent_s[k] = found[0], found[1].timestamp()
    learned = car_limited_kw(fleet.current_kw[idx], fleet.reading_start_s[idx], fleet.reading_end_s[idx], limit,
                             sent_s, fleet.max_kw[idx])
    if known is None:
        return learned
    return remember_draw(known, [fleet.session_ids[i] for i in idx], learned, fleet.current_kw[idx])


def remember_draw(known: dict[str, float], ids: Sequence[str], learned_kw: FloatArray,
                  current_kw: FloatArray) -> FloatArray:
    """Merge this plan's learned draws into ``known`` (in place) and return each session's known draw (NaN: none).

    A newly judged session takes its new value; one judged before keeps its value while it draws no more than
    that, and is forgotten once it draws more (or has no reading) or has left.
    """
    out = np.asarray(learned_kw, dtype=np.float64).copy()
    for sid in set(known) - set(ids):
        del known[sid]
    for k, sid in enumerate(ids):
        if np.isfinite(out[k]):
            known[sid] = float(out[k])
        elif sid in known and not current_kw[k] <= known[sid]:
            del known[sid]
        elif sid in known:
            out[k] = known[sid]
    return out


def plan_problem(db: Session, fleet: Fleet, pool: str, at: datetime, forecast: ForecastFlex | None,
                 settings: PlanSettings, *, site_load_kw: dict[str, float] | None = None,
                 price_forecast: Callable[[list[datetime]], FloatArray] | None = None,
                 drawable: FloatArray | None = None,
                 site_planned: Collection[str] = ()) -> tuple[PlanProblem, IspHorizon]:
    """The pool's plan problem now: present sessions, forecast arrivals, prices, position, headroom and caps.

    ``drawable`` caps present sessions at what their cars are known to draw (``drawable_kw``; NaN: no cap).
    ``site_planned``: the site pools whose cars their site's LP re-plans (``plan_sites``); their cars keep their
    charger's rating (within ``drawable``) where the others are planned at what an AC car is taken to draw
    (``planned_max_kw``): at 11 kW ``debrecen-office``'s cars started before the PV (renewable share of charging
    39.0 % against 48.2 %) and ``stedin-fleet``'s pool peaked higher (360.3 against 338.2 kW).
    """
    idx = fleet.members(pool)
    horizon = plan_horizon(fleet, idx, at, settings.market_timezone)
    t_count = horizon.count
    start_ns = pd.Timestamp(horizon.start).value
    isp_ns = int(ISP.total_seconds() * 1e9)
    departure_ns = fleet.departure[idx].as_unit("ns").asi8
    departure = np.clip(-((start_ns - departure_ns) // isp_ns), 1, t_count).astype(np.int64)
    soc, battery, floor = fleet.soc_kwh[idx], fleet.battery_kwh[idx], fleet.min_soc_kwh[idx]
    v2g = (fleet.discharge_kw[idx] > 0) & np.isfinite(soc) & np.isfinite(battery) & (battery > 0) & (soc <= battery)
    n_present = idx.size
    arrivals = _forecast_arrivals(forecast, horizon, settings.quantile)
    n = n_present + len(arrivals)
    energy = np.concatenate([np.maximum(fleet.energy_needed_kwh[idx], 0.0), [e for _, _, e in arrivals]])
    from vpp.portfolio.service import FORECAST_MAX_KW

    present_max = fleet.max_kw[idx] if drawable is None else np.fmin(fleet.max_kw[idx], drawable)
    # Planned to be done before the taper near full slows the car (on AC, at most 11 kW unless known to draw less).
    full_kw = np.where(fleet.max_kw[idx] <= AC_CHARGER_MAX_KW, np.fmin(present_max, AC_CAR_ASSUMED_KW), present_max)
    # ... and planned at most at what the taper and the dispatcher take it to draw (on AC 11 kW unless drawing more).
    at_site = np.isin(fleet.site_pool[idx], list(site_planned)) if site_planned else np.zeros(idx.size, dtype=bool)
    planned = planned_max_kw(fleet.max_kw[idx], drawable, fleet.current_kw[idx])
    plan_max = np.where(at_site, present_max, planned)
    departure = taper_departure(departure, np.maximum(fleet.energy_needed_kwh[idx], 0.0), full_kw, ISP_H,
                                soc_kwh=fleet.soc_kwh[idx], battery_kwh=fleet.battery_kwh[idx],
                                target_soc=fleet.target_soc_of(idx))
    max_kw = np.concatenate([plan_max, np.full(len(arrivals), FORECAST_MAX_KW)])
    min_kw = np.concatenate([np.where(v2g, -fleet.discharge_kw[idx], 0.0), np.zeros(len(arrivals))])
    nan_tail = np.full(len(arrivals), np.nan)
    soc_now = np.where(v2g, soc, np.nan)
    prices, position = plan_prices(db, pool, horizon, settings, price_forecast)
    up = _per_isp(db, [pool], horizon, CommitmentKind.AFRR_CAPACITY_UP, "sum").get(pool, np.zeros(t_count))
    down = _per_isp(db, [pool], horizon, CommitmentKind.AFRR_CAPACITY_DOWN, "sum").get(pool, np.zeros(t_count))
    pool_cap = _per_isp(db, [pool], horizon, CommitmentKind.CONGESTION_LIMIT, "min").get(pool)
    group, group_caps = _group_caps(db, fleet, idx, horizon, site_load_kw or {})
    device = _device_caps(db, fleet, idx, horizon)
    session_max = None
    if device is not None:
        session_max = np.vstack([device, np.full((len(arrivals), t_count), np.inf)])
    sessions = SchedulingProblem(
        start=horizon.start, isp_hours=ISP_H, prices_eur_per_mwh=prices,
        pool_max_kw=np.full(t_count, np.inf) if pool_cap is None else np.where(np.isnan(pool_cap), np.inf, pool_cap),
        pool_min_kw=np.full(t_count, -np.inf),
        session_ids=tuple(fleet.session_ids[i] for i in idx) + tuple(f"forecast-{k}" for k in range(len(arrivals))),
        arrival=np.concatenate([np.zeros(n_present, dtype=np.int64),
                                np.asarray([a for a, _, _ in arrivals], dtype=np.int64)]),
        departure=np.concatenate([departure, np.asarray([d for _, d, _ in arrivals], dtype=np.int64)]),
        energy_kwh=energy, max_kw=max_kw, min_kw=min_kw,
        battery_kwh=np.concatenate([np.where(v2g, battery, np.nan), nan_tail]),
        soc_kwh=np.concatenate([soc_now, nan_tail]),
        min_soc_kwh=np.concatenate([np.where(v2g, np.minimum(floor, soc), np.nan), nan_tail]),
        position_kw=position, imbalance_eur_per_mwh=settings.imbalance_eur_per_mwh, session_max_kw=session_max,
    )
    if sessions.is_v2g.any():
        # A V2G car sells only as far as it can recharge by departure at what it is known to draw (its draw seen,
        # without the planning headroom; else 11 kW on AC), with the taper: the dispatcher's discharge laxity.
        seen = np.where(np.isfinite(present_max) & (present_max < fleet.max_kw[idx]), drawn_kw(present_max), full_kw)
        floor_kwh = recharge_soc_floor_kwh(
            (departure_ns - start_ns) / 3.6e12, soc_now, fleet.energy_needed_kwh[idx], np.where(v2g, battery, np.nan),
            seen, sessions.max_kw_by_isp()[:n_present], ISP_H, derate=DISCHARGE_LAXITY_DERATE,
            margin_h=FINISH_MARGIN_S / 3600.0)
        sessions = replace(sessions, soc_floor_kwh=np.vstack([floor_kwh, np.full((len(arrivals), t_count), np.nan)]))
    # A site-planned car not seen drawing is taken at what an AC car draws (11 kW), as the dispatcher takes it.
    guard = peak_guard_kw(sessions, _uncontrolled_peak_kw(fleet, idx, horizon, arrivals,
                                                          np.where(at_site, planned, present_max), pool))
    sessions = replace(sessions, pool_max_kw=np.fmin(sessions.pool_max_kw, guard))
    problem = PlanProblem(
        sessions=sessions, present=np.arange(n) < n_present,
        up_headroom_kw=np.nan_to_num(np.maximum(up, 0.0)), down_headroom_kw=np.nan_to_num(np.maximum(down, 0.0)),
        session_group=np.concatenate([group, np.full(len(arrivals), -1, dtype=np.int64)]),
        group_max_kw=group_caps)
    return problem, horizon


def _uncontrolled_peak_kw(fleet: Fleet, idx: IntArray, horizon: IspHorizon,
                          arrivals: Sequence[tuple[int, int, float]], draw_kw: FloatArray, pool: str) -> float:
    """The highest load of the pool's cars charged uncontrolled: the present ones from their plug-in with their
    whole energy (delivered and still needed), the forecast arrivals from their arrival.

    ``draw_kw``: what each present car draws at full power (what it is known to draw, else its charger's maximum),
    the forecast arrivals their mean (``arrivals_draw_kw``, at most 11 kW); each slows near full (the taper, at its
    own target where its state of charge and battery are known, else its learned one, a forecast arrival at its
    pool's). Before, every car drew its charger's maximum to the end: 152-223 kW on utrecht's re-plans for a day
    whose cars drew 146.6 kW uncontrolled."""
    from vpp.portfolio.service import FORECAST_MAX_KW

    start_ns = pd.Timestamp(horizon.start).value
    isp_ns = int(ISP.total_seconds() * 1e9)
    plugged = (fleet.plugged_in[idx].as_unit("ns").asi8 - start_ns) // isp_ns
    leaves = -((start_ns - fleet.departure[idx].as_unit("ns").asi8) // isp_ns)
    energy = np.nan_to_num(fleet.delivered_kwh[idx]) + np.maximum(np.nan_to_num(fleet.energy_needed_kwh[idx]), 0.0)
    arrival = np.concatenate([plugged, [a for a, _, _ in arrivals]]).astype(np.int64)
    departure = np.concatenate([np.maximum(leaves, plugged + 1), [d for _, d, _ in arrivals]]).astype(np.int64)
    first = int(arrival.min(initial=0))
    # Each present car's need ends where the re-plan's taper has it end; a forecast arrival's at its pool's prior.
    target, battery = need_end_soc(fleet.energy_needed_kwh[idx], soc_kwh=fleet.soc_kwh[idx],
                                   battery_kwh=fleet.battery_kwh[idx], target_soc=fleet.target_soc_of(idx))
    present_battery = np.full(idx.size, np.nan) if battery is None else battery
    arriving_target = [fleet.pool_target_soc(pool, e) for _, _, e in arrivals]
    load = uncontrolled_load_kw(arrival - first, departure - first,
                                np.concatenate([energy, [e for _, _, e in arrivals]]),
                                np.concatenate([draw_kw, np.full(len(arrivals),
                                                                 arrivals_draw_kw(draw_kw, FORECAST_MAX_KW))]),
                                ISP_H, target_soc=np.concatenate([target, arriving_target]),
                                battery_kwh=np.concatenate([present_battery, np.full(len(arrivals), np.nan)]))
    return float(load.max(initial=0.0))


def store_plan(db: Session, pool: str, at: datetime, horizon: IspHorizon, plan: Plan, fleet: Fleet,
               settings: PlanSettings) -> PoolPlan:
    """Replace the pool's stored plan."""
    keep = min(settings.stored_isps, horizon.count)
    position = {sid: k for k, sid in enumerate(fleet.session_ids)}
    rows = np.asarray([position[sid] for sid in plan.session_ids], dtype=np.int64)
    departure_s = fleet.departure[rows].as_unit("ns").asi8 / 1e9 if rows.size else np.zeros(0)
    target = fleet.delivered_kwh[rows] + fleet.energy_needed_kwh[rows] if rows.size else np.zeros(0)
    row = db.get(PoolPlan, pool)
    if row is None:
        row = PoolPlan(pool=pool)
        db.add(row)
    row.planned_at = at
    row.recorded_at = utcnow()
    row.start = horizon.start
    row.isps = keep
    row.session_ids = list(plan.session_ids)
    row.power_kw = np.ascontiguousarray(plan.schedule_kw[:, :keep], dtype=np.float32).tobytes()
    row.departure_s = np.asarray(departure_s, dtype=np.float64).tobytes()
    row.target_kwh = np.asarray(np.nan_to_num(target), dtype=np.float64).tobytes()
    row.pool_kw = [round(float(v), 3) for v in plan.pool_kw]
    row.method = plan.method[:80]
    row.status = plan.status[:32]
    row.seconds = plan.seconds
    db.flush()
    return row


def replan(db: Session, portfolio: PortfolioService, pool: str, at: datetime, settings: PlanSettings, *,
           price_forecast: Callable[[list[datetime]], FloatArray] | None = None,
           known_draw_kw: dict[str, float] | None = None) -> PoolPlan | None:
    """Plan ``pool`` at ``at`` and store the plan; None for a pool without sessions now.

    ``known_draw_kw``: what earlier plans learned of the cars' draw (``drawable_kw``), kept by the caller.
    """
    from vpp.portfolio.service import pool_forecast, site_loads_kw

    fleet = portfolio.fleet(db, at)
    if pool not in fleet.pools():
        return None
    horizon = plan_horizon(fleet, fleet.members(pool), at, settings.market_timezone)
    forecast = pool_forecast(db, fleet, pool, horizon, portfolio.config)
    equipped = equipped_sites(db)
    problem, horizon = plan_problem(db, fleet, pool, at, forecast, settings,
                                    site_load_kw=site_loads_kw(db, at, equipped),
                                    price_forecast=price_forecast,
                                    drawable=drawable_kw(db, fleet, fleet.members(pool), pool, known_draw_kw, at=at),
                                    site_planned=frozenset(equipped))
    plan = plan_pool(problem)
    # Equipped sites (PV, battery, tariff) re-plan their own cars behind their meter; others keep this plan.
    plan = plan_sites(db, fleet, at, horizon, problem, plan, settings.market_timezone, sites=equipped)
    return store_plan(db, pool, at, horizon, plan, fleet, settings)


@dataclass(frozen=True)
class StoredPlan:
    """A stored plan as the dispatcher's snapshot reads it."""

    pool: str
    planned_at: datetime
    recorded_at: datetime
    start: datetime
    session_ids: tuple[str, ...]
    power_kw: FloatArray
    departure_s: FloatArray
    target_kwh: FloatArray
    # The plan's highest pool power over its horizon, forecast arrivals included (kW; None: not stored).
    peak_kw: float | None = None

    @classmethod
    def of(cls, row: PoolPlan) -> StoredPlan:
        """Decode a row."""
        ids = tuple(row.session_ids)
        power = np.frombuffer(row.power_kw, dtype=np.float32).astype(np.float64)
        return cls(pool=row.pool, planned_at=row.planned_at, recorded_at=row.recorded_at, start=row.start,
                   session_ids=ids, power_kw=power.reshape(len(ids), row.isps) if ids else np.zeros((0, row.isps)),
                   departure_s=np.frombuffer(row.departure_s, dtype=np.float64),
                   target_kwh=np.frombuffer(row.target_kwh, dtype=np.float64),
                   peak_kw=max(row.pool_kw) if row.pool_kw else None)

    def power_at(self, session_ids: Sequence[str], at: datetime) -> FloatArray:
        """Each session's planned power in the ISP of ``at``; NaN for a session without one (or past the plan)."""
        out = np.full(len(session_ids), np.nan)
        t = int((floor_to_isp(at) - self.start) / ISP)
        if not 0 <= t < self.power_kw.shape[1]:
            return out
        row_of = {sid: k for k, sid in enumerate(self.session_ids)}
        for k, sid in enumerate(session_ids):
            row = row_of.get(sid)
            if row is not None:
                out[k] = self.power_kw[row, t]
        return out

    def stale_reason(self, fleet: Fleet, idx: IntArray, at: datetime, commitments_at: datetime | None,
                     event_min_seconds: float) -> str | None:
        """Why the plan should be re-made now (a new ISP, an arrival or departure, a changed need or commitment)."""
        if floor_to_isp(at) > self.start:
            return "isp"
        if (at - self.planned_at).total_seconds() < event_min_seconds:
            return None
        ids = tuple(fleet.session_ids[i] for i in idx)
        if set(ids) != set(self.session_ids):
            return "arrival or departure"
        if commitments_at is not None and commitments_at > self.recorded_at:
            return "commitment"
        order = {sid: k for k, sid in enumerate(self.session_ids)}
        rows = np.asarray([order[sid] for sid in ids], dtype=np.int64)
        departure_s = fleet.departure[idx].as_unit("ns").asi8 / 1e9
        target = np.nan_to_num(fleet.delivered_kwh[idx] + fleet.energy_needed_kwh[idx])
        if rows.size and (np.abs(departure_s - self.departure_s[rows]) > 60.0).any():
            return "need"
        if rows.size and (np.abs(target - self.target_kwh[rows]) > 0.5).any():
            return "need"
        return None


def stored_plan_row(db: Session, pool: str) -> PoolPlan | None:
    """The pool's stored plan row, if any."""
    return db.get(PoolPlan, pool)


def plan_recorded_at(db: Session, pool: str) -> datetime | None:
    """When the pool's plan was last stored (wall clock)."""
    return db.scalar(select(PoolPlan.recorded_at).where(PoolPlan.pool == pool))


def commitments_changed_at(db: Session) -> datetime | None:
    """The latest change to any commitment (wall clock): new schedules, awards and limits re-plan."""
    return db.scalar(select(func.max(Commitment.updated_at)))


class BackgroundReplanner:
    """Re-plans pools on one background thread, at most one pending re-plan per pool."""

    def __init__(self, factory: sessionmaker[Session], portfolio: PortfolioService, settings: PlanSettings) -> None:
        self._factory = factory
        self._portfolio = portfolio
        self.settings = settings
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vpp-plan")
        self._pending: set[str] = set()
        # Per pool, what the cars are known to draw (learned by earlier plans; one re-plan at a time uses it).
        self._known_draw_kw: dict[str, dict[str, float]] = {}
        self._lock = threading.Lock()
        self.runs = 0

    def request(self, pool: str, at: datetime, reason: str) -> bool:
        """Ask for a re-plan of ``pool`` at ``at``; False when one is already pending."""
        with self._lock:
            if pool in self._pending:
                return False
            self._pending.add(pool)
        self._pool.submit(self._run, pool, at, reason)
        return True

    def _run(self, pool: str, at: datetime, reason: str) -> None:
        try:
            with unit_of_work(self._factory) as db:
                replan(db, self._portfolio, pool, at, self.settings,
                       known_draw_kw=self._known_draw_kw.setdefault(pool, {}))
            self.runs += 1
        except Exception:
            log.exception("re-plan of %s (%s) failed", pool, reason)
        finally:
            with self._lock:
                self._pending.discard(pool)

    def wait(self, timeout_s: float = 30.0) -> None:
        """Wait until nothing is pending (tests, simulations)."""
        done = threading.Event()
        self._pool.submit(done.set)
        done.wait(timeout_s)

    def shutdown(self) -> None:
        """Finish the running re-plan and stop."""
        self._pool.shutdown(wait=True)


def zone_pools(pools: Sequence[str]) -> list[str]:
    """The bidding-zone pools among ``pools`` (the ones dispatched, so the ones planned)."""
    return [p for p in pools if PoolId.parse(p).kind is PoolKind.ZONE]
