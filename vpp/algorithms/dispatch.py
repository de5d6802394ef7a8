"""Pure parts of the real-time dispatcher: the pool target, the allocation problem of one cycle, the deadband.

Signs: power is consumption (positive = charging); an aFRR setpoint is positive for upward regulation, which
means LESS consumption, so ``target_kw = baseline_kw - 1000 * setpoint_mw``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt

from vpp.algorithms.allocation import AllocationProblem
from vpp.algorithms.taper import ASSUMED_BATTERY_KWH, ASSUMED_TARGET_SOC, deliverable_kwh, extra_hours
from vpp.domain.dispatch import DispatchSnapshot

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
# A session is planned at no more than its remaining need lets it draw for five minutes (aFRR's full activation
# time): a car that has reached its need stops drawing, which the dispatcher sees only a telemetry period later.
NEED_HORIZON_H = 5.0 / 60.0
# A V2G car discharges no faster than its energy above its state-of-charge floor lasts this long: limits stay in
# force until a later cycle sees their effect, and outside activations cycles (and telemetry) come every 15 minutes.
DISCHARGE_HOLD_H = 0.25
# A planned car is held at its plan below its even pace only while a quarter hour there leaves its need feasible
# afterwards at what it can draw (``PLAN_FLOOR_DERATE`` of it: limits and readings lag), with the taper near full
# (``vpp.algorithms.taper``). On an AC charger (up to 22 kW) a car is taken to draw at most 11 kW (three-phase
# 16 A, most onboard chargers) until it is seen drawing more, and at least ``AC_CAR_LEAST_KW`` until it has been
# seen drawing (a single-phase 16 A onboard charger: 5 % of the registrations draw 3.6 kW).
PLAN_FLOOR_STEP_H = 0.25
PLAN_FLOOR_DERATE = 0.9
# A car feeds back (V2H, a discharge signal, a plan's sale) only while 70 % of what it can draw still meets its
# need, with the taper: more cautious than the plan floors, as energy fed back must be charged again on top of the
# need (the planner keeps its plans within the same bound: ``vpp.algorithms.planning.recharge_soc_floor_kwh``).
DISCHARGE_LAXITY_DERATE = 0.7
# Every need is planned to be met this long before departure (one 15-minute telemetry period and cycle).
FINISH_MARGIN_S = 900.0
AC_CHARGER_MAX_KW = 22.0
AC_CAR_ASSUMED_KW = 11.0
AC_CAR_LEAST_KW = 3.6

@dataclass(frozen=True)
class PoolLimits:
    """The DSO and market obligations of one ISP that bound a pool's dispatch, by pool id.

    ``congestion_max_kw``: consumption cap of a group (or of the pool itself);
    ``reduction_kw``: ordered reduction of a group below its members' baseline;
    ``device_max_kw``: per-session cap of every member of a group (§14a);
    ``schedule_kw``: the pool's committed day-ahead schedule, when the snapshot carries none.
    """

    congestion_max_kw: Mapping[str, float] = field(default_factory=dict)
    reduction_kw: Mapping[str, float] = field(default_factory=dict)
    device_max_kw: Mapping[str, float] = field(default_factory=dict)
    schedule_kw: float | None = None


def pool_baseline_kw(snapshot: DispatchSnapshot, limits: PoolLimits) -> float:
    """What the pool would consume without activation: its cars' plans (the rolling-horizon planner) where it has
    them, else its committed schedule, else its sessions' baseline.

    With a plan, at most the plan's peak (``plan_peak_kw``): a car plugged in since the plan counts at full power
    (its uncontrolled baseline), while the plan kept room for it as a forecast arrival within its peak guard; at
    the plan's peak (utrecht at noon) such cars took the pool 15-35 kW above the guard. The cap is soft: the
    allocator still gives every car its need floor, and an activation moves the target from here.
    """
    if snapshot.planned_kw is not None and np.isfinite(snapshot.planned_kw).any():
        planned = float(np.sum(planned_baseline_kw(snapshot)))
        peak = snapshot.plan_peak_kw
        return planned if peak is None or not math.isfinite(peak) else min(planned, max(peak, 0.0))
    if not math.isnan(snapshot.schedule_kw):
        return float(snapshot.schedule_kw)
    if limits.schedule_kw is not None:
        return float(limits.schedule_kw)
    return float(np.sum(snapshot.baseline_kw))


def plan_peak_room_kw(plan_peak_kw: float | None, target_kw: float, setpoint_mw: float) -> float:
    """How far the closed loop may raise the pool above its target: up to the plan's peak (at least 0), unless
    activated (an aFRR setpoint moves the target, and the loop follows it whatever the plan). The loop makes up
    for cars drawing less than their limits by raising the others'; at the plan's peak that took utrecht's pool
    30-50 kW above it."""
    if plan_peak_kw is None or not math.isfinite(plan_peak_kw) or setpoint_mw != 0.0:
        return math.inf
    return max(plan_peak_kw - target_kw, 0.0)


def pool_target_kw(baseline_kw: float, setpoint_mw: float, pool: str, limits: PoolLimits) -> float:
    """The pool's consumption target: baseline minus the aFRR setpoint, within a cap on the pool itself."""
    target = baseline_kw - 1000.0 * setpoint_mw
    cap = limits.congestion_max_kw.get(pool)
    return min(target, cap) if cap is not None else target


