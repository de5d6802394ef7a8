"""KPIs of a run: the controlled day against uncontrolled charging of the same sessions."""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt

from vpp.algorithms.scheduling.hindsight import HindsightProblem, solve_hindsight
from vpp.algorithms.settlement import check_afrr_steps
from vpp.simulation.runner import V2G_MIN_SOC_PCT, RunResult, SessionRecord, uncontrolled_twin
from vpp.simulation.site_kpis import site_kpis

FloatArray = npt.NDArray[np.float64]
ISP = timedelta(minutes=15)
NEED_TOLERANCE_KWH = 0.1
LIMIT_TOLERANCE_KW = 0.5
# A §14a device is judged on its own 15-minute average against its curtailed power, to 10 W.
DEVICE_TOLERANCE_KW = 0.01
# aFRR tracking (issue 6's goal): after the full activation time, the response within 5 % of the setpoint.
AFRR_FULL_ACTIVATION_S = 300.0
AFRR_TOLERANCE = 0.05


@dataclass(frozen=True)
class Series:
    """Per-ISP series of the delivery period (kW averages) and the aFRR steps, for KPIs and plots."""

    isp_starts: list[datetime]
    controlled_kw: FloatArray
    uncontrolled_kw: FloatArray
    prices_eur_per_mwh: FloatArray
    point_kw: dict[str, FloatArray]
    point_uncontrolled_kw: dict[str, FloatArray]
    point_limit_kw: dict[str, FloatArray]
    afrr_at: list[datetime]
    afrr_setpoint_mw: FloatArray
    afrr_supplied_mw: FloatArray
    afrr_ramped_mw: FloatArray
    afrr_flagged: npt.NDArray[np.bool_]
    # Steps a full activation time or more after the setpoint became non-zero (and it still is).
    afrr_scored: npt.NDArray[np.bool_] = field(default_factory=lambda: np.zeros(0, dtype=bool))
    # §14a: per curtailed device, its ISP load controlled and uncontrolled and the power it was curtailed to.
    device_kw: dict[tuple[str, str], FloatArray] = field(default_factory=dict)
    device_uncontrolled_kw: dict[tuple[str, str], FloatArray] = field(default_factory=dict)
    device_cap_kw: dict[tuple[str, str], FloatArray] = field(default_factory=dict)
    # The ISPs run from the delivery start to the last departure of its sessions; the first ``window_isps`` are
    # the delivery period itself (the scenario's days or window), the rest its sessions' follow period.
    window_isps: int = 0
    # The pool's committed day-ahead schedule (NaN where none) and the perfect-foresight optimum's power.
    committed_kw: FloatArray = field(default_factory=lambda: np.zeros(0))
    perfect_foresight_kw: FloatArray = field(default_factory=lambda: np.zeros(0))
    perfect_foresight_cost_eur: float = math.nan


def _isp_index(result: RunResult) -> list[datetime]:
    """The delivery ISPs and then those of the follow period, up to the last departure."""
    start = result.timeline.delivery_start.astimezone(UTC)
    end = max(result.timeline.end.astimezone(UTC), result.follow_end or start)
    return [start + k * ISP for k in range(math.ceil((end - start) / ISP))]


def _follow_end(result: RunResult) -> datetime:
    """When the run stopped following the delivery period's sessions (at the period's end at the earliest)."""
    end = result.timeline.end.astimezone(UTC)
    return max(end, result.follow_end or end)


def _window_isps(result: RunResult) -> int:
    return int((result.timeline.end - result.timeline.delivery_start) / ISP)


def in_period(record: SessionRecord, result: RunResult) -> bool:
    """A session of the delivery period: plugged in at some moment of it (then followed until it left)."""
    tl = result.timeline
    return record.start < tl.end.astimezone(UTC) and record.departure > tl.delivery_start.astimezone(UTC)


def _twin(record: SessionRecord) -> list[tuple[datetime, float]]:
    """The record's uncontrolled twin, computed once per record."""
    if record.twin is None:
        record.twin = uncontrolled_twin(record)
    return record.twin


def _floor_isp(at: datetime) -> datetime:
    return at - timedelta(seconds=at.timestamp() % 900, microseconds=at.microsecond)


