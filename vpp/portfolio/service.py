"""The portfolio's computations on a loaded fleet: pool flexibility, forecasts, dispatch snapshots, instances.

:class:`PortfolioService` implements the ports other rooms read the portfolio through:
``PortfolioView`` (bid builders), ``PoolSnapshotSource`` (the dispatcher) and ``CongestionFlexSource``
(the UFTP agent), each opening its own short transaction.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from vpp.algorithms.flexibility import (
    aggregate_pools,
    build_envelopes,
    discharge_kw,
    envelope_arrays,
    plan_lag_model,
    plugged_discharge_kw,
)
from vpp.algorithms.forecast import forecast_sessions
from vpp.algorithms.planning import uncontrolled_load_kw
from vpp.db import unit_of_work
from vpp.domain.dispatch import DispatchSnapshot, GroupCaps
from vpp.domain.errors import InvalidInput, NotFound
from vpp.domain.flexibility import SessionFlexInput
from vpp.domain.isp import ISP, IspHorizon, floor_to_isp, is_isp_aligned
from vpp.domain.pool_view import PoolFlexibility
from vpp.domain.pools import PoolId, PoolKind
from vpp.domain.sites import SiteEquipment
from vpp.portfolio.fleet import Fleet, completed_history, load_fleet, site_frame
from vpp.portfolio.planning import (
    BackgroundReplanner,
    StoredPlan,
    commitments_changed_at,
    plan_recorded_at,
    stored_plan_row,
)
from vpp.portfolio.sites import (
    behind_the_meter_loads_kw,
    capacity_import_caps_kw,
    equipped_sites,
    site_outages,
    stress_signal_pools,
)
from vpp.portfolio.tables import Site, SiteLoad
from vpp.ports import Clock, CongestionFlexibility, SystemClock
from vpp.sessions.tables import ChargingSession, SessionReading

FloatArray = npt.NDArray[np.float64]
MAX_HORIZON_ISPS = 4 * 24 * 7
# Below this many past arrivals in a local hour, forecast arrivals at that hour take the stays of the whole history.
MIN_SESSIONS_PER_HOUR = 5


@dataclass(frozen=True)
class PortfolioConfig:
    """Tuning of the portfolio model."""

    market_timezone: str = "Europe/Amsterdam"
    max_kw_per_car: float = 11.0
    lag_hours: float = 2.0
    catch_up: int = 3
    history_days: int = 28
    fleet_cache_seconds: float = 2.0
    # V2G is offered as the discharge power each car can hold this long above its state-of-charge floor.
    v2g_hold_hours: float = 1.0


def horizon_of(start: datetime, end: datetime) -> IspHorizon:
    """The ISPs in [start, end): both on the grid, at most a week."""
    if start.tzinfo is None or end.tzinfo is None:
        raise InvalidInput("start and end must carry a time zone (UTC offsets or Z)")
    if not (is_isp_aligned(start) and is_isp_aligned(end)):
        raise InvalidInput("start and end must lie on the 15-minute ISP grid")
    count = int((end - start) / ISP)
    if count <= 0:
        raise InvalidInput("end must be after start")
    if count > MAX_HORIZON_ISPS:
        raise InvalidInput(f"at most {MAX_HORIZON_ISPS} ISPs (a week) per request, asked for {count}")
    return IspHorizon(start, count)


def _flex_input(fleet: Fleet, idx: npt.NDArray[np.int64]) -> SessionFlexInput:
    soc = fleet.soc_kwh[idx]
    battery = fleet.battery_kwh[idx]
    # Envelope inputs are strict: drop SoC readings that contradict the battery size instead of failing.
    valid_soc = np.isfinite(soc) & np.isfinite(battery) & (soc >= 0) & (soc <= battery)
    return SessionFlexInput(
        plugged_in=fleet.plugged_in[idx], departure=fleet.departure[idx],
        energy_kwh=fleet.energy_needed_kwh[idx], max_kw=fleet.max_kw[idx], min_kw=-fleet.discharge_kw[idx],
        battery_kwh=np.where(np.isfinite(battery) & (battery > 0), battery, np.nan),
        soc_kwh=np.where(valid_soc, soc, np.nan),
        min_soc_kwh=np.where(valid_soc, np.minimum(fleet.min_soc_kwh[idx], soc), 0.0),
    )


@dataclass(frozen=True)
class PresentFlex:
    """Flexibility of the sessions plugged in now, per ISP of a horizon."""

    baseline_kw: FloatArray
    min_kw: FloatArray
    max_kw: FloatArray
    energy_min_kwh: FloatArray
    energy_max_kwh: FloatArray
    plugged: FloatArray
    sessions: int
    flexible_sessions: int
    feasible: bool
    # Share of the sessions that may discharge, and what one of them can hold for the hold time (kW).
    v2g_share: float = 0.0
    v2g_car_kw: float = 0.0


def present_flexibility(fleet: Fleet, idx: npt.NDArray[np.int64], horizon: IspHorizon,
                        config: PortfolioConfig) -> PresentFlex:
    """Envelopes of the pool's sessions and their provably deliverable aggregate (lag model, site caps)."""
    t = horizon.count
    if idx.size == 0:
        zeros = np.zeros(t)
        return PresentFlex(zeros, zeros, zeros, zeros, zeros, zeros, 0, 0, True)
    env = build_envelopes(_flex_input(fleet, idx), horizon)
    arrays = envelope_arrays(env, dtype=np.float64)
    sites = fleet.site_pool[idx]
    site_names = sorted({s for s in sites if s is not None})
    site_code = np.array([site_names.index(s) if s is not None else -1 for s in sites], dtype=np.int64)
    site_cap = np.array([fleet.site_capacity_kw.get(s, math.inf) for s in site_names], dtype=np.float64)
    model = plan_lag_model(env, max_lag_hours=config.lag_hours, catch_up=config.catch_up,
                           site_codes=site_code if site_names else None,
                           site_cap_kw=site_cap if site_names else None)
    pooled = aggregate_pools(model, np.zeros(idx.size, dtype=np.int64), 1)
    # Sessions outside the lag model (V2G, short stays) still bound the pool's power per ISP; V2G cars count with
    # what they can discharge above their SoC floors and needs.
    plugged = (arrays.p_max_kw > 0).sum(axis=0).astype(np.float64)
    given_back = discharge_kw(env, config.v2g_hold_hours)
    v2g = env.min_kw < 0
    soc_bound = np.minimum(-env.min_kw[v2g], np.maximum(-env.floor_kwh[v2g], 0.0) / config.v2g_hold_hours)
    return PresentFlex(
        baseline_kw=pooled.baseline_kw[0],
        min_kw=np.minimum(pooled.p_min_kw[0], -given_back.sum(axis=0)),
        max_kw=np.maximum(pooled.p_max_kw[0], arrays.baseline_kw.sum(axis=0)),
        energy_min_kwh=pooled.e_min_kwh[0],
        energy_max_kwh=pooled.e_max_kwh[0],
        plugged=plugged,
        sessions=int(idx.size),
        flexible_sessions=int(pooled.flexible_sessions[0]),
        feasible=bool(pooled.feasible[0]),
        v2g_share=float(v2g.mean()),
        v2g_car_kw=float(soc_bound.mean()) if soc_bound.size else 0.0,
    )