def capped_sessions(snapshot: DispatchSnapshot, limits: PoolLimits) -> BoolArray:
    """Sessions that share a consumption cap: a finite group cap, a DSO cap or ordered reduction, a pool cap."""
    n = len(snapshot.session_ids)
    if snapshot.pool in limits.congestion_max_kw or snapshot.pool in limits.reduction_kw:
        return np.ones(n, dtype=bool)
    groups = snapshot.groups
    finite = np.isfinite(np.asarray(groups.max_kw, dtype=np.float64)) | np.array(
        [g in limits.congestion_max_kw or g in limits.reduction_kw for g in groups.group_ids], dtype=bool)
    capped = np.zeros(n, dtype=bool)
    member_group = np.asarray(groups.member_group, dtype=np.int64)
    capped[np.asarray(groups.member_session, dtype=np.int64)[finite[member_group]]] = True
    return capped


@dataclass(frozen=True)
class CycleProblem:
    """The allocation problem of one cycle and what had to be bent to make it feasible."""

    problem: AllocationProblem
    flags: dict[str, int]


def build_problem(
    snapshot: DispatchSnapshot,
    limits: PoolLimits,
    target_kw: float,
    start_kw: FloatArray,
    pinned_kw: FloatArray,
    max_override_kw: FloatArray,
    finish_margin_h: float = 0.0,
    need_horizon_h: float = NEED_HORIZON_H,
    plan_floors: bool = False,
    seen_kw: FloatArray | None = None,
    gives_kw: FloatArray | None = None,
    onboard_kw: FloatArray | None = None,
) -> CycleProblem:
    """The allocation problem: snapshot bounds, pins (NaN = free), overrides of max (NaN = none), DSO groups.

    With ``plan_floors`` a planned car's need floor is its plan where its laxity allows (``plan_need_floor_kw``),
    else its even pace. Needs are planned to be met ``finish_margin_h`` before departure: a limit stays in force
    until the next cycle, the CPO reports power only every period, and a car tapers near full, so planning to the
    last minute at the average rate leaves the need short.

    ``seen_kw``: the most each session was seen drawing; ``gives_kw``: the most it was seen feeding back while
    asked for more (its discharge laxity recharges it no faster: ``discharge_laxity_kw``); ``onboard_kw``: what
    each car was seen drawing while nothing but itself held it (its onboard charger: ``car_power_kw``). NaN or
    None: not seen.

    A car stops once its need is met (its charge limit, or full), so no session is planned above what its
    remaining need lets it draw for ``need_horizon_h``. Otherwise a full car could hold the power of an aFRR
    activation or the room under a cap and draw nothing.
    """
    flags: dict[str, int] = {}
    pool = snapshot.pool
    max_kw = np.asarray(snapshot.max_kw, dtype=np.float64).copy()
    min_kw = np.minimum(np.asarray(snapshot.min_kw, dtype=np.float64), max_kw)
    if snapshot.discharge_kwh is not None:
        room_kwh = np.maximum(np.nan_to_num(np.asarray(snapshot.discharge_kwh, dtype=np.float64)), 0.0)
        min_kw = np.minimum(np.maximum(min_kw, -room_kwh / DISCHARGE_HOLD_H), max_kw)
    # V2H and grid-stress discharge (issue 19): no charging in an outage, no feeding back below the need.
    min_kw, max_kw = site_discharge_bounds(snapshot, min_kw, max_kw, finish_margin_h, seen_kw=seen_kw,
                                           gives_kw=gives_kw)
    if need_horizon_h > 0:
        drawable = np.maximum(np.nan_to_num(np.asarray(snapshot.energy_needed_kwh, dtype=np.float64), nan=np.inf),
                              0.0) / need_horizon_h
        limited = drawable < max_kw
        if limited.any():
            flags["need_limited"] = int(limited.sum())
            max_kw = np.maximum(np.minimum(max_kw, drawable), np.maximum(min_kw, 0.0))
    groups = snapshot.groups
    group_max = np.asarray(groups.max_kw, dtype=np.float64).copy()
    member_session = np.asarray(groups.member_session, dtype=np.int64)
    member_group = np.asarray(groups.member_group, dtype=np.int64)

    device_cap = np.full(max_kw.shape[0], np.inf)
    if pool in limits.device_max_kw:
        device_cap[:] = limits.device_max_kw[pool]
    for g, group_id in enumerate(groups.group_ids):
        if group_id in limits.congestion_max_kw:
            group_max[g] = min(group_max[g], limits.congestion_max_kw[group_id])
        if group_id in limits.reduction_kw:
            members = member_session[member_group == g]
            ordered = float(np.sum(snapshot.baseline_kw[members])) - limits.reduction_kw[group_id]
            group_max[g] = min(group_max[g], max(ordered, 0.0))
        if group_id in limits.device_max_kw:
            members = member_session[member_group == g]
            device_cap[members] = np.minimum(device_cap[members], limits.device_max_kw[group_id])
    curtailed = device_cap < max_kw
    if curtailed.any():
        flags["curtailed_sessions"] = int(curtailed.sum())
        max_kw = np.minimum(max_kw, device_cap)
        min_kw = np.minimum(min_kw, max_kw)

    overridden = ~np.isnan(max_override_kw)
    if overridden.any():
        max_kw = np.where(overridden, np.clip(max_override_kw, min_kw, max_kw), max_kw)
        flags["discounted_below"] = int(overridden.sum())
    pinned = ~np.isnan(pinned_kw)
    if pinned.any():
        # A session we cannot steer consumes what it consumes; pinning it lets the others make up for it.
        value = np.where(pinned, pinned_kw, 0.0)
        min_kw = np.where(pinned, value, min_kw)
        max_kw = np.where(pinned, value, max_kw)
        flags["pinned"] = int(pinned.sum())

    if group_max.size:
        fixed = np.bincount(member_group, weights=min_kw[member_session], minlength=group_max.size)
        infeasible = fixed > group_max
        if infeasible.any():
            # Pinned or minimum load already above a cap: keep the cap as tight as physics allows.
            group_max = np.where(infeasible, fixed, group_max)
            flags["group_caps_exceeded_by_fixed_load"] = int(infeasible.sum())

    hours = np.maximum(np.asarray(snapshot.hours_to_departure, dtype=np.float64) - finish_margin_h, 0.0)
    need_floor = None
    if plan_floors:
        # A planned car's pace ends the taper's extra time early (a car without a plan keeps its even pace).
        need_floor = plan_need_floor_kw(snapshot, hours, max_kw, seen_kw=seen_kw, onboard_kw=onboard_kw,
                                        paced_hours=taper_hours(snapshot, hours, seen_kw, onboard_kw))
    if need_floor is not None:
        flags["planned_below_pace"] = int(np.sum(need_floor < np.asarray(snapshot.energy_needed_kwh) / np.where(
            hours > 0, hours, np.inf) - 1e-6))
    # Grid-stress signals and V2H (issue 19): a site-planned car may follow its plan below its pace, and 0 kW.
    discharge_floor = plan_discharge_floor_kw(snapshot, hours, min_kw, need_floor, every_plan=plan_floors,
                                              seen_kw=seen_kw, gives_kw=gives_kw)
    if discharge_floor is not None:
        flags["planned_discharge"] = int(np.sum(discharge_floor < 0))
        if snapshot.stress_signal is not None:
            flags["stress_signal"] = int(np.sum(snapshot.stress_signal))
        need_floor = discharge_floor
    group_max = tariff_caps(snapshot, group_max, need_floor, hours, min_kw, max_kw, seen_kw, flags)
    start = np.where(np.isnan(start_kw), snapshot.current_kw, start_kw)
    problem = AllocationProblem(
        min_kw=min_kw,
        max_kw=max_kw,
        energy_needed_kwh=np.asarray(snapshot.energy_needed_kwh, dtype=np.float64),
        hours_to_departure=hours,
        current_kw=np.clip(np.asarray(start, dtype=np.float64), min_kw, max_kw),
        target_kw=float(target_kw),
        member_session=member_session,
        member_group=member_group,
        group_max_kw=group_max,
        needs_outrank_target=snapshot.needs_outrank_target,
        need_floor_kw=need_floor,
    )
    return CycleProblem(problem=problem, flags=flags)