def build_series(result: RunResult) -> Series:
    """Aggregate the step log and the uncontrolled twins onto the delivery ISPs."""
    isps = _isp_index(result)
    position = {t: k for k, t in enumerate(isps)}
    n = len(isps)
    controlled = np.zeros(n)
    points = {p: np.zeros(n) for p in result.point_members}
    devices = {d: np.zeros(n) for d in result.device_caps}
    for k, start in enumerate(result.log.starts):
        i = position.get(_floor_isp(start.astimezone(UTC)))
        if i is None:
            continue
        controlled[i] += result.log.total_kwh[k]
        for point in points:
            points[point][i] += result.log.point_kwh[point][k]
        for device, device_isps in devices.items():
            steps = result.log.device_kwh.get(device, [])
            device_isps[i] += steps[k] if k < len(steps) else 0.0
    uncontrolled = np.zeros(n)
    points_unc = {p: np.zeros(n) for p in result.point_members}
    member_points: dict[tuple[str, str], list[str]] = {}
    for point, members in result.point_members.items():
        for member in members:
            member_points.setdefault(member, []).append(point)
    devices_unc = {d: np.zeros(n) for d in result.device_caps}
    for record in result.sessions:
        record_points = member_points.get((record.party, record.location_id), [])
        device_unc = devices_unc.get((record.party, record.location_id))
        for at, kwh in _twin(record):
            i = position.get(_floor_isp(at.astimezone(UTC)))
            if i is None:
                continue
            uncontrolled[i] += kwh
            for point in record_points:
                points_unc[point][i] += kwh
            if device_unc is not None:
                device_unc[i] += kwh
    limits = {p: np.full(n, np.nan) for p in result.point_members}
    for point, windows in result.point_limits.items():
        limits[point] = _caps_on(isps, windows)
    device_caps = {d: _caps_on(isps, windows) for d, windows in result.device_caps.items()}
    prices = np.array([result.prices.get(t, np.nan) for t in isps])
    afrr_at, setpoint, supplied, ramped, flagged = _afrr(result)
    scored = _after_full_activation(afrr_at, setpoint)
    committed = np.array([result.committed_kw.get(t, np.nan) for t in isps])
    hindsight = solve_hindsight(hindsight_problem(result, isps, np.nan_to_num(prices)))
    return Series(isp_starts=isps, controlled_kw=controlled * 4, uncontrolled_kw=uncontrolled * 4,
                  prices_eur_per_mwh=prices, point_kw={p: v * 4 for p, v in points.items()},
                  point_uncontrolled_kw={p: v * 4 for p, v in points_unc.items()}, point_limit_kw=limits,
                  afrr_at=afrr_at, afrr_setpoint_mw=setpoint, afrr_supplied_mw=supplied, afrr_ramped_mw=ramped,
                  afrr_flagged=flagged, afrr_scored=scored, device_kw={d: v * 4 for d, v in devices.items()},
                  device_uncontrolled_kw={d: v * 4 for d, v in devices_unc.items()}, device_cap_kw=device_caps,
                  window_isps=_window_isps(result), committed_kw=committed, perfect_foresight_kw=hindsight.pool_kw,
                  perfect_foresight_cost_eur=hindsight.cost_eur)


