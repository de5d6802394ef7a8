"""Per-car plans on a rolling horizon (model-predictive), pure: what each car does when nothing is activated.

A pool's present sessions and its forecast arrivals are scheduled from now to the last departure (the caller
makes the horizon reach at least the end of the next delivery day) with the exact fast scheduler
(``solve_schedule``), against:

* the price of energy: cleared day-ahead prices where known, a forecast beyond them;
* the committed day-ahead position: every kWh away from it, either way, costs ``imbalance_eur_per_mwh``;
* awarded aFRR capacity, kept free in every ISP of its product: the pool plans at least ``up_headroom_kw`` above
  what its cars must draw at the least (so it can reduce by that much) and at most what its cars can take minus
  ``down_headroom_kw`` (so it can add that much): each car within its remaining need, a capped group within its
  cap, and the caller caps each car at what telemetry shows it draws;
* caps: the pool's own (congestion limits), groups' (sites, congestion points) and per session and ISP (§14a);
  a V2G session's state of charge stays within its floor and battery (the scheduler's LP).

A capped group is planned first, on its own under its cap and against prices; the rest of the pool is then
planned against what is left of the position and the pool bounds. Each group is scheduled exactly; the split is
not (the group does not see the position), which costs imbalance only where a group's cap binds. A session in
two capped groups is planned under the first group's cap only (the dispatcher still holds every cap).

Large coupled pools. ``solve_schedule`` is exact (the segment flow honours position, floors and caps), but its
augmenting paths grow faster than linearly with the sessions (a 10,000-session pool with a position took tens
of seconds). Above ``EXACT_MAX_CELLS`` session-ISPs a charge-only pool with a position (above
``EXACT_CAPPED_MAX_CELLS`` one under caps alone, which the price-order flow plans fast) is planned in two steps
instead: a profile per group of cars (present or to come, and leaving at about the same time) by a small LP over
each group's aggregate bounds (per ISP the most its cars can draw, cumulative energy between what the needs force
by then and what the cars can have taken), the pool's bounds and position on their sum, then that sum split over
the pool's cars in time order, least laxity first, each car drawing at least what keeps its need feasible. The
aggregate bounds are an outer approximation (prefix sets of ISPs only), so the split can leave the profile where
no car can follow it; the needs come first there. ``Plan.method`` says which way a pool went.

Only the present sessions' rows are the plan; forecast arrivals shape it (they need energy and room later) and
are reported as one pool profile.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, fields

import numpy as np
from numpy.typing import NDArray
from scipy import sparse

from vpp.algorithms.dispatch import AC_CAR_ASSUMED_KW, car_power_kw
from vpp.algorithms.lp import solve_lp
from vpp.algorithms.scheduling import ScheduleResult, SchedulingProblem, solve_schedule
from vpp.algorithms.scheduling.model import INFEASIBLE, OPTIMAL, window_mask
from vpp.algorithms.taper import ASSUMED_TARGET_SOC, deliverable_kwh, extra_hours, taken_kwh
from vpp.domain.errors import InvalidInput

# Above this many session-ISPs a charge-only pool with a position is planned by aggregate LP and least-laxity
# split; one under caps alone only above EXACT_CAPPED_MAX_CELLS.
EXACT_MAX_CELLS = 150_000
EXACT_CAPPED_MAX_CELLS = 1_000_000
_SOFT_EUR_PER_KWH = 1.0e3
# Ties in the aggregate LP's prices are broken by this much per ISP, earliest first (``tie_broken_prices``): above
# the LP's dual tolerance (1e-7 EUR/kW per ISP is 4e-4 EUR/MWh), far below any real price step.
TIE_STEP_EUR_PER_MWH = 0.01
# The aggregate LP keeps this many groups of cars (by arrival now or later, and by departure) apart.
AGGREGATE_GROUPS = 24

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]
# A V2G pool's peak guard is this share of its uncontrolled estimate: it buys back what it sold on top of its needs
# and sits at its guard for hours, where the estimate's error (utrecht: 129-163 kW over the re-plans of a day whose
# cars drew 146.6 kW uncontrolled) puts its peak above the uncontrolled one; a charge-only pool touches it briefly.
V2G_GUARD_SHARE = 0.9
# Energy below which a plan counts as meeting every need.
UNMET_TOL_KWH = 1e-3


@dataclass(frozen=True, eq=False)
class PlanProblem:
    """One pool to plan.

    ``sessions`` carries the horizon, prices, the pool's own bounds, the committed position and imbalance price,
    and every session (present and forecast) with its per-ISP caps. ``present`` marks the sessions plugged in
    now. ``session_group`` names each session's capped group (-1: none), ``group_max_kw`` is groups x ISPs
    (+inf where a group has no cap). Headroom is kW per ISP (>= 0).
    """

    sessions: SchedulingProblem
    present: BoolArray
    up_headroom_kw: FloatArray
    down_headroom_kw: FloatArray
    session_group: IntArray
    group_max_kw: FloatArray


@dataclass(frozen=True, eq=False)
class Plan:
    """Planned power of the present sessions (rows of ``schedule_kw``), and the pool with forecast arrivals."""

    session_ids: tuple[str, ...]
    schedule_kw: FloatArray
    pool_kw: FloatArray
    forecast_kw: FloatArray
    unmet_kwh: FloatArray
    energy_cost_eur: float
    imbalance_kwh: float
    status: str
    method: str
    seconds: float


def _check(problem: PlanProblem) -> None:
    s = problem.sessions
    n, t = s.n_sessions, s.n_isps
    if problem.present.shape != (n,) or problem.session_group.shape != (n,):
        raise InvalidInput("present and session_group must have one entry per session")
    if problem.up_headroom_kw.shape != (t,) or problem.down_headroom_kw.shape != (t,):
        raise InvalidInput("headroom must have one value per ISP")
    if (problem.up_headroom_kw < 0).any() or (problem.down_headroom_kw < 0).any():
        raise InvalidInput("headroom is a magnitude and cannot be negative")
    groups = problem.group_max_kw.shape[0] if problem.group_max_kw.ndim == 2 else -1
    if problem.group_max_kw.ndim != 2 or problem.group_max_kw.shape[1] != t:
        raise InvalidInput("group_max_kw must be groups x ISPs")
    if (problem.session_group >= groups).any():
        raise InvalidInput("session_group names a group that group_max_kw does not have")


def subproblem(problem: SchedulingProblem, rows: IntArray, **changes: object) -> SchedulingProblem:
    """The sessions ``rows`` of ``problem`` (same horizon and prices), with ``changes`` to pool-level fields."""
    per_session = {"session_ids", "arrival", "departure", "energy_kwh", "max_kw", "min_kw", "battery_kwh",
                   "soc_kwh", "min_soc_kwh", "session_max_kw", "soc_floor_kwh"}
    values: dict[str, object] = {}
    for f in fields(problem):
        value = getattr(problem, f.name)
        if f.name == "session_ids":
            value = tuple(problem.session_ids[int(k)] for k in rows)
        elif f.name in per_session and value is not None:
            value = value[rows]
        values[f.name] = value
    values.update(changes)
    return SchedulingProblem(**values)  # type: ignore[arg-type]


def headroom_bounds(problem: PlanProblem, cap_kw: FloatArray | None = None) -> tuple[FloatArray, FloatArray]:
    """The pool's bounds with the awarded aFRR headroom reserved: (min_kw, max_kw) per ISP.

    ``cap_kw`` is the sessions' power caps inside their windows (``session_caps``), when already at hand.
    Downward headroom (more consumption) counts each session at most at what its remaining need lets it take
    in one ISP (``absorbable_kw``): a car that has met its need, or nearly, adds nothing to an activation
    whatever its charger could draw; nor does a capped group beyond its cap.
    """
    s = problem.sessions
    cap = session_caps(s) if cap_kw is None else cap_kw
    room = absorbable_kw(s, cap)
    most = room.sum(axis=0)
    # A capped group (a congestion point, a site) adds no more than its cap, whatever its members could draw.
    for g in range(problem.group_max_kw.shape[0]):
        members = problem.session_group == g
        if members.any():
            in_group = room[members].sum(axis=0)
            most = most - in_group + np.minimum(in_group, problem.group_max_kw[g])
    least = (np.minimum(s.min_kw, 0.0)[:, None] * (cap > 0.0)).sum(axis=0)
    up, down = problem.up_headroom_kw, problem.down_headroom_kw
    pool_max = np.where(down > 0, np.minimum(s.pool_max_kw, most - down), s.pool_max_kw)
    pool_min = np.where(up > 0, np.maximum(s.pool_min_kw, least + up), s.pool_min_kw)
    # Headroom the cars cannot give is not planned against: the pool stays within what its cars can draw.
    pool_max = np.maximum(pool_max, np.minimum(least, s.pool_max_kw))
    pool_min = np.minimum(pool_min, pool_max)
    return pool_min, pool_max


def _solve_group(s: SchedulingProblem, rows: IntArray, group_max_kw: FloatArray,
                 pool_left_kw: FloatArray) -> ScheduleResult:
    """A capped group's schedule, planned before the rest of the pool: within its own cap and within what is left of
    the pool's (the peak guard, the aFRR headroom), unless the pool's would leave a need of the group unmet that its
    own cap alone meets (the guard is estimated without the groups' caps, so it can be too low under them)."""
    free = np.full(s.n_isps, -np.inf)
    cap = np.fmin(group_max_kw, pool_left_kw)
    within = solve_schedule(subproblem(s, rows, pool_max_kw=cap, pool_min_kw=free, position_kw=None,
                                       imbalance_eur_per_mwh=0.0))
    # Where the pool's cap binds nowhere, the group alone is the same problem: no second solve.
    if within.unmet_kwh.sum() <= UNMET_TOL_KWH or not (cap < group_max_kw).any():
        return within
    alone = solve_schedule(subproblem(s, rows, pool_max_kw=group_max_kw, pool_min_kw=free, position_kw=None,
                                      imbalance_eur_per_mwh=0.0))
    return within if within.unmet_kwh.sum() <= alone.unmet_kwh.sum() + UNMET_TOL_KWH else alone


def plan_pool(problem: PlanProblem) -> Plan:
    """Per-session plans of the pool (see the module docstring)."""
    started = time.perf_counter()
    _check(problem)
    s = problem.sessions
    cap = session_caps(s)
    pool_min, pool_max = headroom_bounds(problem, cap)
    schedule = np.zeros((s.n_sessions, s.n_isps))
    methods: list[str] = []
    statuses: list[str] = []
    capped = np.isfinite(problem.group_max_kw).any(axis=1) if problem.group_max_kw.size else np.zeros(0, bool)
    planned = np.zeros(s.n_isps)
    for g in np.flatnonzero(capped):
        rows = np.flatnonzero(problem.session_group == g).astype(np.int64)
        if rows.size == 0:
            continue
        result = _solve_group(s, rows, problem.group_max_kw[g].astype(np.float64), pool_max - planned)
        schedule[rows] = result.schedule_kw
        planned += result.pool_kw
        methods.append(result.method)
        statuses.append(result.status)
    rest = np.flatnonzero(~np.isin(problem.session_group, np.flatnonzero(capped))).astype(np.int64)
    position = None if s.position_kw is None else s.position_kw - planned
    remaining = subproblem(s, rest, pool_max_kw=pool_max - planned, pool_min_kw=pool_min - planned,
                           position_kw=position)
    if rest.size:
        coupled = remaining.has_position or remaining.has_pool_limits
        # Under caps alone the exact price-order flow stays fast far beyond EXACT_MAX_CELLS (0.1-0.5 s at
        # 700-900 sessions over 250 ISPs); a position (the segment flow) needs the aggregate path sooner.
        limit = EXACT_MAX_CELLS if remaining.has_position else EXACT_CAPPED_MAX_CELLS
        large = remaining.n_sessions * remaining.n_isps > limit
        if coupled and large and not remaining.is_v2g.any():
            schedule[rest] = aggregate_then_split(remaining, cap[rest])
            methods.append("aggregate-lp+least-laxity-split")
            met = float(np.max(remaining.energy_kwh - schedule[rest].sum(axis=1) * s.isp_hours, initial=0.0))
            statuses.append("feasible" if met > 1e-3 else "optimal-aggregate")
        else:
            result = solve_schedule(remaining)
            schedule[rest] = result.schedule_kw
            methods.append(result.method)
            statuses.append(result.status)
    pool_kw = schedule.sum(axis=0)
    present = problem.present
    unmet = np.maximum(s.energy_kwh - schedule.sum(axis=1) * s.isp_hours, 0.0)
    imbalance = 0.0
    if s.position_kw is not None:
        committed = np.isfinite(s.position_kw)
        imbalance = float(np.abs(pool_kw - np.where(committed, s.position_kw, 0.0))[committed].sum() * s.isp_hours)
    if INFEASIBLE in statuses:
        status = INFEASIBLE
    elif any(x not in (OPTIMAL, "optimal-aggregate") for x in statuses):
        status = "feasible"
    elif "optimal-aggregate" in statuses:
        status = "optimal-aggregate"
    else:
        # Each part is exact; the split between capped groups and the rest is not proven optimal.
        status = OPTIMAL if len(statuses) <= 1 else "feasible"
    return Plan(
        session_ids=tuple(s.session_ids[int(k)] for k in np.flatnonzero(present)),
        schedule_kw=schedule[present],
        pool_kw=pool_kw,
        forecast_kw=schedule[~present].sum(axis=0),
        unmet_kwh=unmet[present],
        energy_cost_eur=float(s.prices_eur_per_mwh @ pool_kw) * s.isp_hours / 1000.0,
        imbalance_kwh=imbalance,
        status=status,
        method="+".join(dict.fromkeys(methods)) or "empty",
        seconds=time.perf_counter() - started,
    )



def need_end_soc(energy_kwh: FloatArray, *, soc_kwh: FloatArray | None = None, battery_kwh: FloatArray | None = None,
                 target_soc: FloatArray | None = None) -> tuple[FloatArray, FloatArray | None]:
    """Where each need (``energy_kwh``) ends and the battery it ends in: the car's own target where its state of
    charge and battery are known (``soc_kwh``, ``battery_kwh``; NaN: not), else ``target_soc`` (learned from
    finished sessions, ``vpp.algorithms.end_soc``; NaN or None: not known), else full (``vpp.algorithms.taper``'s
    assumption); the battery NaN where not known (None without ``soc_kwh`` and ``battery_kwh``)."""
    energy = np.maximum(np.nan_to_num(np.asarray(energy_kwh, dtype=np.float64)), 0.0)
    target: FloatArray = np.full(energy.shape, ASSUMED_TARGET_SOC)
    if target_soc is not None:
        learned = np.broadcast_to(np.asarray(target_soc, dtype=np.float64), energy.shape)
        target = np.where(np.isfinite(learned), np.clip(learned, 0.0, 1.0), target)
    if soc_kwh is None or battery_kwh is None:
        return target, None
    soc = np.asarray(soc_kwh, dtype=np.float64)
    size = np.asarray(battery_kwh, dtype=np.float64)
    known = np.isfinite(soc) & np.isfinite(size) & (size > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        target = np.where(known, np.clip((soc + energy) / size, 0.0, 1.0), target)
    battery: FloatArray = np.where(known, size, np.nan)
    return target, battery


def taper_departure(departure: IntArray, energy_kwh: FloatArray, power_kw: FloatArray, isp_hours: float, *,
                    soc_kwh: FloatArray | None = None, battery_kwh: FloatArray | None = None,
                    arrival: IntArray | None = None, target_soc: FloatArray | None = None) -> IntArray:
    """Each car's departure ISP to plan to: earlier by what the taper near full adds to its need's time
    (``vpp.algorithms.taper``; whole ISPs, rounded up), never earlier than its need at full power allows from its
    ``arrival`` (default: now, ISP 0, for present cars), nor than the end of its first ISP. ``power_kw``: what the
    car draws at full power. Where a car's state of charge and battery are known (``soc_kwh``, ``battery_kwh``;
    NaN: not) its need ends at its own target, else at ``target_soc`` (what its finished sessions showed,
    ``vpp.algorithms.end_soc``; NaN or None: not known) or, without one, full (``vpp.algorithms.taper``'s
    assumption).

    A car planned at full power up to its departure cannot draw it in its last hours above ~80 % state of charge
    and leaves short; planned to be done by this departure it can.
    """
    energy = np.maximum(np.nan_to_num(np.asarray(energy_kwh, dtype=np.float64)), 0.0)
    power = np.asarray(power_kw, dtype=np.float64)
    target, battery = need_end_soc(energy, soc_kwh=soc_kwh, battery_kwh=battery_kwh, target_soc=target_soc)
    extra = np.ceil(extra_hours(energy, power, battery_kwh=battery, target_soc=target) / isp_hours
                    - 1e-9).astype(np.int64)
    with np.errstate(divide="ignore", invalid="ignore"):
        at_full = np.where(power > 0, np.ceil(energy / (power * isp_hours) - 1e-9), 0.0).astype(np.int64)
    first = np.zeros_like(departure) if arrival is None else np.asarray(arrival, dtype=np.int64)
    out: IntArray = np.maximum(np.maximum(departure - extra, np.minimum(departure, first + at_full)), first + 1)
    return out


def absorbable_kw(problem: SchedulingProblem, cap_kw: FloatArray) -> FloatArray:
    """Sessions x ISPs: the most each session can draw in an ISP, its cap within what its whole remaining need
    lets it take in one ISP (exact for the first ISP of the horizon, an upper bound later).

    With the pool planned at most this minus the downward headroom, the cars' own room adds up to the headroom
    in the first ISP: each car can add ``min(cap, need / h) - planned`` and the plan never exceeds either term.
    """
    need = np.maximum(np.nan_to_num(problem.energy_kwh, nan=np.inf), 0.0)
    # A V2G car can take what its battery has room for (its need is what it must have, not what it can hold).
    v2g = problem.is_v2g
    if v2g.any():
        need = np.where(v2g, np.maximum(need, np.nan_to_num(problem.battery_kwh - problem.soc_kwh)), need)
    room: FloatArray = np.minimum(cap_kw, (need / problem.isp_hours)[:, None])
    return room


DRAW_HEADROOM_KW = 0.5
DRAW_HEADROOM_PCT = 5.0


def car_limited_kw(measured_kw: FloatArray, reading_start_s: FloatArray, reading_end_s: FloatArray,
                   limit_kw: FloatArray, limit_sent_s: FloatArray, charger_max_kw: FloatArray, *,
                   tolerance_kw: float = 1.0, headroom_kw: float = DRAW_HEADROOM_KW,
                   headroom_pct: float = DRAW_HEADROOM_PCT) -> FloatArray:
    """What each car is known to draw at most (NaN: not known), from its latest reading, to plan it with.

    A car whose latest reading is clearly (``tolerance_kw``) below everything that bounded it over the reading's
    period (the limit in force, NaN: none, sent before the period began; its charger's maximum) is held back by
    itself: an onboard charger, taper near full, a need met by its own target. It is planned at what it drew
    plus a little headroom, so that the plan, the dispatcher's baseline, counts no power the car will not take,
    and the aFRR headroom kept free is headroom the cars have. So is a V2G car clearly feeding back less than its
    limit in force asked (and its charger gives): a bidirectional onboard charger is taken to charge as fast as
    it discharges (a 7.4-kW car asked for -11 kW gives -7.4 kW and is planned at 7.9 kW, not 11 kW). A reading
    that averages over a limit change says nothing and is not judged.
    """
    with np.errstate(invalid="ignore"):
        bound = np.fmin(limit_kw, charger_max_kw)
        length = reading_end_s - reading_start_s
        # The limit in force was sent before the period began (a tenth of the period's grace for the round trip).
        settled = np.isnan(limit_kw) | (limit_sent_s <= reading_start_s + 0.1 * length)
        read = np.isfinite(measured_kw) & (length > 0) & settled
        below = read & (measured_kw < bound - tolerance_kw)
        gives = read & (limit_kw < 0) & (measured_kw < -tolerance_kw) & (
            -measured_kw < np.fmin(-limit_kw, charger_max_kw) - tolerance_kw)
    drawn = np.where(gives, -np.nan_to_num(measured_kw), np.maximum(np.nan_to_num(measured_kw), 0.0))
    known: FloatArray = np.where(below | gives, drawn + np.maximum(headroom_kw, headroom_pct / 100.0 * drawn),
                                 np.nan)
    return known


# A charger rated within this share above the car's assumed draw is taken as its own bound (``planned_max_kw``).
ASSUMED_KW_TOLERANCE = 0.05


def planned_max_kw(charger_max_kw: FloatArray, known_kw: FloatArray | None = None,
                   drawing_kw: FloatArray | None = None) -> FloatArray:
    """The most the planner plans each present car at: its charger's maximum, within what the car is known to draw
    (``car_limited_kw``; NaN or None: not known), and on AC no more than the dispatcher takes an AC car to draw
    (``vpp.algorithms.dispatch.car_power_kw``: 11 kW, or what it draws now, ``drawing_kw``, if more) where
    the charger is rated clearly above that (a 3 x 16 A charger of 11.04 kW is its car's bound).

    On a 22-kW AC charger most cars draw 11 kW (their onboard charger). A car not yet seen drawing was planned at
    22 kW while the taper (``taper_departure``), the dispatcher's need floors and the forecast arrivals take it at
    11: a plan that puts the whole pool into its cheapest ISPs at twice what the cars can draw leaves them behind,
    and each re-plan then pushes what they did not take into the next ISPs, where it piles up into a higher peak
    (``toulouse``: 96.8 kW against 91.4 once the cars were planned to their learned end, without the taper's hours
    of margin).
    """
    charger = np.asarray(charger_max_kw, dtype=np.float64)
    known = charger if known_kw is None else np.fmin(charger, np.asarray(known_kw, dtype=np.float64))
    full, _ = car_power_kw(charger, drawing_kw)
    # A charger rated about what the car is taken to draw (3 x 16 A: 11.04 kW) is the car's bound itself.
    above = charger > AC_CAR_ASSUMED_KW * (1.0 + ASSUMED_KW_TOLERANCE)
    out: FloatArray = np.where(above, np.fmin(known, full), known)
    return out


def drawn_kw(known_kw: FloatArray, *, headroom_kw: float = DRAW_HEADROOM_KW,
             headroom_pct: float = DRAW_HEADROOM_PCT) -> FloatArray:
    """What a car was seen drawing, from what ``car_limited_kw`` knows it to draw (its headroom taken off)."""
    known = np.asarray(known_kw, dtype=np.float64)
    out: FloatArray = np.maximum(np.fmin(known - headroom_kw, known / (1.0 + headroom_pct / 100.0)), 0.0)
    return out


def recharge_soc_floor_kwh(departure_h: FloatArray, soc_kwh: FloatArray, energy_kwh: FloatArray,
                           battery_kwh: FloatArray, power_kw: FloatArray, max_kw: FloatArray, isp_hours: float, *,
                           derate: float, margin_h: float) -> FloatArray:
    """Sessions x ISPs: the least state of charge (kWh) each V2G car may have at the end of each ISP so that it
    can still reach its target (``soc_kwh + energy_kwh``) by departure (``departure_h``, hours from the start of
    the first ISP, less ``margin_h``) drawing ``derate`` of ``power_kw`` (what it is known to draw), with the
    taper near full (``vpp.algorithms.taper``); NaN for a car with no state of charge or battery.

    The dispatcher lets a car feed back only within this bound (``vpp.algorithms.dispatch.discharge_laxity_kw``,
    the same derate, power and taper), so a plan that sells below it is a plan the cars cannot follow; and a
    plan that sells down to a recharge at the car's full power leaves it short (afrr-v2g-4h: 7.4-kW cars planned
    to recharge at 7.9-11 kW flat reached the taper late). The floor is never above what ``max_kw`` (sessions x
    ISPs, the planned caps) can reach from now, nor above the battery: a car already behind charges at its cap.
    """
    soc = np.asarray(soc_kwh, dtype=np.float64)
    battery = np.asarray(battery_kwh, dtype=np.float64)
    known = np.isfinite(soc) & np.isfinite(battery) & (battery > 0)
    n, t_count = max_kw.shape
    out: FloatArray = np.full((n, t_count), np.nan)
    if not known.any() or t_count == 0:
        return out
    rows = np.flatnonzero(known)
    size = battery[rows][:, None]
    target_kwh = np.minimum(soc[rows] + np.maximum(np.nan_to_num(energy_kwh[rows]), 0.0), battery[rows])[:, None]
    target_soc = target_kwh / size
    ends = isp_hours * np.arange(1, t_count + 1)[None, :]
    left = np.maximum(np.asarray(departure_h, dtype=np.float64)[rows][:, None] - ends - margin_h, 0.0)
    shape = left.shape
    power = np.broadcast_to(derate * np.maximum(np.asarray(power_kw, dtype=np.float64)[rows], 0.0)[:, None], shape)
    # The need is not capped here: however deep the car is discharged, what it can take back is the bound.
    can_take = deliverable_kwh(left, power, np.broadcast_to(target_kwh, shape),
                               battery_kwh=np.broadcast_to(size, shape),
                               target_soc=np.broadcast_to(target_soc, shape))
    reachable = np.minimum(soc[rows][:, None] + isp_hours * np.cumsum(np.maximum(max_kw[rows], 0.0), axis=1), size)
    out[rows] = np.minimum(target_kwh - can_take, reachable)
    return out


def session_caps(problem: SchedulingProblem) -> FloatArray:
    """Sessions x ISPs: each session's charging power cap inside its window, 0 outside."""
    mask = window_mask(problem)
    upper = problem.max_kw[:, None] if problem.session_max_kw is None else problem.max_kw_by_isp()
    cap: FloatArray = np.where(mask, np.maximum(upper, 0.0), 0.0)
    return cap


def _needs(problem: SchedulingProblem, cap_kw: FloatArray) -> FloatArray:
    """Each need within what its window allows."""
    need: FloatArray = np.minimum(np.maximum(problem.energy_kwh, 0.0), cap_kw.sum(axis=1) * problem.isp_hours)
    return need


def tie_broken_prices(prices_eur_per_mwh: FloatArray, step_eur_per_mwh: float = TIE_STEP_EUR_PER_MWH) -> FloatArray:
    """The prices with each run of equal consecutive prices (an hour's four ISPs) raised by ``step`` per ISP
    after its first: the aggregate LP then fills the earliest ISPs of a tie first.

    Without it the LP's optimum is degenerate over an hour of hourly prices and the simplex picks a different
    vertex each re-plan as the horizon rolls (the demo's pool on the day after delivery: every other ISP, moved
    from one re-plan to the next); a car's ISP that the previous plan left at 0 starts only when the re-plan
    reaches the dispatcher, and delivered 31-36 % of its plan against 88-90 % for an ISP the previous plan had.
    """
    prices = np.asarray(prices_eur_per_mwh, dtype=np.float64)
    if prices.size == 0:
        return prices.copy()
    tied = np.concatenate([[False], prices[1:] == prices[:-1]])
    run = np.cumsum(~tied) - 1
    first = np.flatnonzero(~tied)
    out: FloatArray = prices + step_eur_per_mwh * (np.arange(prices.size) - first[run])
    return out


def aggregate_groups(problem: SchedulingProblem, groups: int) -> IntArray:
    """Each session's aggregate in the LP (``aggregate_profiles``): the sessions there from the first ISP and the
    later arrivals apart, each split into up to ``groups`` // 2 runs of about equal size by departure (one group:
    the whole pool)."""
    n = problem.n_sessions
    out = np.zeros(n, dtype=np.int64)
    if groups <= 1:
        return out
    per_kind = max(groups // 2, 1)
    for kind, rows in enumerate((np.flatnonzero(problem.arrival <= 0), np.flatnonzero(problem.arrival > 0))):
        if rows.size == 0:
            continue
        order = rows[np.argsort(problem.departure[rows], kind="stable")]
        out[order] = kind * per_kind + (np.arange(order.size) * per_kind) // order.size
    return out


def aggregate_profiles(problem: SchedulingProblem, cap: FloatArray, group: IntArray) -> FloatArray:
    """Groups x ISPs: the profiles of least cost (price, imbalance) within each group's aggregate bounds, the pool's
    bounds and position on their sum (charge-only).

    One aggregate of a whole pool lets the LP put in the cheapest ISP the energy that cars leaving soon must have
    and that only cars staying long could draw there (the pool's most power that ISP): the split then gives that
    ISP to the cars that stay and the ones that leave charge later at dearer prices. Groups of cars leaving at
    about the same time keep each group's energy where its own cars can draw it."""
    h, t_count = problem.isp_hours, problem.n_isps
    labels, group = np.unique(group, return_inverse=True)
    g_count = labels.size
    need = _needs(problem, cap)
    done_by = np.cumsum(cap, axis=1) * h
    # Per group: E_t <= sum of min(need, what the window allows by t); E_t >= sum of max(need - (total - done_by_t),
    # 0) (a need minus what the rest of the window can still take).
    upper_energy = np.zeros((g_count, t_count))
    lower_energy = np.zeros((g_count, t_count))
    most_kw = np.zeros((g_count, t_count))
    np.add.at(upper_energy, group, np.minimum(need[:, None], done_by))
    np.add.at(lower_energy, group, np.maximum(done_by - (cap.sum(axis=1) * h - need)[:, None], 0.0))
    np.add.at(most_kw, group, np.minimum(cap, need[:, None] / h))
    position = problem.position_kw if problem.has_position else None
    # Columns: P (group power), E (group cumulative energy), then per ISP over/under the pool bounds and
    # above/below the position.
    gt = g_count * t_count
    p = np.arange(gt).reshape(g_count, t_count)
    e = p + gt
    over, under, above, below = (2 * gt + np.arange(t_count) + k * t_count for k in range(4))
    n_cols = 2 * gt + 4 * t_count
    cost = np.zeros(n_cols)
    cost[p] = (tie_broken_prices(problem.prices_eur_per_mwh) * h / 1000.0)[None, :]
    cost[over] = cost[under] = _SOFT_EUR_PER_KWH * h
    lower = np.zeros(n_cols)
    upper = np.full(n_cols, np.inf)
    upper[p] = most_kw
    lower[e] = lower_energy
    upper[e] = np.maximum(upper_energy, lower_energy)
    upper[over[~np.isfinite(problem.pool_max_kw)]] = 0.0
    upper[under[~np.isfinite(problem.pool_min_kw)]] = 0.0
    committed = np.zeros(t_count, dtype=bool) if position is None else np.isfinite(position)
    cost[above] = cost[below] = problem.imbalance_eur_per_mwh * h / 1000.0
    upper[above[~committed]] = upper[below[~committed]] = 0.0
    # Rows: per group the energy balance E_t - E_(t-1) - h P_t = 0; then the pool bounds sum_g P - over + under,
    # and the position sum_g P - above + below.
    t_idx = np.arange(t_count)
    bound_row, position_row = gt + t_idx, gt + t_count + t_idx
    rows = [p.ravel(), p.ravel(), p[:, 1:].ravel(), np.tile(bound_row, g_count), bound_row, bound_row,
            np.tile(position_row, g_count), position_row, position_row]
    cols = [e.ravel(), p.ravel(), e[:, :-1].ravel(), p.ravel(), over, under, p.ravel(), above, below]
    vals = [np.ones(gt), np.full(gt, -h), -np.ones(g_count * (t_count - 1)), np.ones(gt), -np.ones(t_count),
            np.ones(t_count), np.ones(gt), -np.ones(t_count), np.ones(t_count)]
    matrix = sparse.csc_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                               shape=(gt + 2 * t_count, n_cols))
    target = np.nan_to_num(position) if position is not None else np.zeros(t_count)
    row_lower = np.concatenate([np.zeros(gt), np.where(np.isfinite(problem.pool_min_kw), problem.pool_min_kw,
                                                       -np.inf), np.where(committed, target, -np.inf)])
    row_upper = np.concatenate([np.zeros(gt), np.where(np.isfinite(problem.pool_max_kw), problem.pool_max_kw,
                                                       np.inf), np.where(committed, target, np.inf)])
    values, _ = solve_lp(cost, lower, upper, matrix, row_lower, row_upper)
    if values is None:
        return np.zeros((g_count, t_count))
    profiles: FloatArray = np.clip(values[p], 0.0, most_kw)
    return profiles


def least_laxity_split(problem: SchedulingProblem, profile_kw: FloatArray, cap: FloatArray) -> FloatArray:
    """Sessions x ISPs: the profile shared out ISP by ISP, least laxity first, needs before the profile."""
    h = problem.isp_hours
    need = _needs(problem, cap)
    remaining = need.copy()
    future = cap.sum(axis=1) * h
    schedule = np.zeros_like(cap)
    for t in range(problem.n_isps):
        future -= cap[:, t] * h
        rows = np.flatnonzero((cap[:, t] > 0.0) & (remaining > 1e-9))
        if rows.size == 0:
            continue
        room = np.minimum(cap[rows, t], remaining[rows] / h)
        forced = np.clip(remaining[rows] - future[rows], 0.0, None) / h
        forced = np.minimum(forced, room)
        wanted = max(float(profile_kw[t]) - float(forced.sum()), 0.0)
        extra = room - forced
        laxity = future[rows] - remaining[rows]
        rank = np.argsort(laxity, kind="stable")
        before = np.cumsum(extra[rank]) - extra[rank]
        given = np.empty_like(extra)
        given[rank] = np.clip(wanted - before, 0.0, extra[rank])
        power = forced + given
        schedule[rows, t] = power
        remaining[rows] -= power * h
    return schedule


def aggregate_then_split(problem: SchedulingProblem, cap_kw: FloatArray | None = None) -> FloatArray:
    """A large coupled charge-only pool: the aggregate LP's profiles of groups of cars leaving at about the same
    time (``aggregate_groups``), their sum split over the pool's cars least laxity first (see the docstring).

    The split is pool-wide: a group's aggregate bounds let its profile ask more of an ISP than its cars can still
    draw there once the least laxity have finished, and the other groups' cars make it up (split per group, the
    10,000-session bench left its position by 44 MWh)."""
    cap = session_caps(problem) if cap_kw is None else cap_kw
    group = aggregate_groups(problem, AGGREGATE_GROUPS)
    return least_laxity_split(problem, aggregate_profiles(problem, cap, group).sum(axis=0), cap)


def uncontrolled_load_kw(arrival: IntArray, departure: IntArray, energy_kwh: FloatArray, max_kw: FloatArray,
                         isp_hours: float, *, target_soc: FloatArray | None = None,
                         battery_kwh: FloatArray | None = None) -> FloatArray:
    """The load of stays charged at full power from arrival until their energy is in (uncontrolled charging).

    ``arrival`` and ``departure`` are ISP indices from the first arrival (0); the result covers 0 to the last
    departure. With ``target_soc`` (where each energy ends; NaN: full) each stay slows near full as
    ``vpp.algorithms.taper`` has it (``battery_kwh``: NaN or None, the taper's assumed battery): a car ending at
    90 % of a 60-kWh battery draws its last 6 kWh at less than full power, over more ISPs.
    """
    if arrival.size == 0:
        return np.zeros(0)
    if target_soc is not None:
        return _tapered_load_kw(arrival, departure, energy_kwh, max_kw, isp_hours, target_soc, battery_kwh)
    length = int(max(int(departure.max()), int(arrival.max()) + 1))
    load = np.zeros(length + 1)
    power = np.maximum(max_kw, 0.0)
    isps = np.divide(np.maximum(energy_kwh, 0.0), power * isp_hours, out=np.zeros_like(power), where=power > 0)
    whole = np.minimum(np.floor(isps).astype(np.int64), np.maximum(departure - arrival, 0))
    # Full power from arrival for the whole ISPs (a difference array), then the part-ISP after them.
    np.add.at(load, arrival, power)
    np.add.at(load, arrival + whole, -power)
    load = np.cumsum(load)
    rest = (arrival + whole < departure) & (isps > whole)
    np.add.at(load, (arrival + whole)[rest], (power * (isps - whole))[rest])
    out: FloatArray = load[:length]
    return out


def _tapered_load_kw(arrival: IntArray, departure: IntArray, energy_kwh: FloatArray, max_kw: FloatArray,
                     isp_hours: float, target_soc: FloatArray, battery_kwh: FloatArray | None) -> FloatArray:
    length = int(max(int(departure.max()), int(arrival.max()) + 1))
    stay = np.maximum(departure - arrival, 0)
    power = np.maximum(np.asarray(max_kw, dtype=np.float64), 0.0)
    energy = np.maximum(np.nan_to_num(np.asarray(energy_kwh, dtype=np.float64)), 0.0)
    target = np.asarray(target_soc, dtype=np.float64)
    target = np.where(np.isfinite(target), np.clip(target, 1e-6, 1.0), ASSUMED_TARGET_SOC)
    # Long stays end their charging long before they leave: no car needs more ISPs than a need at its tenth of
    # full power (the taper's floor) takes.
    with np.errstate(divide="ignore", invalid="ignore"):
        longest = np.where(power > 0, np.ceil(energy / (0.1 * power * isp_hours)), 0.0)
    span = int(min(max(int(np.minimum(stay, longest).max(initial=0)), 1), length))
    hours = (np.arange(1, span + 1, dtype=np.float64) * isp_hours)[None, :]
    battery = None if battery_kwh is None else np.asarray(battery_kwh, dtype=np.float64)[:, None]
    taken = taken_kwh(np.broadcast_to(hours, (energy.size, span)), power[:, None], energy[:, None],
                      battery_kwh=battery, target_soc=target[:, None])
    step = np.diff(np.concatenate([np.zeros((energy.size, 1)), taken], axis=1), axis=1) / isp_hours
    offset = np.arange(span)[None, :]
    inside = offset < stay[:, None]
    cells = arrival[:, None] + offset
    load = np.zeros(length + span)
    np.add.at(load, cells[inside], step[inside])
    out: FloatArray = load[:length]
    return out


def arrivals_draw_kw(present_draw_kw: FloatArray, default_kw: float) -> float:
    """What a forecast arrival is taken to draw uncontrolled: the mean of what the present cars draw at full power
    (each its draw seen, else what its charger lets a car draw), at most ``default_kw``; ``default_kw`` without any.

    The uncontrolled estimate behind the peak guard took every forecast arrival at 11 kW, while a pool's cars draw
    less on average (utrecht: 9.6 kW on 11-kW chargers, the 7.4-kW onboard chargers and the taper near full).
    """
    draw = np.asarray(present_draw_kw, dtype=np.float64)
    draw = draw[np.isfinite(draw) & (draw > 0)]
    if draw.size == 0:
        return float(default_kw)
    return min(float(np.mean(draw)), float(default_kw))


def least_peak_kw(problem: SchedulingProblem, cap_kw: FloatArray | None = None) -> float:
    """The lowest pool peak that the needs allow, over the pool's aggregate bounds (charge-only; a lower bound).

    The aggregate bounds are an outer approximation (see ``aggregate_profiles``), so a peak cap at this value can
    still bind a need by a little: callers keep a margin.
    """
    h, t_count = problem.isp_hours, problem.n_isps
    cap = session_caps(problem) if cap_kw is None else cap_kw
    need = _needs(problem, cap)
    if t_count == 0 or not (need > 0).any():
        return 0.0
    done_by = np.cumsum(cap, axis=1) * h
    lower_energy = np.maximum(done_by - (cap.sum(axis=1) * h - need)[:, None], 0.0).sum(axis=0)
    upper_energy = np.minimum(need[:, None], done_by).sum(axis=0)
    most_kw = np.minimum(cap, need[:, None] / h).sum(axis=0)
    # Columns: P_t, E_t (cumulative energy), Z (the peak). Rows: E_t - E_(t-1) - h P_t = 0; P_t - Z <= 0.
    p = np.arange(t_count)
    e = p + t_count
    z = 2 * t_count
    cost = np.zeros(2 * t_count + 1)
    cost[z] = 1.0
    lower = np.concatenate([np.zeros(t_count), lower_energy, [0.0]])
    upper = np.concatenate([most_kw, np.maximum(upper_energy, lower_energy), [np.inf]])
    rows = [p, p, p[1:], p + t_count, np.full(t_count, z - t_count, dtype=np.int64) + p]
    cols = [e, p, e[:-1], p, np.full(t_count, z, dtype=np.int64)]
    vals = [np.ones(t_count), np.full(t_count, -h), -np.ones(t_count - 1), np.ones(t_count), -np.ones(t_count)]
    matrix = sparse.csc_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                               shape=(2 * t_count, 2 * t_count + 1))
    values, _ = solve_lp(cost, lower, upper, matrix, np.concatenate([np.zeros(t_count), np.full(t_count, -np.inf)]),
                         np.zeros(2 * t_count))
    if values is None:
        return float(most_kw.max(initial=0.0))
    return float(values[z])


def peak_guard_kw(problem: SchedulingProblem, uncontrolled_peak_kw: float, *, margin: float = 0.05,
                  cap_kw: FloatArray | None = None) -> float:
    """The pool's peak cap: the uncontrolled peak of its cars, raised to what the needs force (with a margin).

    Without it a price-only plan buys a whole night's charging in the one or two cheapest ISPs and draws above
    what the same cars draw uncontrolled; with it, they spread over the cheap hours at next to no cost. A V2G
    pool's too (before, it had none and bought its sales back at twice its uncontrolled peak): every charge-only
    plan is one of its plans, so the charge-only least peak still bounds what its needs force.
    """
    least = least_peak_kw(problem, cap_kw)
    share = V2G_GUARD_SHARE if problem.is_v2g.any() else 1.0
    return max(share * uncontrolled_peak_kw, least * (1.0 + margin) + 1.0)