def tariff_caps(snapshot: DispatchSnapshot, group_max: FloatArray, need_floor: FloatArray | None,
                hours: FloatArray, min_kw: FloatArray, max_kw: FloatArray, seen_kw: FloatArray | None,
                flags: dict[str, int]) -> FloatArray:
    """Group caps tightened to the capacity tariff's free import (``DispatchSnapshot.tariff_max_kw``), as far as
    the members' needs allow: never below the sum of what they must draw now, each its need floor without its
    plan (its laxity floor, or its even pace without plan floors), and the plan-following discharge floors.

    The site planner treats import up to the peak already paid for as free; without this cap a car held at its
    plan, a new arrival or the pool target could take the site above it, and the month's bill with it.
    """
    cap = snapshot.tariff_max_kw
    if cap is None or group_max.size == 0:
        return group_max
    member_session = np.asarray(snapshot.groups.member_session, dtype=np.int64)
    member_group = np.asarray(snapshot.groups.member_group, dtype=np.int64)
    unplanned = replace(snapshot, planned_kw=np.zeros(len(snapshot.session_ids)))
    must = plan_need_floor_kw(unplanned, hours, max_kw, seen_kw=seen_kw, paced_hours=taper_hours(snapshot, hours,
                                                                                                 seen_kw))
    if must is None:
        must = np.zeros(len(snapshot.session_ids))
    if need_floor is not None:
        must = np.minimum(must, need_floor)
    must = np.clip(np.maximum(must, min_kw), 0.0, max_kw)
    required = np.bincount(member_group, weights=must[member_session], minlength=group_max.size)
    soft = np.maximum(np.asarray(cap, dtype=np.float64), required)
    tightened = soft < group_max
    if tightened.any():
        flags["tariff_capped_groups"] = int(tightened.sum())
    out: FloatArray = np.minimum(group_max, soft)
    return out