def hindsight_problem(result: RunResult, isps: list[datetime], prices: FloatArray) -> HindsightProblem:
    """The delivery period's sessions with the energy their uncontrolled twins took from its start, their
    plugged-in share of each ISP, the scenario's caps (points, sites, §14a devices) and prices."""
    start = isps[0] if isps else result.timeline.delivery_start.astimezone(UTC)
    records = [r for r in result.sessions if in_period(r, result)]
    n, t = len(records), len(isps)
    available = np.zeros((n, t))
    energy = np.zeros(n)
    max_kw = np.zeros(n)
    min_kw = np.zeros(n)
    low = np.full(n, np.nan)
    high = np.full(n, np.nan)
    begin = start.timestamp()
    for k, record in enumerate(records):
        plugged = (max(record.start, start).timestamp() - begin) / ISP.total_seconds()
        unplugged = min((record.departure.timestamp() - begin) / ISP.total_seconds(), float(t))
        edges = np.arange(t, dtype=np.float64)
        available[k] = np.clip(np.minimum(edges + 1, unplugged) - np.maximum(edges, plugged), 0.0, 1.0)
        before = sum(kwh for at, kwh in _twin(record) if at < start)
        energy[k] = sum(kwh for at, kwh in _twin(record) if at >= start)
        model = record.car.model
        max_kw[k] = min(record.evse_max_kw, model.max_dc_kw if record.dc else model.max_ac_kw)
        if record.v2g:
            min_kw[k] = -min(record.evse_max_kw, model.max_dc_discharge_kw if record.dc
                             else model.max_ac_discharge_kw)
            soc_kwh = record.car.soc * model.battery_kwh + before
            low[k] = min(0.0, V2G_MIN_SOC_PCT / 100.0 * model.battery_kwh - soc_kwh)
            high[k] = max(energy[k], model.battery_kwh - soc_kwh)
    position = {(r.party, r.location_id): [] for r in records}  # type: dict[tuple[str, str], list[int]]
    for k, record in enumerate(records):
        position[(record.party, record.location_id)].append(k)
    groups: list[npt.NDArray[np.int64]] = []
    caps: list[FloatArray] = []

    def add(members: list[int], cap: FloatArray) -> None:
        cap = np.where(np.isnan(cap), np.inf, cap)
        if members and np.isfinite(cap).any():
            groups.append(np.array(sorted(members), dtype=np.int64))
            caps.append(cap)

    for point, members in result.point_members.items():
        add([k for m in members for k in position.get(m, [])], _caps_on(isps, result.point_limits.get(point, [])))
    for device, windows in result.device_caps.items():
        add(position.get(device, []), _caps_on(isps, windows))
    for site, cap_kw in result.site_caps.items():
        add(position.get(site, []), np.full(t, cap_kw))
    return HindsightProblem(
        isp_hours=ISP.total_seconds() / 3600.0, prices_eur_per_mwh=prices, available=available, energy_kwh=energy,
        max_kw=max_kw, min_kw=min_kw, energy_low_kwh=low, energy_high_kwh=high, group_members=tuple(groups),
        group_cap_kw=np.array(caps).reshape(len(caps), t) if caps else None)


def _caps_on(isps: list[datetime], windows: list[tuple[datetime, datetime, float]]) -> FloatArray:
    """Per ISP, the lowest cap of the windows holding it (NaN outside every window)."""
    caps = np.full(len(isps), np.nan)
    for low, high, cap in windows:
        for k, t in enumerate(isps):
            if low <= t < high:
                caps[k] = cap if math.isnan(caps[k]) else min(caps[k], cap)
    return caps


def curtailment_compliance(load_kw: dict[tuple[str, str], FloatArray], caps_kw: dict[tuple[str, str], FloatArray]
                           ) -> tuple[int, float | None]:
    """§14a compliance per device: of the (device, ISP) pairs under a curtailment in which the device charged,
    how many, and the share (%) whose 15-minute average stayed within the curtailed power."""
    charging = within = 0
    for device, caps in caps_kw.items():
        load = load_kw[device]
        curtailed = ~np.isnan(caps) & (load > 1e-6)
        charging += int(np.sum(curtailed))
        within += int(np.sum(curtailed & (load <= np.nan_to_num(caps) + DEVICE_TOLERANCE_KW)))
    return charging, (round(100.0 * within / charging, 1) if charging else None)


def _after_full_activation(at: list[datetime], setpoint: FloatArray) -> npt.NDArray[np.bool_]:
    """Steps whose setpoint has been the same non-zero direction for at least the full activation time."""
    scored = np.zeros(len(at), dtype=bool)
    since: datetime | None = None
    for k, moment in enumerate(at):
        if setpoint[k] == 0.0 or (k and np.sign(setpoint[k]) != np.sign(setpoint[k - 1])):
            since = None if setpoint[k] == 0.0 else moment
            continue
        since = since or moment
        scored[k] = (moment - since).total_seconds() >= AFRR_FULL_ACTIVATION_S
    return scored