def pool_history(db: Session, fleet_now: datetime, pool: str, days: int) -> pd.DataFrame:
    """Completed sessions of ``pool`` in the last ``days`` days, as the forecast takes them."""
    history = completed_history(db, fleet_now, days)
    pid = PoolId.parse(pool)
    # Only the pool id of the kind asked for is built (each is a string operation over the whole history).
    column = {
        PoolKind.CPO: lambda: history["party_key"].str.replace("/", "-").str.upper().radd("cpo:"),
        PoolKind.SITE: lambda: "site:" + history["site_id"].fillna(""),
        PoolKind.CONGESTION_POINT: lambda: "congestion_point:" + history["ean"].fillna(""),
        PoolKind.ZONE: lambda: "zone:" + history["zone"].fillna("NL"),
    }[pid.kind]()
    selected = history[column == pool]
    return pd.DataFrame({"pool": pool, "arrival": selected["arrival"], "departure": selected["departure"],
                         "energy_kwh": selected["energy_kwh"]})


@dataclass(frozen=True)
class ForecastFlex:
    """Sessions not yet plugged in, per ISP: quantiles of arrivals, power bounds and an uncontrolled baseline."""

    arrivals: dict[str, FloatArray]
    plugged: dict[str, FloatArray]
    energy_per_arrival_kwh: float
    dwell_hours: float
    days_of_history: int
    # Per ISP of the horizon, the stays (hours, kWh; sorted by hours) of past arrivals at its local hour of the day
    # (the whole history where an hour has few): forecast arrivals take them in turn, so the pool's pace has the
    # mix of short and long stays, not one median stay. None: every arrival gets the pool-wide figures above.
    stays_by_isp: tuple[tuple[FloatArray, FloatArray], ...] | None = None


def forecast_flexibility(history: pd.DataFrame, horizon: IspHorizon, config: PortfolioConfig, *,
                         observed_from: datetime | None = None, observed_until: datetime | None = None,
                         plugged_now: pd.DataFrame | None = None) -> ForecastFlex | None:
    """The forecast for the horizon from the pool's history, or None without history.

    The history covers [observed_from, observed_until): ISPs outside (the rest of the day it was read on) are
    left out of the profiles instead of counting as ISPs without cars. ``plugged_now`` (arrival, energy so far)
    are the sessions still plugged in at ``observed_until``; they count as plugged in up to that moment, so the
    hours before it are not short of the cars that stay.
    """
    if len(history) < 5:
        return None
    if observed_until is not None and not (history["arrival"] < floor_to_isp(observed_until)).any():
        return None
    fitted = history
    if plugged_now is not None and observed_until is not None and len(plugged_now):
        censored = pd.DataFrame({"pool": history["pool"].iloc[0],
                                 "arrival": pd.to_datetime(plugged_now["arrival"], utc=True),
                                 "departure": pd.Timestamp(observed_until), "energy_kwh": plugged_now["energy_kwh"]})
        fitted = pd.concat([history, censored[censored["arrival"] <= pd.Timestamp(observed_until)]],
                           ignore_index=True)
    frame = forecast_sessions(fitted, horizon, tz=config.market_timezone, max_kw_per_car=config.max_kw_per_car,
                              observed_from=observed_from, observed_until=observed_until)
    frame = pd.DataFrame(frame.xs(history["pool"].iloc[0], level="pool"))
    stays_h = ((history["departure"] - history["arrival"]).dt.total_seconds() / 3600.0).to_numpy(np.float64)
    energy = history["energy_kwh"].to_numpy(np.float64)
    dwell = float(np.median(stays_h))
    arrival_hour = np.asarray(pd.DatetimeIndex(history["arrival"]).tz_convert(config.market_timezone).hour)
    order = np.argsort(stays_h, kind="stable")
    everything = (stays_h[order], energy[order])
    of_hour = []
    for hour in range(24):
        chosen = order[arrival_hour[order] == hour]
        of_hour.append((stays_h[chosen], energy[chosen]) if chosen.size >= MIN_SESSIONS_PER_HOUR else everything)
    horizon_hour = np.asarray(horizon.index.tz_convert(config.market_timezone).hour)
    return ForecastFlex(
        arrivals={q: frame[f"arrivals_{q}"].to_numpy(np.float64) for q in ("p10", "p50", "p90", "mean")},
        plugged={q: frame[f"plugged_in_{q}"].to_numpy(np.float64) for q in ("p10", "p50", "p90", "mean")},
        energy_per_arrival_kwh=float(history["energy_kwh"].mean()),
        dwell_hours=float(dwell),
        days_of_history=int(frame["days"].to_numpy().max()) if len(frame) else 0,
        stays_by_isp=tuple(of_hour[h] for h in horizon_hour),
    )