def car_power_kw(charger_max_kw: FloatArray, seen_kw: FloatArray | None,
                 onboard_kw: FloatArray | None = None) -> tuple[FloatArray, FloatArray]:
    """What each car is taken to draw at full power (the taper's scale) and at the least (for its laxity floor).

    On an AC charger (up to 22 kW) a car draws at most 11 kW unless seen drawing more, and at least 3.6 kW (a
    single-phase onboard charger) until seen drawing more; elsewhere (DC) the charger's maximum. ``seen_kw``: the
    most each session was seen drawing (NaN or None: not seen). ``onboard_kw``: what a car was seen drawing while
    held by nothing but itself, below its taper (NaN or None: not known): its full power then, not 11 kW (a
    Nissan Leaf's 3.6 kW taken as 11 kW had its taper planned three times too short).
    """
    charger = np.maximum(np.asarray(charger_max_kw, dtype=np.float64), 0.0)
    seen = np.zeros_like(charger) if seen_kw is None else np.minimum(
        np.maximum(np.nan_to_num(np.asarray(seen_kw, dtype=np.float64), nan=0.0), 0.0), charger)
    ac = charger <= AC_CHARGER_MAX_KW
    full = np.maximum(np.where(ac, np.minimum(charger, AC_CAR_ASSUMED_KW), charger), seen)
    least = np.maximum(np.where(ac, np.minimum(charger, AC_CAR_LEAST_KW), charger), seen)
    if onboard_kw is not None:
        own = np.asarray(onboard_kw, dtype=np.float64)
        known = np.isfinite(own) & (own > 0)
        full = np.where(known, np.minimum(own, charger), full)
        least = np.minimum(least, full)
    return full, least