def _afrr(result: RunResult) -> tuple[list[datetime], FloatArray, FloatArray, FloatArray, npt.NDArray[np.bool_]]:
    rows = result.log.afrr
    empty = np.zeros(0)
    if not rows:
        return [], empty, empty, empty, np.zeros(0, dtype=bool)
    measured_by_start = {start: result.log.total_kwh[k] * 3600.0 / result.log.seconds[k] / 1000.0
                         for k, start in enumerate(result.log.starts) if result.log.seconds[k] > 0}
    baseline_by_step: dict[datetime, float] = {}
    for item in result.activation_check.get("responses", []):
        at = datetime.fromisoformat(str(item["at"]).replace("Z", "+00:00"))
        baseline_by_step[at.astimezone(UTC)] = float(item["baseline_kw"]) / 1000.0
    at_list = [row["at"] for row in rows]
    setpoint = np.array([row["setpoint_mw"] for row in rows], dtype=np.float64)
    measured = np.array([measured_by_start.get(t, np.nan) for t in at_list], dtype=np.float64)
    baseline = np.array([baseline_by_step.get(t, baseline_by_step.get(t + timedelta(seconds=4), np.nan))
                         for t in at_list], dtype=np.float64)
    # The TSO's request is what the intake applied (clipped to the award).
    # The award is in the scenario's one direction, so clipping both ways to it is the intake's clip.
    awarded = result.afrr_awarded_mw
    applied = np.clip(setpoint, -awarded, awarded) if awarded > 0 else np.zeros_like(setpoint)
    steps = check_afrr_steps(applied, measured, baseline)
    return at_list, applied, steps.supplied_mw, steps.ramped_mw, steps.flagged


def _price_paid(cost_eur: float, energy_kwh: float) -> float | None:
    return round(1000.0 * cost_eur / energy_kwh, 2) if energy_kwh > 1e-6 else None


def _saving_pct(before: float, after: float) -> float | None:
    return round(100.0 * (before - after) / before, 2) if before > 0 else None


def price_capture_pct(uncontrolled: float | None, controlled: float | None,
                      perfect_foresight: float | None) -> float | None:
    """Share (%) of the reachable fall in the price paid that control achieved: 100 x (uncontrolled - controlled)
    / (uncontrolled - perfect foresight); None where the optimum is no cheaper than uncontrolled charging."""
    if uncontrolled is None or controlled is None or perfect_foresight is None:
        return None
    reachable = uncontrolled - perfect_foresight
    if reachable <= 1e-9:
        return None
    return round(100.0 * (uncontrolled - controlled) / reachable, 1)


def dayahead_imbalance_pct(delivered_kw: FloatArray, committed_kw: FloatArray) -> float | None:
    """Sum over the committed ISPs of |delivered - committed| energy, as a share (%) of the committed energy."""
    committed = ~np.isnan(committed_kw)
    total = float(np.sum(np.abs(committed_kw[committed])))
    if not committed.any() or total <= 1e-9:
        return None
    return round(100.0 * float(np.sum(np.abs(delivered_kw[committed] - committed_kw[committed]))) / total, 2)


@dataclass(frozen=True)
class SessionOutcome:
    """One session of the delivery period, judged as ``needs_met_pct`` judges it (kWh; state of charge in %)."""

    party: str
    location_id: str
    session_id: str
    arrival: datetime
    departure: datetime
    car_model: str
    battery_kwh: float
    evse_max_kw: float
    dc: bool
    v2g: bool
    need_kwh: float
    deliverable_kwh: float
    delivered_kwh: float
    soc_arrival_pct: float
    feasible: bool
    met: bool

    @property
    def short_kwh(self) -> float:
        """How much of what it could have had the car left without (0 when met or not feasible)."""
        if not self.feasible or self.met:
            return 0.0
        return max(min(self.need_kwh, self.deliverable_kwh) - self.delivered_kwh, 0.0)