def pool_forecast(db: Session, fleet: Fleet, pool: str, horizon: IspHorizon,
                  config: PortfolioConfig) -> ForecastFlex | None:
    """The pool's forecast from its completed sessions and those plugged in now, observed up to now."""
    idx = fleet.members(pool)
    plugged_now = pd.DataFrame({"arrival": fleet.plugged_in[idx], "energy_kwh": fleet.delivered_kwh[idx]})
    return forecast_flexibility(pool_history(db, fleet.at, pool, config.history_days), horizon, config,
                                observed_from=fleet.at - timedelta(days=config.history_days),
                                observed_until=fleet.at, plugged_now=plugged_now)


def _not_before(horizon: IspHorizon, now: datetime) -> FloatArray:
    """1 for ISPs that start at or after now's ISP, 0 before: arrivals only happen in the future."""
    starts = horizon.index
    return np.asarray(starts >= pd.Timestamp(floor_to_isp(now)), dtype=np.float64)


def combined_flexibility(pool: str, fleet: Fleet, idx: npt.NDArray[np.int64], horizon: IspHorizon,
                         forecast: ForecastFlex | None, config: PortfolioConfig) -> PoolFlexibility:
    """Present sessions plus the forecast of cars not yet plugged in (cars beyond those already known)."""
    present = present_flexibility(fleet, idx, horizon, config)
    t = horizon.count
    extra = {q: np.zeros(t) for q in ("p10", "p50", "p90")}
    baseline_extra = np.zeros(t)
    energy_extra = np.zeros(t)
    discharge_per_car_kw = 0.0
    if forecast is not None:
        future = _not_before(horizon, fleet.at)
        for q in extra:
            extra[q] = np.maximum(forecast.plugged[q] - present.plugged, 0.0) * future
        # Cars still to come discharge like the pool's V2G cars now (their share, their room above the floor),
        # as far as the needs of the pool's past stays leave room.
        if forecast.stays_by_isp:
            stay_hours = np.concatenate([h for h, _ in forecast.stays_by_isp])
            stay_kwh = np.concatenate([e for _, e in forecast.stays_by_isp])
        else:
            stay_hours, stay_kwh = np.array([forecast.dwell_hours]), np.array([forecast.energy_per_arrival_kwh])
        discharge_per_car_kw = present.v2g_share * plugged_discharge_kw(
            present.v2g_car_kw, stay_hours, stay_kwh, config.max_kw_per_car, config.v2g_hold_hours)
        # Uncontrolled charging of the forecast arrivals: each charges at full power from arrival until full.
        full_isps = max(1, math.ceil(forecast.energy_per_arrival_kwh / (config.max_kw_per_car * 0.25)))
        arriving_kwh = forecast.arrivals["mean"] * future * forecast.energy_per_arrival_kwh
        per_isp_kw = arriving_kwh / (full_isps * 0.25)
        baseline_extra = np.convolve(per_isp_kw, np.ones(full_isps))[:t]
        energy_extra = np.cumsum(arriving_kwh)
    max_kw = present.max_kw + extra["p50"] * config.max_kw_per_car
    return PoolFlexibility(
        pool=pool,
        isp_starts=tuple(ts.to_pydatetime() for ts in horizon.index),
        baseline_kw=present.baseline_kw + baseline_extra,
        min_kw=present.min_kw - extra["p50"] * discharge_per_car_kw,
        max_kw=np.maximum(max_kw, present.baseline_kw + baseline_extra),
        energy_min_kwh=present.energy_min_kwh,
        energy_max_kwh=present.energy_max_kwh + energy_extra,
        max_kw_p10=present.max_kw + extra["p10"] * config.max_kw_per_car,
        # Reliable discharge comes from the cars that are there with 90 % probability (the p10 count).
        min_kw_p90=present.min_kw - extra["p10"] * discharge_per_car_kw,
        sessions_now=present.sessions,
        sessions_forecast=float(forecast.arrivals["mean"].sum()) if forecast else 0.0,
    )


def site_loads_kw(db: Session, at: datetime,
                  equipped: Mapping[str, tuple[Site, SiteEquipment]] | None = None) -> dict[str, float]:
    """Non-EV load of every site in the ISP of ``at`` (pool id -> kW), net of PV and battery behind the meter
    (``equipped``: ``equipped_sites`` when the caller read them already)."""
    # By the sites' key (every row's site is one of them): the table's key is (site, ISP), so this is a lookup per
    # site where the ISP alone scanned every row of every site's history, twice a dispatcher cycle.
    rows = db.execute(select(SiteLoad.site_id, SiteLoad.load_kw).where(SiteLoad.site_id.in_(select(Site.id)),
                                                                       SiteLoad.isp_start == floor_to_isp(at)))
    loads = {f"site:{site}": float(kw) for site, kw in rows}
    # Behind the meter: PV and the battery's plan share the connection too.
    loads.update(behind_the_meter_loads_kw(db, at, equipped))
    return loads