def need_target(snapshot: DispatchSnapshot) -> tuple[FloatArray | None, FloatArray]:
    """The battery (kWh; NaN: the taper's assumed one) and the state of charge (fraction) each need ends at: its
    own where the car's state of charge and battery are known, else the learned target (``target_soc``), else
    full (``vpp.algorithms.taper``), as the planner's ``taper_departure`` has it."""
    need = np.maximum(np.nan_to_num(np.asarray(snapshot.energy_needed_kwh, dtype=np.float64), nan=0.0), 0.0)
    target: FloatArray = np.full(need.shape, ASSUMED_TARGET_SOC)
    if snapshot.target_soc is not None:
        learned = np.asarray(snapshot.target_soc, dtype=np.float64)
        target = np.where(np.isfinite(learned), np.clip(learned, 0.0, 1.0), target)
    if snapshot.soc_kwh is None or snapshot.battery_kwh is None:
        return None, target
    soc = np.asarray(snapshot.soc_kwh, dtype=np.float64)
    size = np.asarray(snapshot.battery_kwh, dtype=np.float64)
    known = np.isfinite(soc) & np.isfinite(size) & (size > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        target = np.where(known, np.clip((soc + need) / size, 0.0, 1.0), target)
    battery: FloatArray = np.where(known, size, np.nan)
    return battery, target


def taper_hours(snapshot: DispatchSnapshot, hours: FloatArray, seen_kw: FloatArray | None,
                onboard_kw: FloatArray | None = None) -> FloatArray:
    """Hours left to pace each need over: ``hours`` less what the taper near full adds to it
    (``vpp.algorithms.taper``; where SoC and battery are unknown the need is taken to end full)."""
    full, _ = car_power_kw(np.asarray(snapshot.max_kw, dtype=np.float64), seen_kw, onboard_kw)
    need = np.maximum(np.nan_to_num(np.asarray(snapshot.energy_needed_kwh, dtype=np.float64), nan=0.0), 0.0)
    battery, target = need_target(snapshot)
    out: FloatArray = np.maximum(hours - extra_hours(need, full, battery_kwh=battery, target_soc=target), 0.0)
    return out


def plan_need_floor_kw(snapshot: DispatchSnapshot, hours: FloatArray, max_kw: FloatArray, *,
                       step_h: float = PLAN_FLOOR_STEP_H, derate: float = PLAN_FLOOR_DERATE,
                       seen_kw: FloatArray | None = None, paced_hours: FloatArray | None = None,
                       onboard_kw: FloatArray | None = None) -> FloatArray | None:
    """Each planned session's need floor: its plan, not its even pace, where the plan keeps its need feasible.

    The rolling-horizon planner defers a car to the cheap hours of its stay and re-plans every ISP with what the
    car really took, so below its even pace the allocator may hold it at its plan; never below its laxity floor,
    the least power for the next ``step_h`` after which the car still meets its need by departure (``hours``: the
    finish margin already taken off) drawing ``derate`` of what it can: at most its least power (an AC car not yet
    seen drawing: 3.6 kW), and near full no more than the taper lets it (``vpp.algorithms.taper``, at its full
    power). A session without a plan keeps its even pace (over ``paced_hours``, default ``hours``); the floor is
    never above the pace. ``max_kw`` bounds nothing here (the allocator clips the floor to it).
    """
    del max_kw
    if snapshot.planned_kw is None:
        return None
    planned = np.asarray(snapshot.planned_kw, dtype=np.float64)
    if not np.isfinite(planned).any():
        return None
    need = np.maximum(np.nan_to_num(np.asarray(snapshot.energy_needed_kwh, dtype=np.float64), nan=0.0), 0.0)
    drawn = np.nan_to_num(np.asarray(snapshot.current_kw, dtype=np.float64), nan=0.0)
    seen = drawn if seen_kw is None else np.fmax(np.asarray(seen_kw, dtype=np.float64), drawn)
    full, least = car_power_kw(np.asarray(snapshot.max_kw, dtype=np.float64), seen, onboard_kw)
    paced = hours if paced_hours is None else paced_hours
    with np.errstate(divide="ignore", invalid="ignore"):
        pace = np.where(paced > 0, need / paced, np.where(need > 0, np.inf, 0.0))
        step = np.minimum(hours, step_h)
        later = np.maximum(hours - step, 0.0)
        battery, target = need_target(snapshot)
        afterwards = np.minimum(derate * least * later, deliverable_kwh(later, derate * full, need,
                                                                        battery_kwh=battery, target_soc=target))
        laxity = np.where(step > 0, (need - afterwards) / step, pace)
    floor = np.minimum(pace, np.maximum(np.where(np.isfinite(planned), planned, pace), laxity))
    out: FloatArray = np.maximum(floor, 0.0)
    return out


def discharge_laxity_kw(snapshot: DispatchSnapshot, hours: FloatArray, *, step_h: float = PLAN_FLOOR_STEP_H,
                        derate: float = DISCHARGE_LAXITY_DERATE, seen_kw: FloatArray | None = None,
                        gives_kw: FloatArray | None = None) -> FloatArray:
    """Each session's least power for the next ``step_h`` (negative: it may feed back that much) after which
    ``derate`` of what it can draw still meets its need, grown by what it fed back, by departure (``hours``: the
    finish margin already taken off), with the taper near its target (``vpp.algorithms.taper``, to its own
    target where its state of charge and battery are known, as the charging floors have it); inf when due.

    What it can draw: its full power as the charging floors take it (``car_power_kw``: on AC 11 kW unless seen
    drawing more, ``seen_kw``), but no more than it was seen giving back when asked for more (``gives_kw``, NaN:
    not seen; a bidirectional onboard charger is taken to charge as fast as it discharges). A 7.4-kW car asked to
    feed back 11 kW and giving 7.4 kW is recharged at 70 % of 7.4 kW, and slower above 80 %, not at 7.7 kW flat.
    """
    need = np.maximum(np.nan_to_num(np.asarray(snapshot.energy_needed_kwh, dtype=np.float64), nan=0.0), 0.0)
    full, _ = car_power_kw(np.asarray(snapshot.max_kw, dtype=np.float64), seen_kw)
    if gives_kw is not None:
        full = np.fmin(full, np.where(np.asarray(gives_kw, dtype=np.float64) > 0, gives_kw, np.nan))
    step = np.minimum(hours, step_h)
    later = np.maximum(hours - step, 0.0)
    battery, target = need_target(snapshot)
    afterwards = recharge_kwh(later, derate * full, need, battery, target)
    with np.errstate(divide="ignore", invalid="ignore"):
        out: FloatArray = np.where(step > 0, (need - afterwards) / np.where(step > 0, step, 1.0), np.inf)
    return out


def recharge_kwh(hours: FloatArray, power_kw: FloatArray, need_kwh: FloatArray, battery_kwh: FloatArray | None,
                 target_soc: FloatArray) -> FloatArray:
    """The most energy a car can take in its last ``hours`` before it reaches its target at ``power_kw`` (flat,
    then the taper near full: ``vpp.algorithms.taper.deliverable_kwh``), however far below it has been
    discharged: not capped at its present need. Where the battery is unknown, the taper's assumed one (or one
    the need's size)."""
    need = np.maximum(np.asarray(need_kwh, dtype=np.float64), 0.0)
    target = np.maximum(np.asarray(target_soc, dtype=np.float64), 1e-6)
    size = np.full(need.shape, np.nan) if battery_kwh is None else np.asarray(battery_kwh, dtype=np.float64)
    size = np.where(np.isfinite(size) & (size > 0), size, np.maximum(ASSUMED_BATTERY_KWH, need / target))
    # The most a need can be below its target: the whole battery up to it (the taper model's battery stays put).
    out: FloatArray = deliverable_kwh(hours, power_kw, np.maximum(need, size * target), battery_kwh=size,
                                      target_soc=target)
    return out


def site_discharge_bounds(snapshot: DispatchSnapshot, min_kw: FloatArray, max_kw: FloatArray,
                          finish_margin_h: float = 0.0, *, seen_kw: FloatArray | None = None,
                          gives_kw: FloatArray | None = None) -> tuple[FloatArray, FloatArray]:
    """The bounds of the cars behind a site's meter: an ``islanded`` car (its site in an outage) charges not at
    all (its site's cap, minus the house's load, has it feed the house if it may discharge), and a site-planned
    car (``follows_plan_discharge``) feeds back no more than its laxity allows (``discharge_laxity_kw``, never
    raised above 0 kW): the cap of an island outranks the need floors, so without this a car about to leave would
    feed the house below its need.
    """
    follows, islanded = snapshot.follows_plan_discharge, snapshot.islanded
    if islanded is not None and np.asarray(islanded, dtype=bool).any():
        max_kw = np.where(np.asarray(islanded, dtype=bool), 0.0, max_kw)
        min_kw = np.minimum(min_kw, max_kw)
    if follows is not None and (np.asarray(follows, dtype=bool) & (min_kw < 0)).any():
        hours = np.maximum(np.asarray(snapshot.hours_to_departure, dtype=np.float64) - finish_margin_h, 0.0)
        lowest = np.minimum(discharge_laxity_kw(snapshot, hours, seen_kw=seen_kw, gives_kw=gives_kw), 0.0)
        min_kw = np.where(np.asarray(follows, dtype=bool), np.maximum(min_kw, lowest), min_kw)
    return min_kw, max_kw


def plan_discharge_floor_kw(snapshot: DispatchSnapshot, hours: FloatArray, min_kw: FloatArray,
                            floor: FloatArray | None, *, every_plan: bool = False,
                            seen_kw: FloatArray | None = None, gives_kw: FloatArray | None = None
                            ) -> FloatArray | None:
    """Need floors with which a car follows its plan's discharge, and a site's car its plan under a grid-stress
    signal (stop, or discharge too); None: unchanged.

    The allocator holds every car at least at its need floor (``floor``: the plan floors, None for the even pace),
    never below 0 kW, so no target could make a car feed back, and without plan floors a car charges at its pace
    through a signal to stop. A car gets its plan as its floor instead, no lower than its laxity floor
    (``discharge_laxity_kw``, with ``seen_kw`` and ``gives_kw``) and never above the floor it had, where its plan
    discharges (``min_kw`` < 0, plan < 0) and with ``every_plan`` (plan floors: a car that fed back is also
    recharged when its plan says, not at its even pace in the dear hours): a site's car planned behind its meter
    (V2H) and a pool's V2G car the rolling-horizon planner has selling what the day-ahead position sold alike
    (before, only a site's car did, so a pool's planned sales were never dispatched and its aFRR baseline, the
    plans' sum, was out of reach). A session that ``follows_plan_discharge`` also does so under a grid-stress signal
    (``stress_signal``) whatever its plan.
    """
    follows, planned_kw = snapshot.follows_plan_discharge, snapshot.planned_kw
    if planned_kw is None:
        return None
    planned = np.asarray(planned_kw, dtype=np.float64)
    has_plan = np.isfinite(planned)
    site_car = has_plan & (np.zeros_like(has_plan) if follows is None else np.asarray(follows, dtype=bool))
    signal = snapshot.stress_signal
    stressed = site_car & (np.zeros_like(site_car) if signal is None else np.asarray(signal, dtype=bool))
    with np.errstate(invalid="ignore"):
        chosen = stressed | (has_plan & every_plan & (planned < 0) & (min_kw < 0))
    if not chosen.any():
        return None
    need = np.maximum(np.nan_to_num(np.asarray(snapshot.energy_needed_kwh, dtype=np.float64), nan=0.0), 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        base = floor if floor is not None else np.where(hours > 0, need / hours, np.where(need > 0, np.inf, 0.0))
    laxity = discharge_laxity_kw(snapshot, hours, seen_kw=seen_kw, gives_kw=gives_kw)
    out: FloatArray = np.where(chosen, np.minimum(base, np.maximum(planned, laxity)), base)
    return out


def beyond_deadband(new_kw: FloatArray, last_kw: FloatArray, deadband_kw: float, deadband_pct: float) -> BoolArray:
    """Which limits moved enough to be sent: never sent (NaN), or beyond both the absolute and relative band."""
    with np.errstate(invalid="ignore"):
        moved = np.abs(new_kw - last_kw)
        band = np.maximum(deadband_kw, deadband_pct / 100.0 * np.abs(last_kw))
        result: BoolArray = np.isnan(last_kw) | (moved > band)
    return result


def sent_for_caps(
    problem: AllocationProblem, new_kw: FloatArray, in_force_kw: FloatArray, candidates: BoolArray,
    pool_cap_kw: float | None = None, tolerance_kw: float = 1e-3,
) -> BoolArray:
    """Limits to send although they moved within the deadband, so that no cap is left exceeded by what is in force.

    ``in_force_kw`` is what each session will have in force after this cycle without these (NaN: nothing, taken
    as its new limit); ``candidates`` are the steerable sessions not already being sent. A limit in force above
    the session's own maximum (a §14a device cap) goes out; so do, largest cut first, the cuts of members of a
    capped group (or of the pool, under ``pool_cap_kw``) whose limits in force add up to more than the cap. A
    deadband keeps traffic down; it must not keep a DSO limit exceeded by a few hundred watts.
    """
    n = new_kw.shape[0]
    cut = candidates & (new_kw < in_force_kw - tolerance_kw)
    send = cut & (in_force_kw > problem.max_kw + tolerance_kw)
    in_force = np.where(send | np.isnan(in_force_kw), new_kw, in_force_kw)
    caps: list[tuple[float, npt.NDArray[np.int64]]] = []
    group_max = np.asarray(problem.group_max_kw, dtype=np.float64)
    if group_max.size:
        members = np.asarray(problem.member_session, dtype=np.int64)
        groups = np.asarray(problem.member_group, dtype=np.int64)
        totals = np.bincount(groups, weights=in_force[members], minlength=group_max.size)
        for g in np.flatnonzero(np.isfinite(group_max) & (totals > group_max + tolerance_kw)):
            caps.append((float(group_max[g]), members[groups == g]))
    if pool_cap_kw is not None and float(np.sum(in_force)) > pool_cap_kw + tolerance_kw:
        caps.append((pool_cap_kw, np.arange(n)))
    for cap, members in caps:
        excess = float(np.sum(in_force[members])) - cap
        movable = members[cut[members] & ~send[members]]
        for i in movable[np.argsort(new_kw[movable] - in_force[movable], kind="stable")]:
            if excess <= tolerance_kw:
                break
            excess -= in_force[i] - new_kw[i]
            in_force[i] = new_kw[i]
            send[i] = True
    return send


def off_limit(measured_kw: FloatArray, limit_kw: FloatArray, tolerance_kw: float) -> tuple[BoolArray, BoolArray]:
    """Sessions measured well above their limit, and well below it (NaN limits count as neither)."""
    with np.errstate(invalid="ignore"):
        above: BoolArray = measured_kw > limit_kw + tolerance_kw
        below: BoolArray = measured_kw < limit_kw - tolerance_kw
    return above, below


def window_average_kw(times_s: FloatArray, values_kw: FloatArray, start_s: FloatArray, end_s: FloatArray
                      ) -> tuple[FloatArray, FloatArray]:
    """Each session's average of a piecewise-constant history over its window, and the share of it covered.

    ``values_kw[h]`` holds from ``times_s[h]`` to ``times_s[h + 1]`` (the last one on to the windows' end);
    NaN where the session had no value then. The average is over the covered part of ``[start_s, end_s)``.
    """
    k = times_s.shape[0]
    n = start_s.shape[0]
    weighted = np.zeros(n)
    covered = np.zeros(n)
    if k == 0 or n == 0:
        return np.full(n, math.nan), covered
    bounds = np.append(times_s, math.inf)
    for h in range(k):
        overlap = np.minimum(end_s, bounds[h + 1]) - np.maximum(start_s, bounds[h])
        overlap = np.where(np.isfinite(values_kw[h]), np.maximum(overlap, 0.0), 0.0)
        weighted += overlap * np.nan_to_num(values_kw[h])
        covered += overlap
    length = end_s - start_s
    with np.errstate(invalid="ignore", divide="ignore"):
        average = np.where(covered > 0, weighted / covered, math.nan)
        share = np.where(length > 0, covered / length, 0.0)
    return average, np.nan_to_num(share)


def integral_step(correction_kw: float, error_kw: float, gain: float, low_kw: float, high_kw: float,
                  saturated: int) -> float:
    """One step of the pool's integral correction, with anti-windup.

    The correction moves by ``gain`` times the pool error, except further in a direction the allocation could
    not follow last cycle (``saturated`` +1: the target was clipped at the pool's maximum, -1: at its minimum),
    and stays within what the pool can do around its target, ``[low_kw, high_kw]``.
    """
    if (saturated > 0 and error_kw > 0) or (saturated < 0 and error_kw < 0):
        error_kw = 0.0
    moved = correction_kw + gain * error_kw
    return float(min(max(moved, low_kw), high_kw)) if low_kw <= high_kw else 0.0


def planned_baseline_kw(snapshot: DispatchSnapshot) -> FloatArray:
    """Each session's baseline: its planned power where the planner gave one; a car the plan does not know yet
    (plugged in since it was made: its re-plan is under way) at its even pace until the plan has it (its need
    over its hours left less the finish margin and the taper's extra time, ``taper_hours``; at most its
    uncontrolled power); without any plan, its uncontrolled power.

    At full power until its re-plan came, every car plugged in drew its first ISP in full wherever it arrived:
    on the quarter demo's delivery evening (18:00-24:00, 89-152 EUR/MWh) 344 of the 1,468 kWh delivered were cars'
    first quarter hour, where the plan, once it had them, would defer most of it to the night."""
    baseline = np.asarray(snapshot.baseline_kw, dtype=np.float64)
    if snapshot.planned_kw is None:
        return baseline
    planned = np.asarray(snapshot.planned_kw, dtype=np.float64)
    need = np.maximum(np.nan_to_num(np.asarray(snapshot.energy_needed_kwh, dtype=np.float64), nan=np.inf), 0.0)
    # Paced as the need floors pace it: to be done the finish margin and the taper's extra time before it leaves.
    hours = taper_hours(snapshot, np.maximum(np.asarray(snapshot.hours_to_departure, dtype=np.float64)
                                             - FINISH_MARGIN_S / 3600.0, 0.0), None)
    with np.errstate(divide="ignore", invalid="ignore"):
        pace = np.where(hours > 0, need / np.where(hours > 0, hours, 1.0), baseline)
    unplanned = np.minimum(baseline, pace)
    if snapshot.follows_plan_discharge is not None:
        # A site that plans its own cars (behind the meter) keeps them at full power until its plan has them: paced,
        # debrecen-office's pool peaked at 26.8 kW against 21.9 uncontrolled (before its LP had the pool's guard).
        unplanned = np.where(np.asarray(snapshot.follows_plan_discharge, dtype=bool), baseline, unplanned)
    return np.where(np.isfinite(planned), planned, unplanned)


def plan_start_kw(snapshot: DispatchSnapshot, start_kw: FloatArray, pending_kw: FloatArray) -> FloatArray:
    """Where each session's allocation starts (the allocator moves the pool's difference to its target from there):
    the limit in force (``start_kw``), but a car its site plans behind the meter (``follows_plan_discharge``) starts
    from its plan for the ISP unless a limit is in flight (``pending_kw`` not NaN).

    A pool plan's own cars are shares of an aggregate profile, so the split between them is the allocator's; a
    site's LP chose each car's power itself. Started from the limits in force, the split was the ISP before's:
    paris-home's car planned at 7 kW all night got its even pace, 2.76 kW, because it had 0 kW in force when the
    night began, while a car planned at 0 kW kept its 6 kW.
    """
    start = np.asarray(start_kw, dtype=np.float64)
    follows, planned_kw = snapshot.follows_plan_discharge, snapshot.planned_kw
    if follows is None or planned_kw is None:
        return start
    planned = np.asarray(planned_kw, dtype=np.float64)
    use = np.asarray(follows, dtype=bool) & np.isnan(np.asarray(pending_kw, dtype=np.float64)) & np.isfinite(planned)
    out: FloatArray = np.where(use, planned, start)
    return out
