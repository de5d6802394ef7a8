"""Where a car's charging ends, learned from its finished sessions, pure: the target its taper is planned to.

Without a state of charge (AC charging) the planner takes a need to end full of a 60 kWh battery
(``vpp.algorithms.taper``), the worst case: its taper then makes the plan finish the car hours before it leaves.
A car that stopped on its own before it left shows where it ends:

- its last state of charge, where the CPO reported one;
- else its taper: above ``TAPER_START_SOC`` a car draws ``full x (1 - soc) / (1 - TAPER_START_SOC)``, so its draw
  over a reading clearly below everything that bounded it gives its state of charge then, and the energy it took
  after that reading (on the assumed battery) the rest of the way to its stop. A car that drew its bound up to
  its last reading had at most the state of charge at which it can still draw that bound, plus what it took.

"Stopped on its own": after its last reading with energy it stayed plugged in for a reading without any, with
a limit in force (or none) that let it draw. A car held at 0 by the dispatcher, or one that left while still
charging, says nothing about its target and is not judged.

Per car (the same token across sessions, or the same home charge point) its target is the highest of its
judged sessions; a pool's prior is a high quantile of its judged sessions (the conservative side: a target
taken too high only plans a car done earlier). A car with neither keeps the full-battery assumption.

What is judged is biased low for large needs: a car whose need fills its battery ends high and is the one that
leaves still charging, never judged. So a target is never below the share of a small battery of the pool (a low
quantile of the batteries reported states of charge show, ``session_battery_kwh``; else the assumed 60 kWh) that
the session's whole energy fills.

That floor is learned from the cars that report a state of charge (DC sessions, larger cars); an AC car with a
small battery that charges to full reports nothing. So a learned target below full is kept only for a need that a
car of the smallest plausible battery (``SMALLEST_BATTERY_KWH``, the smallest of the shipped EV models, or the
CPO's own) arriving at ``LEAST_ARRIVAL_SOC`` would still finish at or below it: a larger need may be a small car
that ends above the target, and is planned full (the taper's assumption) whatever the cars that report showed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from vpp.algorithms.taper import ASSUMED_BATTERY_KWH, ASSUMED_TARGET_SOC, TAPER_START_SOC

FloatArray = npt.NDArray[np.float64]
# A reading with less than this (kW) drew nothing; a limit below this let the car draw nothing.
DRAWING_KW = 0.1
# A reading this far below its bound was held back by the car itself (as ``car_limited_kw`` judges it).
TOLERANCE_KW = 1.0
# A pool's prior: this quantile of its judged sessions, once it has at least ``PRIOR_MIN_SESSIONS``.
PRIOR_QUANTILE = 0.9
PRIOR_MIN_SESSIONS = 10
# The smallest battery a car that reports no state of charge is taken to have: the smallest of the EV models the
# simulation draws from (vpp/data/ev2gym/ev_specs.json: Volkswagen Golf, 32 kWh); a CPO's own is a setting.
SMALLEST_BATTERY_KWH = 32.0
# The least state of charge a car is taken to arrive with (the simulated CPOs' cars arrive with at least 5 %).
LEAST_ARRIVAL_SOC = 0.05


def taper_soc(power_kw: float, full_kw: float) -> float:
    """The state of charge at which a car whose full power is ``full_kw`` draws ``power_kw`` in its taper (the
    taper's inverse; ``TAPER_START_SOC`` where it draws its full power or more)."""
    if not full_kw > 0 or not math.isfinite(power_kw):
        raise ValueError(f"taper_soc needs a positive full power and a finite draw, got {full_kw}, {power_kw}")
    share = min(max(power_kw / full_kw, 0.0), 1.0)
    return 1.0 - (1.0 - TAPER_START_SOC) * share


def _limit_over(start_s: float, end_s: float, limit_s: FloatArray, limit_kw: FloatArray,
                grace_s: float) -> tuple[float, bool]:
    """The least limit in force over a reading's period (inf: none) and whether it stayed the same over it (a
    limit sent within ``grace_s`` of the period's start counts from its start: the round trip)."""
    limits = np.where(np.isnan(limit_kw), math.inf, limit_kw)
    before = np.flatnonzero(limit_s <= start_s + grace_s)
    at_start = float(limits[before[-1]]) if before.size else math.inf
    inside = (limit_s > start_s + grace_s) & (limit_s < end_s)
    lowest = float(np.min(limits[inside], initial=at_start))
    return lowest, not bool(np.any(inside & (limits != at_start)))


def session_end_soc(power_kw: Sequence[float], energy_kwh: Sequence[float], soc_pct: Sequence[float],
                    start_s: Sequence[float], end_s: Sequence[float], charger_max_kw: float, *,
                    full_kw: float, limit_s: Sequence[float] = (), limit_kw: Sequence[float] = (),
                    battery_kwh: float = ASSUMED_BATTERY_KWH, tolerance_kw: float = TOLERANCE_KW) -> float:
    """The state of charge (fraction) a finished session's car stopped at on its own; NaN where the session does
    not show it (see the module's doc).

    Readings in order of time: each one's mean power over ``[start_s, end_s)`` (kW), its energy (kWh; NaN: the
    power times its length) and the state of charge at its end (%; NaN: not reported). ``limit_s``/``limit_kw``:
    the limits sent to the session in order of time (NaN kW: a limit cleared). ``full_kw``: what the car is taken
    to draw at full power (the most it was seen to draw, at least what the planner takes it to draw).
    """
    power = np.asarray(power_kw, dtype=np.float64)
    n = power.size
    energy, soc, start, end = (np.asarray(x, dtype=np.float64) for x in (energy_kwh, soc_pct, start_s, end_s))
    sent_s, sent_kw = np.asarray(limit_s, dtype=np.float64), np.asarray(limit_kw, dtype=np.float64)
    if any(x.size != n for x in (energy, soc, start, end)) or sent_s.size != sent_kw.size:
        raise ValueError("session_end_soc: readings (and limits) must come in arrays of one length")
    if not full_kw > 0 or not battery_kwh > 0:
        raise ValueError(f"session_end_soc needs a positive full power and battery, got {full_kw}, {battery_kwh}")
    drawing = np.flatnonzero(np.nan_to_num(power) >= DRAWING_KW)
    if drawing.size == 0:
        return math.nan
    last = int(drawing[-1])
    length = np.maximum(end - start, 0.0)

    def grace(k: int) -> float:
        return 0.1 * float(length[k])

    # Stopped on its own: a later reading without energy, the car allowed to draw all through it.
    stopped = any(length[k] > 0 and _limit_over(float(start[k]), float(end[k]), sent_s, sent_kw, grace(k))[0]
                  >= tolerance_kw for k in range(last + 1, n))
    if not stopped:
        return math.nan
    reported = soc[last:][np.isfinite(soc[last:])]
    if reported.size:
        return float(min(max(reported.max() / 100.0, 0.0), 1.0))
    if last == 0 or not length[last - 1] > 0:
        return math.nan
    prev = last - 1
    limit, settled = _limit_over(float(start[prev]), float(end[prev]), sent_s, sent_kw, grace(prev))
    if not settled:
        return math.nan
    taken_last = float(energy[last]) if math.isfinite(energy[last]) else float(power[last] * length[last] / 3600.0)
    bound = min(limit, charger_max_kw, full_kw)
    drawn = float(np.nan_to_num(power[prev]))
    if drawn < bound - tolerance_kw:
        # In its taper all through the reading: its mean draw is its state of charge at about the middle.
        after = drawn * float(length[prev]) / 2.0 / 3600.0 + taken_last
        at = taper_soc(drawn, full_kw)
    else:
        # At its bound: at most the state of charge where it can still draw that, at the reading's end.
        after = taken_last
        at = taper_soc(bound, full_kw)
    return float(min(at + max(after, 0.0) / battery_kwh, 1.0))


def session_battery_kwh(energy_kwh: Sequence[float], soc_pct: Sequence[float], *,
                        min_soc_span_pct: float = 20.0) -> float:
    """A session's battery (kWh) from the state of charge its CPO reported at the end of its readings: the energy
    taken between the first and the last reported state of charge over the span between them (at least
    ``min_soc_span_pct`` points, so that rounding does not matter); NaN where not reported over such a span."""
    energy, soc = np.asarray(energy_kwh, dtype=np.float64), np.asarray(soc_pct, dtype=np.float64)
    if energy.size != soc.size:
        raise ValueError("session_battery_kwh: energy and state of charge must have one entry per reading")
    known = np.flatnonzero(np.isfinite(soc))
    if known.size < 2:
        return math.nan
    first, last = int(known[0]), int(known[-1])
    span = float(soc[last] - soc[first]) / 100.0
    taken = float(np.nansum(energy[first + 1: last + 1]))
    if not span * 100.0 >= min_soc_span_pct or not taken > 0:
        return math.nan
    return taken / span


# A plugged-in car's battery from its own readings (``live_battery_kwh``): over at least this many points of
# reported state of charge (reported to 0.1 point: at most ~3 % off), final from ``FINAL_SOC_SPAN_PCT`` on; an
# estimate outside ``BATTERY_RANGE_KWH`` is taken as a bad reading and dropped.
LIVE_SOC_SPAN_PCT = 3.0
FINAL_SOC_SPAN_PCT = 20.0
BATTERY_RANGE_KWH = (10.0, 250.0)
# A need whose own end ``(soc + need) / battery`` is at or above this keeps the full-battery assumption: its taper's
# long tail on a small battery takes as long as the car's onboard power makes it, which is rarely seen before (the
# plan holds it below that power), and planned at 11 kW eight Golfs, Leafs and a Peugeot 208 ending full were short
# on the full demo; the taper of a full 60 kWh is the margin that met them before.
LIVE_END_BELOW = 0.95


def live_battery_kwh(energy_kwh: Sequence[float], soc_pct: Sequence[float], *,
                     min_soc_span_pct: float = LIVE_SOC_SPAN_PCT) -> float:
    """A plugged-in car's battery (kWh) from the readings it sent so far (``session_battery_kwh`` over a shorter
    span, at least ``min_soc_span_pct`` points); NaN where its CPO reports no state of charge, over too short a span,
    or where the estimate is not a plausible battery (``BATTERY_RANGE_KWH``).

    With it the service knows where the car's need ends, ``(soc + need) / battery``, instead of taking it to end
    full of the taper's assumed 60 kWh (the planner's, the position's and the need floors' ``need_end_soc``)."""
    battery = session_battery_kwh(energy_kwh, soc_pct, min_soc_span_pct=min_soc_span_pct)
    low, high = BATTERY_RANGE_KWH
    return battery if low <= battery <= high else math.nan


@dataclass(frozen=True)
class LearnedTargets:
    """Where each known car's and each pool's charging ends (fractions), learned from finished sessions."""

    by_car: dict[str, float] = field(default_factory=dict)
    by_pool: dict[str, float] = field(default_factory=dict)
    # The prior over every judged session (NaN: too few).
    overall: float = math.nan
    judged: int = 0
    # A small battery of the pool's cars (a low quantile of the batteries their reported states of charge show;
    # NaN or absent: the taper's assumed battery), and over all pools.
    small_battery_kwh: dict[str, float] = field(default_factory=dict)
    overall_small_battery_kwh: float = math.nan
    # The smallest plausible battery and least arrival state of charge (``small_car_ends_above``).
    smallest_battery_kwh: float = SMALLEST_BATTERY_KWH
    least_arrival_soc: float = LEAST_ARRIVAL_SOC

    def target(self, car_keys: Iterable[str | None], pool: str | None, energy_kwh: float = 0.0) -> float:
        """A session's target: its car's (the first of ``car_keys`` known), else its pool's prior, else the overall
        prior, else the full-battery assumption (``ASSUMED_TARGET_SOC``); never below the share of a small battery
        its whole energy ``energy_kwh`` fills (a car that takes much ends high: a learned target is where cars stop
        that had room for their need, and a car without it is the one that leaves short); and the full-battery
        assumption for a whole energy a car of the smallest plausible battery would end above the target with
        (``small_car_ends_above``)."""
        found = math.nan
        for key in car_keys:
            if key and key in self.by_car:
                found = self.by_car[key]
                break
        if math.isnan(found) and pool is not None and pool in self.by_pool:
            found = self.by_pool[pool]
        if math.isnan(found):
            found = self.overall if math.isfinite(self.overall) else ASSUMED_TARGET_SOC
        small = self.small_battery_kwh.get(pool or "", self.overall_small_battery_kwh)
        if not small > 0:
            small = ASSUMED_BATTERY_KWH
        energy = max(float(energy_kwh), 0.0) if math.isfinite(energy_kwh) else 0.0
        if small_car_ends_above(energy, found, self.smallest_battery_kwh, self.least_arrival_soc):
            return ASSUMED_TARGET_SOC
        return max(found, min(energy / small, ASSUMED_TARGET_SOC))


def small_car_ends_above(energy_kwh: float, target_soc: float, smallest_battery_kwh: float = SMALLEST_BATTERY_KWH,
                         least_arrival_soc: float = LEAST_ARRIVAL_SOC) -> bool:
    """Whether a session's whole energy could leave a car of the smallest plausible battery above ``target_soc``
    (it arrives with at least ``least_arrival_soc``): then its end is not what the cars that stopped on their own
    showed, and its taper is planned to full. With 32 kWh and 5 %: above ``(target - 0.05) x 32`` kWh (27.2 kWh for
    a target of 0.9)."""
    if not smallest_battery_kwh > 0 or not 0.0 <= least_arrival_soc < 1.0:
        raise ValueError(f"small_car_ends_above needs a positive battery and an arrival within [0, 1), got "
                         f"{smallest_battery_kwh}, {least_arrival_soc}")
    if not target_soc < ASSUMED_TARGET_SOC:
        return False
    return bool(least_arrival_soc + max(energy_kwh, 0.0) / smallest_battery_kwh > target_soc + 1e-9)


def _prior(values: Sequence[float], quantile: float, min_sessions: int, *, method: str = "higher") -> float:
    if len(values) < min_sessions:
        return math.nan
    return float(np.quantile(np.asarray(values, dtype=np.float64), quantile,
                             method="lower" if method == "lower" else "higher"))


def learn_targets(end_soc: Sequence[float], car_keys: Sequence[Sequence[str | None]], pools: Sequence[str | None],
                  *, battery_kwh: Sequence[float] | None = None, quantile: float = PRIOR_QUANTILE,
                  min_sessions: int = PRIOR_MIN_SESSIONS, smallest_battery_kwh: float = SMALLEST_BATTERY_KWH,
                  least_arrival_soc: float = LEAST_ARRIVAL_SOC) -> LearnedTargets:
    """Per car the highest end state of charge of its judged sessions (NaN: not judged), per pool and overall
    the ``quantile`` of its judged sessions once there are ``min_sessions``; each session's ``car_keys`` are the
    keys it is known by (token, home charge point), its pool the one its prior counts for. ``battery_kwh``: each
    session's battery where its states of charge showed it (``session_battery_kwh``; NaN: not), of which the
    ``1 - quantile`` quantile per pool and overall is the pool's small battery. ``smallest_battery_kwh`` and
    ``least_arrival_soc``: above what whole energy a learned target gives way to full (``small_car_ends_above``)."""
    batteries = [math.nan] * len(end_soc) if battery_kwh is None else list(battery_kwh)
    if not len(end_soc) == len(car_keys) == len(pools) == len(batteries):
        raise ValueError("learn_targets: end_soc, car_keys, pools and battery_kwh must have one entry per session")
    if not smallest_battery_kwh > 0 or not 0.0 <= least_arrival_soc < 1.0:
        raise ValueError(f"learn_targets: a positive smallest battery and a least arrival within [0, 1), got "
                         f"{smallest_battery_kwh}, {least_arrival_soc}")
    if not 0.0 <= quantile <= 1.0 or min_sessions < 1:
        raise ValueError(f"learn_targets: quantile within [0, 1] and min_sessions >= 1, got {quantile}, "
                         f"{min_sessions}")
    by_car: dict[str, float] = {}
    per_pool: dict[str, list[float]] = {}
    judged: list[float] = []
    for value, keys, pool in zip(end_soc, car_keys, pools, strict=True):
        if not math.isfinite(value):
            continue
        value = min(max(float(value), 0.0), 1.0)
        judged.append(value)
        for key in keys:
            if key:
                by_car[key] = max(by_car.get(key, 0.0), value)
        if pool is not None:
            per_pool.setdefault(pool, []).append(value)
    by_pool = {pool: p for pool, values in per_pool.items()
               if math.isfinite(p := _prior(values, quantile, min_sessions))}
    sizes: dict[str, list[float]] = {}
    for size, pool in zip(batteries, pools, strict=True):
        if math.isfinite(size) and size > 0:
            sizes.setdefault(pool or "", []).append(float(size))
    small = {pool: b for pool, values in sizes.items() if pool
             and math.isfinite(b := _prior(values, 1.0 - quantile, min_sessions, method="lower"))}
    every = [b for values in sizes.values() for b in values]
    return LearnedTargets(by_car=by_car, by_pool=by_pool, overall=_prior(judged, quantile, min_sessions),
                          judged=len(judged), small_battery_kwh=small,
                          overall_small_battery_kwh=_prior(every, 1.0 - quantile, min_sessions, method="lower"),
                          smallest_battery_kwh=smallest_battery_kwh, least_arrival_soc=least_arrival_soc)