def session_outcomes(result: RunResult) -> list[SessionOutcome]:
    """Every session of the delivery period that left before the run stopped (the run follows them past the
    period), with what its uncontrolled twin could deliver (``deliverable_kwh``; under a device curtailment, at
    most what full power within the cap delivers), whether its need was feasible (the twin delivers it, within
    ``NEED_TOLERANCE_KWH``) and whether it was met (within the tolerance and 1 %)."""
    follow_end = _follow_end(result)
    out: list[SessionOutcome] = []
    for record in result.sessions:
        if not in_period(record, result) or record.departure > follow_end:
            continue
        deliverable = sum(kwh for _, kwh in _twin(record))
        caps = result.device_caps.get((record.party, record.location_id))
        if caps:
            # Under a DSO's curtailment of its device (§14a) no control can give the car more than full power
            # within the cap: a need beyond that is not feasible (home-14a: a Kia Niro at 5 % plugged in as the
            # 4.2-kW window began took 60.06 of its 61.56 kWh, drawing full power whenever the cap let it).
            deliverable = min(deliverable, sum(kwh for _, kwh in uncontrolled_twin(record, caps=caps)))
        required = min(record.need_kwh, deliverable)
        feasible = deliverable + NEED_TOLERANCE_KWH >= record.need_kwh
        met = feasible and record.delivered_kwh >= required - NEED_TOLERANCE_KWH - 0.01 * required
        out.append(SessionOutcome(
            party=record.party, location_id=record.location_id, session_id=record.external_id,
            arrival=record.start, departure=record.departure, car_model=record.car.model.name,
            battery_kwh=record.car.model.battery_kwh, evse_max_kw=record.evse_max_kw, dc=record.dc, v2g=record.v2g,
            need_kwh=record.need_kwh, deliverable_kwh=deliverable, delivered_kwh=record.delivered_kwh,
            soc_arrival_pct=100.0 * record.car.soc, feasible=feasible, met=met))
    return out


SESSION_COLUMNS = ("party", "location_id", "session_id", "arrival", "departure", "car_model", "battery_kwh",
                   "evse_max_kw", "dc", "v2g", "need_kwh", "deliverable_kwh", "delivered_kwh", "short_kwh",
                   "soc_arrival_pct", "feasible", "met")