def dispatch_snapshot(fleet: Fleet, pool: str, at: datetime, site_load_kw: dict[str, float], *,
                      outages: Mapping[str, Sequence[tuple[float, float]]] | None = None,
                      site_planned: frozenset[str] = frozenset(),
                      stress_signal: frozenset[str] = frozenset(),
                      import_caps_kw: Mapping[str, float] | None = None) -> DispatchSnapshot:
    """What the dispatcher controls in ``pool`` now: bounds, needs, measured power and group caps.

    A site in an outage now (``outages``: windows in epoch seconds by site pool) imports nothing: its cap is minus
    its own load and its cars charge not at all (``DispatchSnapshot.islanded``), so those that may discharge feed
    the house (V2H); a car's hours to departure count only the hours outside its site's outages (it can charge
    only then). The cars of the sites in ``site_planned`` (planned by their site behind the meter) follow their
    plan under a grid-stress signal (the sites in ``stress_signal``: stop, or discharge too) down to their laxity
    floor, and their plan's other discharges where the dispatcher follows plans (plan floors;
    ``DispatchSnapshot.follows_plan_discharge``). A site in ``import_caps_kw`` (its capacity tariff's free import)
    holds its cars under that import less its load, as far as their needs allow (``DispatchSnapshot.tariff_max_kw``).
    """
    idx = fleet.members(pool)
    hours = np.maximum((fleet.departure[idx].asi8 - pd.Timestamp(at).value) / 3.6e12, 0.0)
    soc_room = np.where(np.isfinite(fleet.soc_kwh[idx]), fleet.soc_kwh[idx] - fleet.min_soc_kwh[idx], 0.0)
    # Discharge only while the state of charge is above the driver's floor.
    min_kw = np.where(soc_room > 0.1, -fleet.discharge_kw[idx], 0.0)
    # Both in ns: pandas 3 keeps the index in the unit it was built with (often µs), Timestamp.value is ns.
    elapsed_h = np.maximum((pd.Timestamp(at).value - fleet.plugged_in[idx].as_unit("ns").asi8) / 3.6e12, 0.0)
    total_need = fleet.delivered_kwh[idx] + fleet.energy_needed_kwh[idx]
    uncontrolled_done = fleet.max_kw[idx] * elapsed_h >= total_need - 1e-6
    baseline = np.where(uncontrolled_done, 0.0, fleet.max_kw[idx])
    site_of = fleet.site_pool[idx]
    islanded = np.zeros(idx.size, dtype=bool)
    at_s = at.timestamp()
    for k, site in enumerate(site_of):
        windows = outages.get(site) if outages else None
        if not windows:
            continue
        islanded[k] = any(start <= at_s < end for start, end in windows)
        leaves = at_s + 3600.0 * hours[k]
        lost = sum(max(min(end, leaves) - max(start, at_s), 0.0) for start, end in windows)
        hours[k] = max(hours[k] - lost / 3600.0, 0.0)
    island_pools = {site_of[k] for k in np.flatnonzero(islanded)}
    group_ids: list[str] = []
    caps: list[float] = []
    tariff_caps: list[float] = []
    member_session: list[npt.NDArray[np.int64]] = []
    member_group: list[npt.NDArray[np.int64]] = []
    for column, limits in ((fleet.site_pool, fleet.site_capacity_kw), (fleet.congestion_pool, fleet.congestion_max_kw),
                           (fleet.cpo_pool, {})):
        values = column[idx]
        for name in sorted({v for v in values if v is not None}):
            if name in island_pools:
                # The island's cap: the cars together give what the house draws (negative: discharge).
                group_ids.append(name)
                caps.append(-max(site_load_kw.get(name, 0.0), 0.0))
            else:
                cap = limits.get(name, math.inf) - site_load_kw.get(name, 0.0)
                group_ids.append(name)
                caps.append(max(cap, 0.0) if math.isfinite(cap) else math.inf)
            free = (import_caps_kw or {}).get(name)
            tariff_caps.append(math.inf if free is None or name in island_pools
                               else max(free - site_load_kw.get(name, 0.0), 0.0))
            members = np.flatnonzero(values == name).astype(np.int64)
            member_session.append(members)
            member_group.append(np.full(members.size, len(group_ids) - 1, dtype=np.int64))
    empty = np.zeros(0, dtype=np.int64)
    return DispatchSnapshot(
        pool=pool, at=at, session_ids=tuple(fleet.session_ids[i] for i in idx),
        min_kw=min_kw, max_kw=fleet.max_kw[idx].copy(), energy_needed_kwh=fleet.energy_needed_kwh[idx].copy(),
        hours_to_departure=hours, current_kw=np.nan_to_num(fleet.current_kw[idx]), baseline_kw=baseline,
        groups=GroupCaps(group_ids=tuple(group_ids), max_kw=np.asarray(caps, dtype=np.float64),
                         member_session=np.concatenate(member_session) if member_session else empty,
                         member_group=np.concatenate(member_group) if member_group else empty),
        schedule_kw=math.nan,
        reading_start_s=fleet.reading_start_s[idx] if fleet.reading_start_s.size else None,
        reading_end_s=fleet.reading_end_s[idx] if fleet.reading_end_s.size else None,
        discharge_kwh=np.where(min_kw < 0, soc_room, 0.0),
        follows_plan_discharge=np.array([s in site_planned for s in site_of], dtype=bool) if site_planned else None,
        islanded=islanded if islanded.any() else None,
        stress_signal=np.array([s in stress_signal for s in site_of], dtype=bool) if stress_signal else None,
        tariff_max_kw=np.asarray(tariff_caps, dtype=np.float64) if np.isfinite(tariff_caps).any() else None,
        soc_kwh=fleet.soc_kwh[idx].copy() if np.isfinite(fleet.soc_kwh[idx]).any() else None,
        battery_kwh=fleet.battery_kwh[idx].copy() if np.isfinite(fleet.battery_kwh[idx]).any() else None,
        target_soc=fleet.target_soc_of(idx),
    )


def _share_inside(begin_ns: FloatArray, end_ns: FloatArray, first_ns: float, last_ns: float) -> FloatArray:
    """Share of each stay [begin, end) that falls inside [first, last): its energy is spread over the stay."""
    inside = np.clip(np.minimum(end_ns, last_ns) - np.maximum(begin_ns, first_ns), 0.0, None)
    length = end_ns - begin_ns
    return np.where(length > 0, inside / np.where(length > 0, length, 1.0),
                    ((begin_ns >= first_ns) & (begin_ns < last_ns)).astype(np.float64))


def _stay(forecast: ForecastFlex, isp: int, drawn: int) -> tuple[float, float]:
    """The stay (hours, kWh) of the ``drawn``-th forecast arrival, arriving in ISP ``isp``: past stays of that hour
    taken at evenly spread quantiles (golden-ratio steps), so a few arrivals already cover short and long ones."""
    if forecast.stays_by_isp is None:
        return forecast.dwell_hours, forecast.energy_per_arrival_kwh
    hours, kwh = forecast.stays_by_isp[isp]
    if hours.size == 0:
        return forecast.dwell_hours, forecast.energy_per_arrival_kwh
    k = min(int(((drawn * 0.6180339887498949) % 1.0) * hours.size), hours.size - 1)
    return float(hours[k]), float(kwh[k])


def dayahead_instance(fleet: Fleet, pool: str, horizon: IspHorizon, forecast: ForecastFlex | None,
                      prices_eur_per_mwh: Sequence[float], reliability: float) -> dict[str, Any]:
    """The pool as a ``vpp solve dayahead`` instance: present sessions plus forecast arrivals at a quantile.

    A stay that reaches beyond the horizon carries only the share of its energy that falls inside it (its energy
    spread evenly over its stay): the rest is charged on the next day and bought there. Forcing it into the
    horizon made the schedule buy the whole night's charging of late arrivals before midnight.

    A charge-only session may draw anything from 0 to its maximum (``min_kw`` 0): the schedule keeps its price
    response. Even-pace floors were given here while the dispatcher held every car at its pace; with per-car
    plans (vpp.algorithms.planning) and floors that only keep each need feasible, a schedule below the pace
    is one the pool can follow. Forecast arrivals are counted by the running total of the quantile, so ISPs
    with less than one arrival each still add up to the cars that come. Each session carries where its need is
    taken to end (``target_soc``: its car's, or for cars to come the pool's, learned from finished sessions;
    ``Fleet.target_soc``), so the position's model of the taper is the re-plan's; a forecast arrival is marked
    ``to_come`` (``vpp.bids.dayahead.as_planned`` may buy it up to its departure, as the re-plan plans it).
    """
    if len(prices_eur_per_mwh) != horizon.count:
        raise InvalidInput(f"prices: expected {horizon.count} values (one per ISP), got {len(prices_eur_per_mwh)}")
    if not 0.0 < reliability < 1.0:
        raise InvalidInput(f"reliability must be within (0, 1), got {reliability}")
    idx = fleet.members(pool)
    start_ns = pd.Timestamp(horizon.start).value
    isp_ns = int(ISP.total_seconds() * 1e9)
    end_ns = start_ns + horizon.count * isp_ns
    # Present sessions: the remaining need over the rest of the stay, from now (or arrival) to departure.
    # The fleet's times may come in microseconds (pandas 3 keeps the unit of its input): compare in nanoseconds.
    stay_from = np.maximum(fleet.plugged_in[idx].as_unit("ns").asi8,
                           pd.Timestamp(fleet.at).value).astype(np.float64)
    stay_to = np.maximum(fleet.departure[idx].as_unit("ns").asi8.astype(np.float64), stay_from)
    share = _share_inside(stay_from, stay_to, float(start_ns), float(end_ns))
    first = np.maximum(stay_from, start_ns)
    arrival = np.clip((first.astype(np.int64) - start_ns) // isp_ns, 0, horizon.count - 1)
    departure = np.clip(-((start_ns - stay_to.astype(np.int64)) // isp_ns), arrival + 1, horizon.count)
    sessions: list[dict[str, Any]] = []
    targets = fleet.target_soc_of(idx)
    for k, i in enumerate(idx):
        if share[k] <= 0.0:
            continue
        energy = float(fleet.energy_needed_kwh[i] * share[k])
        item: dict[str, Any] = {"id": fleet.session_ids[i], "arrival": int(arrival[k]),
                                "departure": int(departure[k]), "energy_kwh": energy, "max_kw": float(fleet.max_kw[i]),
                                "min_kw": -float(fleet.discharge_kw[i]) if fleet.discharge_kw[i] > 0 else 0.0}
        if targets is not None and math.isfinite(targets[k]):
            item["target_soc"] = float(targets[k])
        if fleet.discharge_kw[i] > 0:
            item.update(battery_kwh=float(fleet.battery_kwh[i]), soc_kwh=float(fleet.soc_kwh[i]),
                        min_soc_kwh=float(min(fleet.min_soc_kwh[i], fleet.soc_kwh[i])))
        sessions.append(item)
    if forecast is not None:
        # Availability at reliability r is the (1 - r) quantile of arrivals: fewer cars, more certain.
        quantile = "p10" if reliability >= 0.75 else ("p90" if reliability <= 0.25 else "p50")
        future = _not_before(horizon, fleet.at)
        v2g = forecast_v2g(fleet, idx)
        for j, (t, leaves, energy) in enumerate(forecast_stays(forecast, forecast.arrivals[quantile] * future,
                                                              horizon.count)):
            item = {"id": f"forecast-{t}-{j}", "arrival": t, "departure": leaves, "energy_kwh": energy,
                    "max_kw": FORECAST_MAX_KW, "min_kw": 0.0, "to_come": True}
            if fleet.target_soc.size:
                item["target_soc"] = fleet.pool_target_soc(pool, energy)
            # Cars to come discharge like the pool's V2G cars now, at their share (every k-th arrival).
            if v2g is not None and math.floor((j + 1) * v2g[0]) > math.floor(j * v2g[0]):
                battery, soc, floor = v2g[1], v2g[2], v2g[3]
                soc = max(min(soc, battery - energy), 0.0)
                item.update(min_kw=-FORECAST_MAX_KW, battery_kwh=battery, soc_kwh=soc, min_soc_kwh=min(floor, soc))
            sessions.append(item)
    return {"start": horizon.start.isoformat().replace("+00:00", "Z"), "isp_minutes": 15,
            "prices_eur_per_mwh": [float(p) for p in prices_eur_per_mwh],
            "pool_max_kw": uncontrolled_peak_kw(sessions, horizon.count) or None, "pool_min_kw": None,
            "sessions": sessions}


FORECAST_MAX_KW = 11.0


def forecast_v2g(fleet: Fleet, idx: npt.NDArray[np.int64]) -> tuple[float, float, float, float] | None:
    """(share, battery kWh, state of charge at arrival kWh, floor kWh) of the pool's V2G cars plugged in now, the
    model of the V2G cars still to come; None without any.

    A car counts as V2G once its EVSE, connection and driver allow discharge and its battery is known, before any
    reading has given its state of charge (``Fleet.v2g_able``): at the trading moment the pool's cars have often
    just arrived, and leaving them out made the cars to come charge-only. A car without a state of charge is
    taken to arrive with its battery full less its need (the state of charge at arrival is the battery here; the
    instance caps it at the battery less each forecast car's energy).
    """
    battery = fleet.battery_kwh[idx]
    soc = fleet.soc_kwh[idx]
    able = fleet.v2g_able[idx] if fleet.v2g_able.size == fleet.n else fleet.discharge_kw[idx] > 0
    v2g = (able | (fleet.discharge_kw[idx] > 0)) & np.isfinite(battery) & (battery > 0)
    if not v2g.any():
        return None
    known = np.isfinite(soc[v2g])
    arrived_with = np.where(known, np.clip(np.nan_to_num(soc[v2g]) - fleet.delivered_kwh[idx][v2g], 0.0,
                                           battery[v2g]), battery[v2g])
    floor = np.clip(np.nan_to_num(fleet.min_soc_kwh[idx][v2g]), 0.0, battery[v2g])
    return (float(v2g.mean()), float(battery[v2g].mean()), float(arrived_with.mean()), float(floor.mean()))


def forecast_stays(forecast: ForecastFlex, expected: Any, isps: int) -> list[tuple[int, int, float]]:
    """(arrival ISP, departure ISP, energy) of the cars the forecast expects: ``expected`` arrivals per ISP counted
    by their running total (ISPs with less than one arrival each still add up to the cars that come), each taking
    the stay of past arrivals at its local hour in turn, with only the energy that falls inside the horizon."""
    running = np.floor(np.cumsum(np.asarray(expected, dtype=np.float64)) + 1e-9)
    counts = np.diff(running, prepend=0.0).astype(int)
    out: list[tuple[int, int, float]] = []
    drawn = 0
    for t in np.flatnonzero(counts):
        for _ in range(int(counts[t])):
            hours, kwh = _stay(forecast, int(t), drawn)
            drawn += 1
            dwell = max(1, round(hours * 4))
            leaves = min(int(t) + dwell, isps)
            energy = min(kwh, FORECAST_MAX_KW * dwell / 4) * (leaves - int(t)) / dwell
            out.append((int(t), leaves, float(energy)))
    return out


def uncontrolled_peak_kw(sessions: Sequence[Mapping[str, Any]], isps: int) -> float:
    """The highest ISP of the instance's sessions charged at full power from arrival until their energy is in.

    The schedule is capped there: without pace floors it would buy each car's whole need in the cheapest ISPs of
    its stay, and the evening's cars, arriving together, would draw above what they draw uncontrolled.
    """
    if not sessions or isps <= 0:
        return 0.0
    load = uncontrolled_load_kw(
        np.asarray([int(item["arrival"]) for item in sessions], dtype=np.int64),
        np.asarray([int(item["departure"]) for item in sessions], dtype=np.int64),
        np.asarray([float(item["energy_kwh"]) for item in sessions]),
        np.asarray([float(item["max_kw"]) for item in sessions]), ISP.total_seconds() / 3600.0)
    return float(load[:isps].max(initial=0.0))


def measured_load_kw(db: Session, fleet_members: Sequence[str], isp_starts: Sequence[datetime]) -> list[float | None]:
    """Average metered power of the given sessions per ISP, from their readings; None where nothing was read."""
    if not isp_starts:
        return []
    first, last = min(isp_starts), max(isp_starts) + ISP
    rows = db.execute(
        select(SessionReading.session_id, SessionReading.start_at, SessionReading.power_kw)
        .where(SessionReading.session_id.in_(list(fleet_members)), SessionReading.start_at >= first,
               SessionReading.start_at < last, SessionReading.power_kw.is_not(None))
    ).all()
    if not rows:
        return [None] * len(isp_starts)
    frame = pd.DataFrame(rows, columns=["session_id", "start_at", "power_kw"])
    frame["isp"] = pd.to_datetime(frame["start_at"], utc=True).dt.floor("15min")
    per_session = frame.groupby(["isp", "session_id"])["power_kw"].mean()
    per_isp = per_session.groupby(level="isp").sum()
    return [float(per_isp[pd.Timestamp(s)]) if pd.Timestamp(s) in per_isp.index else None for s in isp_starts]


def congestion_members(db: Session, pool: str, isp_starts: Sequence[datetime]) -> list[str]:
    """Sessions of a congestion point that overlapped the ISPs (active or completed)."""
    pid = PoolId.parse(pool)
    sites = site_frame(db)
    locations = sites[sites["ean"] == pid.key][["party_key", "location_key"]]
    if locations.empty or not isp_starts:
        return []
    first, last = min(isp_starts), max(isp_starts) + ISP
    rows = db.execute(
        select(ChargingSession.id, ChargingSession.party_key, ChargingSession.location_id)
        .where(ChargingSession.start_at < last,
               (ChargingSession.end_at.is_(None)) | (ChargingSession.end_at > first))
    ).all()
    wanted = set(zip(locations["party_key"], locations["location_key"], strict=True))
    return [sid for sid, party, loc in rows if (party, str(loc).casefold()) in wanted]


class PortfolioService:
    """The portfolio behind the ports: each call opens its own short transaction."""

    def __init__(self, session_factory: sessionmaker[Session], *, clock: Clock | None = None,
                 config: PortfolioConfig | None = None) -> None:
        self._factory = session_factory
        self._clock = clock or SystemClock()
        self.config = config or PortfolioConfig()
        # The cached fleet and the service clock's time when it was read (ages follow that clock: a
        # simulation's cache expires in simulated time, whatever the machine's speed).
        self._cached: tuple[Fleet, datetime] | None = None
        self._plans: dict[str, StoredPlan] = {}
        self._lock = threading.Lock()

    def now(self) -> datetime:
        """The service's current time."""
        return self._clock.now()

    def fleet(self, db: Session, at: datetime | None = None, *, max_age_s: float | None = None) -> Fleet:
        """The fleet at ``at`` (default now), reused for ``max_age_s`` (``fleet_cache_seconds``) of the service's
        clock (the wall clock in production, the simulated one in a simulation).

        A trader's page asks for pools, flexibility and sessions at once, and a dispatcher cycle asks for every
        pool at the same instant: one read serves them all. Writes through this service invalidate it.
        """
        moment = at or self.now()
        max_age = self.config.fleet_cache_seconds if max_age_s is None else max_age_s
        with self._lock:
            cached = self._cached
        # Read less than ``max_age`` ago and taken at (nearly) the same moment as asked for.
        if (cached is not None and 0.0 <= self._age_s(cached[1]) < max_age
                and abs((cached[0].at - moment).total_seconds()) <= max_age):
            return cached[0]
        return self._load(db, moment)

    def _age_s(self, read_at: datetime) -> float:
        return (self.now() - read_at).total_seconds()

    def _load(self, db: Session, at: datetime) -> Fleet:
        fleet = load_fleet(db, at)
        with self._lock:
            self._cached = (fleet, self.now())
        return fleet

    def refresh_fleet(self, at: datetime) -> None:
        """Read the fleet at ``at`` now and keep it as the cached one."""
        with unit_of_work(self._factory) as db:
            self._load(db, at)

    def fleet_age_s(self) -> float:
        """Seconds of the service's clock since the cached fleet was read (infinite without one)."""
        with self._lock:
            cached = self._cached
        return math.inf if cached is None else self._age_s(cached[1])

    def invalidate(self) -> None:
        """Forget the cached fleet (after a need, booking or topology change)."""
        with self._lock:
            self._cached = None

    def pools(self) -> list[str]:
        """Every pool with sessions now."""
        with unit_of_work(self._factory) as db:
            return self.fleet(db).pools()

    def known_pool(self, db: Session, fleet: Fleet, pool: str) -> None:
        """NotFound unless the pool has sessions now or a configured topology entry."""
        pid = PoolId.parse(pool)
        if pool in fleet.pools():
            return
        from vpp.portfolio.tables import CongestionPoint

        exists = {
            PoolKind.SITE: lambda: db.get(Site, pid.key) is not None,
            PoolKind.CONGESTION_POINT: lambda: db.get(CongestionPoint, pid.key) is not None,
            PoolKind.CPO: lambda: bool(len(pool_history(db, fleet.at, pool, self.config.history_days))),
            PoolKind.ZONE: lambda: bool(len(pool_history(db, fleet.at, pool, self.config.history_days))),
        }[pid.kind]()
        if not exists:
            raise NotFound(f"pool {pool!r} has no sessions and no configured site or congestion point")

    def flexibility_in(self, db: Session, pool: str, start: datetime, end: datetime) -> PoolFlexibility:
        """Pool flexibility on [start, end) within the caller's transaction."""
        horizon = horizon_of(start, end)
        fleet = self.fleet(db)
        self.known_pool(db, fleet, pool)
        forecast = pool_forecast(db, fleet, pool, horizon, self.config)
        return combined_flexibility(pool, fleet, fleet.members(pool), horizon, forecast, self.config)

    def flexibility(self, pool: str, start: datetime, end: datetime) -> PoolFlexibility:
        """Pool flexibility on [start, end) (PortfolioView)."""
        with unit_of_work(self._factory) as db:
            return self.flexibility_in(db, pool, start, end)

    def dayahead_instance(self, pool: str, start: datetime, end: datetime, *, reliability: float = 0.5,
                          prices_eur_per_mwh: Sequence[float]) -> dict[str, Any]:
        """The pool as a scheduling instance (PortfolioView)."""
        horizon = horizon_of(start, end)
        with unit_of_work(self._factory) as db:
            fleet = self.fleet(db)
            self.known_pool(db, fleet, pool)
            forecast = pool_forecast(db, fleet, pool, horizon, self.config)
            return dayahead_instance(fleet, pool, horizon, forecast, prices_eur_per_mwh, reliability)

    def snapshot(self, pool: str, at: datetime, *, max_age_s: float | None = None) -> DispatchSnapshot | None:
        """What the dispatcher controls in ``pool`` now (PoolSnapshotSource); None for a pool without sessions."""
        return self.planned_snapshot(pool, at, max_age_s=max_age_s)[0]

    def planned_snapshot(self, pool: str, at: datetime, *, max_age_s: float | None = None,
                         event_min_seconds: float = 60.0) -> tuple[DispatchSnapshot | None, str | None]:
        """The snapshot with each session's planned power now, and why the stored plan is stale (None: it is not)."""
        with unit_of_work(self._factory) as db:
            fleet = self.fleet(db, at, max_age_s=max_age_s)
            if pool not in fleet.pools():
                return None, None
            equipped = equipped_sites(db)
            snapshot = dispatch_snapshot(fleet, pool, at, site_loads_kw(db, at, equipped), outages=site_outages(db, at),
                                         site_planned=frozenset(equipped),
                                         stress_signal=stress_signal_pools(db, at, equipped),
                                         import_caps_kw=capacity_import_caps_kw(db, at, equipped))
            plan = self._stored_plan(db, pool)
            if plan is not None:
                planned = plan.power_at(snapshot.session_ids, at)
                snapshot = replace(snapshot, planned_kw=planned if np.isfinite(planned).any() else None,
                                   plan_peak_kw=plan.peak_kw)
            return snapshot, _stale_reason(db, fleet, pool, plan, at, event_min_seconds)

    def plan_stale(self, pool: str, at: datetime, *, max_age_s: float | None = None,
                   event_min_seconds: float = 60.0) -> str | None:
        """Why the pool's stored plan should be re-made at ``at`` (None: it need not be, or the pool is empty), read
        without building the dispatcher's snapshot."""
        with unit_of_work(self._factory) as db:
            fleet = self.fleet(db, at, max_age_s=max_age_s)
            if pool not in fleet.pools():
                return None
            return _stale_reason(db, fleet, pool, self._stored_plan(db, pool), at, event_min_seconds)

    def _stored_plan(self, db: Session, pool: str) -> StoredPlan | None:
        """The pool's stored plan, decoded again only when a newer one was stored."""
        recorded = plan_recorded_at(db, pool)
        if recorded is None:
            return None
        with self._lock:
            cached = self._plans.get(pool)
        if cached is not None and cached.recorded_at == recorded:
            return cached
        row = stored_plan_row(db, pool)
        if row is None:
            return None
        plan = StoredPlan.of(row)
        with self._lock:
            self._plans[pool] = plan
        return plan


def _stale_reason(db: Session, fleet: Fleet, pool: str, plan: StoredPlan | None, at: datetime,
                  event_min_seconds: float) -> str | None:
    """Why the pool's stored ``plan`` should be re-made at ``at`` (``StoredPlan.stale_reason``; none stored yet:
    "no plan")."""
    if plan is None:
        return "no plan"
    return plan.stale_reason(fleet, fleet.members(pool), at, commitments_changed_at(db), event_min_seconds)


class DispatchPools:
    """The portfolio as the dispatcher's snapshot source: only bidding-zone pools are dispatched.

    Every session is in exactly one zone pool; its sites, congestion points and CPO are groups inside the zone
    snapshot, so DSO limits on them still bind. Dispatching the overlapping site/CPO/congestion pools as well
    would send each session several competing limits.
    """

    def __init__(self, portfolio: PortfolioService, *, max_age_s: float | None = None,
                 refresh_after_s: float = 1.0, planner: BackgroundReplanner | None = None,
                 replan_after_cycle: bool = False) -> None:
        self._portfolio = portfolio
        # Re-plans a pool whose stored plan is stale (a new ISP, an arrival, a departure, a changed need or
        # commitment); without one the snapshot still carries whatever plan is stored (Celery beat re-plans).
        self.planner = planner
        # With a dispatcher that says when its cycle has recorded the limits it sends (``cycle_recorded``), the
        # re-plan a snapshot found due starts then: it learns the cars' draw from the limits sent up to its moment,
        # that cycle's included, which it would otherwise see or not depending on the two threads' speed.
        self.replan_after_cycle = replan_after_cycle
        self._due: dict[str, tuple[datetime, str]] = {}
        # The fleet (every session's state, telemetry in 5-15 minute periods) may be this old when a cycle plans;
        # the dispatcher reads it again between cycles (``prefetch``) so that a setpoint never waits for the read.
        self.max_age_s = max_age_s
        self.refresh_after_s = refresh_after_s

    def pools(self) -> list[str]:
        """The zone pools with sessions now."""
        return [p for p in self._portfolio.pools() if PoolId.parse(p).kind == PoolKind.ZONE]

    def snapshot(self, pool: str, at: datetime) -> DispatchSnapshot | None:
        """The zone pool's snapshot, with its plan; a stale plan is re-made in the background."""
        if self.planner is None:
            return self._portfolio.snapshot(pool, at, max_age_s=self.max_age_s)
        snapshot, stale = self._portfolio.planned_snapshot(
            pool, at, max_age_s=self.max_age_s, event_min_seconds=self.planner.settings.event_min_seconds)
        if snapshot is not None and stale is not None:
            if self.replan_after_cycle:
                self._due[pool] = (at, stale)
            else:
                self.planner.request(pool, at, stale)
        return snapshot

    def replan_stale(self, pool: str, at: datetime) -> bool:
        """Ask for the pool's re-plan now when its stored plan is stale (True: one was asked for). A dispatcher whose
        cycles are far apart (a simulation stepping by the ISP) calls this before its cycle and waits for the
        planner, so the cycle sends what the new plan asks for this ISP, as production's 4-s cycles do within
        seconds of a re-plan; the cycle's own snapshot then finds the plan fresh."""
        if self.planner is None:
            return False
        stale = self._portfolio.plan_stale(pool, at, max_age_s=self.max_age_s,
                                           event_min_seconds=self.planner.settings.event_min_seconds)
        return stale is not None and self.planner.request(pool, at, stale)

    def cycle_recorded(self, pool: str, at: datetime) -> None:
        """The dispatcher's cycle of ``pool`` at ``at`` has recorded its limits: start the re-plan its snapshot
        found due (``replan_after_cycle``)."""
        due = self._due.pop(pool, None)
        if due is not None and self.planner is not None:
            self.planner.request(pool, due[0], due[1])

    def close(self) -> None:
        """Stop the background re-planning (after the running re-plan)."""
        if self.planner is not None:
            self.planner.shutdown()

    def prefetch(self, at: datetime) -> bool:
        """Read the fleet again ahead of the next cycle when it is older than ``refresh_after_s``."""
        if self._portfolio.fleet_age_s() < self.refresh_after_s:
            return False
        self._portfolio.refresh_fleet(at)
        return True


class CongestionView:
    """The portfolio as the UFTP agent sees a congestion point, inside the agent's transaction."""

    def __init__(self, db: Session, service: PortfolioService) -> None:
        self._db = db
        self._service = service

    def flexibility(self, pool: str, isp_starts: Sequence[datetime], reliability: float) -> CongestionFlexibility:
        """D-prognosis (expected load) and the reduction available at ``reliability`` per ISP."""
        if not isp_starts:
            return CongestionFlexibility(prognosis_kw=(), reduction_kw=())
        start = min(isp_starts)
        end = max(isp_starts) + ISP
        flex = self._service.flexibility_in(self._db, pool, start, end)
        position = {s: k for k, s in enumerate(flex.isp_starts)}
        lower = flex.min_kw_p90 if reliability >= 0.5 else flex.min_kw
        prognosis = [float(flex.baseline_kw[position[s]]) for s in isp_starts]
        reduction = [max(float(flex.baseline_kw[position[s]] - lower[position[s]]), 0.0) for s in isp_starts]
        return CongestionFlexibility(prognosis_kw=tuple(prognosis), reduction_kw=tuple(reduction))

    def measured_load_kw(self, pool: str, isp_starts: Sequence[datetime]) -> list[float | None]:
        """Metered load of the congestion point's sessions per ISP; None where no reading exists."""
        members = congestion_members(self._db, pool, isp_starts)
        if not members:
            return [None] * len(isp_starts)
        return measured_load_kw(self._db, members, isp_starts)




def install_congestion_source(service: PortfolioService) -> None:
    """Make the UFTP agent read congestion points through this portfolio (composition roots call this)."""
    from vpp.congestion.flexsource import configure_default_flex_source

    configure_default_flex_source(lambda db: CongestionView(db, service))