def sessions_csv(outcomes: list[SessionOutcome]) -> str:
    """The outcomes as CSV (``sessions.csv`` beside kpis.json): one row per session, times in UTC ISO 8601."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(SESSION_COLUMNS)
    for o in outcomes:
        row: list[object] = []
        for column in SESSION_COLUMNS:
            value = getattr(o, column)
            if isinstance(value, datetime):
                value = value.astimezone(UTC).isoformat()
            elif isinstance(value, float):
                value = round(value, 3)
            elif isinstance(value, bool):
                value = int(value)
            row.append(value)
        writer.writerow(row)
    return buffer.getvalue()


def compute_kpis(result: RunResult, series: Series | None = None) -> dict[str, Any]:
    """The KPI dictionary written to kpis.json.

    Energy, cost, price paid and peak are like for like: the sessions of the delivery period, from its start
    until each has left (the run follows them past the period's end), controlled, uncontrolled and with perfect
    foresight. The ``*_window`` figures are the same inside the delivery period alone, where energy deferred
    past its end looks like a saving.
    """
    series = series or build_series(result)
    tl = result.timeline
    start, end = tl.delivery_start.astimezone(UTC), tl.end.astimezone(UTC)
    prices = np.nan_to_num(series.prices_eur_per_mwh)
    energy = series.controlled_kw / 4
    energy_unc = series.uncontrolled_kw / 4
    cost = float(np.sum(energy * prices) / 1000.0)
    cost_unc = float(np.sum(energy_unc * prices) / 1000.0)
    peak = float(series.controlled_kw.max()) if series.controlled_kw.size else 0.0
    peak_unc = float(series.uncontrolled_kw.max()) if series.uncontrolled_kw.size else 0.0
    w = series.window_isps or len(series.isp_starts)
    cost_window = float(np.sum(energy[:w] * prices[:w]) / 1000.0)
    cost_unc_window = float(np.sum(energy_unc[:w] * prices[:w]) / 1000.0)
    peak_window = float(series.controlled_kw[:w].max()) if w else 0.0
    peak_unc_window = float(series.uncontrolled_kw[:w].max()) if w else 0.0
    cost_pf = series.perfect_foresight_cost_eur
    has_pf = series.perfect_foresight_kw.size > 0 and math.isfinite(cost_pf)
    energy_pf = float(np.sum(series.perfect_foresight_kw) / 4)
    price = _price_paid(cost, float(energy.sum()))
    price_unc = _price_paid(cost_unc, float(energy_unc.sum()))
    price_pf = _price_paid(cost_pf, energy_pf) if has_pf else None
    follow_end = _follow_end(result)
    outcomes = session_outcomes(result)
    feasible = sum(o.feasible for o in outcomes)
    met = sum(o.met for o in outcomes)
    violations = 0
    worst_excess_kw = 0.0
    for point, limit in series.point_limit_kw.items():
        load = series.point_kw[point]
        over = np.where(np.isnan(limit), 0.0, load - limit)
        violations += int(np.sum(over > LIMIT_TOLERANCE_KW))
        worst_excess_kw = max(worst_excess_kw, float(over.max()) if over.size else 0.0)
    unc_violations = sum(int(np.sum(np.where(np.isnan(lim), 0.0, series.point_uncontrolled_kw[p] - lim)
                                    > LIMIT_TOLERANCE_KW)) for p, lim in series.point_limit_kw.items())
    active = np.abs(series.afrr_ramped_mw) > 1e-9
    afrr_flagged_pct: float | None = None
    if active.any():
        afrr_flagged_pct = round(100.0 * float(np.sum(series.afrr_flagged & active)) / float(np.sum(active)), 1)
    afrr_pct: float | None = None
    scored = series.afrr_scored
    if scored.any():
        error = np.abs(series.afrr_supplied_mw[scored] - series.afrr_setpoint_mw[scored])
        within = error <= AFRR_TOLERANCE * np.abs(series.afrr_setpoint_mw[scored])
        afrr_pct = round(100.0 * float(np.mean(within)), 1)
    curtailed_isps, compliance = curtailment_compliance(series.device_kw, series.device_cap_kw)
    curtailed_isps_unc, compliance_unc = curtailment_compliance(series.device_uncontrolled_kw, series.device_cap_kw)
    days = (end - start).total_seconds() / 86400.0
    saving = cost_unc - cost + result.afrr_capacity_revenue_eur
    flex_value = saving / max(result.chargers, 1) * (365.25 / 12.0) / days
    responses = result.activation_check.get("responses", [])
    return {
        "scenario": result.scenario.name,
        "delivery_start": start.isoformat(),
        "days": days,
        "chargers": result.chargers,
        "sessions": len(result.sessions),
        "sessions_in_delivery": sum(1 for r in result.sessions if r.start < end and r.departure > start),
        "sessions_judged": len(outcomes),
        "sessions_feasible": feasible,
        "needs_met_pct": round(100.0 * met / feasible, 2) if feasible else None,
        "follow_end": follow_end.isoformat(),
        "energy_delivered_kwh": round(float(energy.sum()), 1),
        "energy_uncontrolled_kwh": round(float(energy_unc.sum()), 1),
        "energy_perfect_foresight_kwh": round(energy_pf, 1) if has_pf else None,
        "cost_eur_uncontrolled": round(cost_unc, 2),
        "cost_eur": round(cost, 2),
        "cost_eur_perfect_foresight": round(cost_pf, 2) if has_pf else None,
        "cost_saving_pct": _saving_pct(cost_unc, cost),
        "cost_saving_pct_perfect_foresight": _saving_pct(cost_unc, cost_pf) if has_pf else None,
        "price_paid_eur_per_mwh": price,
        "price_paid_eur_per_mwh_uncontrolled": price_unc,
        "price_paid_eur_per_mwh_perfect_foresight": price_pf,
        "price_paid_reduction_pct": _saving_pct(price_unc, price) if price is not None and price_unc else None,
        "price_capture_pct": price_capture_pct(price_unc, price, price_pf),
        "dayahead_imbalance_pct": dayahead_imbalance_pct(series.controlled_kw, series.committed_kw)
        if series.committed_kw.size == series.controlled_kw.size else None,
        # Kept for readers of earlier kpis.json: the same figures as price_paid_eur_per_mwh*.
        "avg_price_eur_per_mwh_uncontrolled": price_unc,
        "avg_price_eur_per_mwh": price,
        "peak_kw_uncontrolled": round(peak_unc, 1),
        "peak_kw": round(peak, 1),
        "peak_kw_perfect_foresight": round(float(series.perfect_foresight_kw.max()), 1) if has_pf else None,
        "peak_reduction_pct": _saving_pct(peak_unc, peak),
        # The delivery period alone: energy deferred past its end leaves these figures, so they flatter control.
        "energy_delivered_kwh_window": round(float(energy[:w].sum()), 1),
        "energy_uncontrolled_kwh_window": round(float(energy_unc[:w].sum()), 1),
        "cost_eur_window": round(cost_window, 2),
        "cost_eur_uncontrolled_window": round(cost_unc_window, 2),
        "cost_saving_pct_window": _saving_pct(cost_unc_window, cost_window),
        "peak_kw_window": round(peak_window, 1),
        "peak_kw_uncontrolled_window": round(peak_unc_window, 1),
        "peak_reduction_pct_window": _saving_pct(peak_unc_window, peak_window),
        "congestion_violation_isps": violations,
        "congestion_violation_isps_uncontrolled": unc_violations,
        "congestion_worst_excess_kw": round(worst_excess_kw, 2),
        # §14a: per curtailed device and ISP in which it charged, its average within the curtailed power.
        "curtailment_device_isps": curtailed_isps,
        "curtailment_compliance_pct": compliance,
        "curtailment_device_isps_uncontrolled": curtailed_isps_unc,
        "curtailment_compliance_pct_uncontrolled": compliance_unc,
        "afrr_offered_mw": result.afrr_offered_mw,
        "afrr_awarded_mw": result.afrr_awarded_mw,
        "afrr_setpoints_sent": result.activation_check.get("setpoints_sent", 0),
        "afrr_steps_recorded": len(responses),
        "afrr_steps_scored": int(np.sum(scored)),
        "afrr_steps_within_tolerance_pct": afrr_pct,
        # The settlement check (vpp.algorithms.settlement.check_afrr_steps): short of the 300-s ramp's 5 % band.
        "afrr_steps_short_of_ramp_pct": afrr_flagged_pct,
        "afrr_capacity_revenue_eur": round(result.afrr_capacity_revenue_eur, 2),
        "flex_value_eur_per_charger_month": round(flex_value, 2),
        **site_kpis(result),
        "wall_seconds": round(result.wall_seconds, 1),
        "notes": result.notes,
    }


KPI_ROWS = [
    ("needs_met_pct", "needs met (%)"),
    ("energy_delivered_kwh", "energy delivered (kWh)"),
    ("energy_uncontrolled_kwh", "energy uncontrolled (kWh)"),
    ("cost_eur_uncontrolled", "cost uncontrolled (EUR)"),
    ("cost_eur", "cost controlled (EUR)"),
    ("cost_eur_perfect_foresight", "cost perfect foresight (EUR)"),
    ("cost_saving_pct", "cost saving (%)"),
    ("price_paid_eur_per_mwh_uncontrolled", "price paid uncontrolled (EUR/MWh)"),
    ("price_paid_eur_per_mwh", "price paid controlled (EUR/MWh)"),
    ("price_paid_eur_per_mwh_perfect_foresight", "price paid perfect foresight (EUR/MWh)"),
    ("price_capture_pct", "price capture (%)"),
    ("dayahead_imbalance_pct", "day-ahead imbalance (%)"),
    ("peak_kw_uncontrolled", "peak uncontrolled (kW)"),
    ("peak_kw", "peak controlled (kW)"),
    ("peak_reduction_pct", "peak reduction (%)"),
    ("congestion_violation_isps", "congestion violations (ISPs)"),
    ("curtailment_compliance_pct", "§14a device compliance (%)"),
    ("afrr_steps_within_tolerance_pct", "aFRR steps within tolerance (%)"),
    ("flex_value_eur_per_charger_month", "flex value (EUR/charger/month)"),
]


def kpi_table(kpis: dict[str, Any]) -> str:
    """The KPIs as a plain-text table."""
    width = max(len(label) for _, label in KPI_ROWS)
    lines = [f"{'scenario':<{width}}  {kpis['scenario']}",
             f"{'sessions (chargers)':<{width}}  {kpis['sessions_in_delivery']} ({kpis['chargers']})"]
    for key, label in KPI_ROWS:
        value = kpis.get(key)
        lines.append(f"{label:<{width}}  {'n/a' if value is None else value}")
    lines.append(f"{'wall time (s)':<{width}}  {kpis['wall_seconds']}")
    return "\n".join(lines)
