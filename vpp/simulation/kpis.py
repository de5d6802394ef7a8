"""KPIs of a run: the controlled day against uncontrolled charging of the same sessions."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt

from vpp.algorithms.settlement import check_afrr_steps
from vpp.simulation.runner import RunResult, uncontrolled_twin

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
    # The day-ahead commitment per ISP (kW, NaN where none) and the perfect-foresight optimum's pool power (kW).
    committed_kw: FloatArray = field(default_factory=lambda: np.zeros(0))
    perfect_foresight_kw: FloatArray = field(default_factory=lambda: np.zeros(0))


def _isp_index(result: RunResult) -> list[datetime]:
    start = result.timeline.delivery_start.astimezone(UTC)
    end = result.timeline.end.astimezone(UTC)
    return [start + k * ISP for k in range(int((end - start) / ISP))]


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
        for at, kwh in uncontrolled_twin(record):
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
    return Series(isp_starts=isps, controlled_kw=controlled * 4, uncontrolled_kw=uncontrolled * 4,
                  prices_eur_per_mwh=prices, point_kw={p: v * 4 for p, v in points.items()},
                  point_uncontrolled_kw={p: v * 4 for p, v in points_unc.items()}, point_limit_kw=limits,
                  afrr_at=afrr_at, afrr_setpoint_mw=setpoint, afrr_supplied_mw=supplied, afrr_ramped_mw=ramped,
                  afrr_flagged=flagged, afrr_scored=scored, device_kw={d: v * 4 for d, v in devices.items()},
                  device_uncontrolled_kw={d: v * 4 for d, v in devices_unc.items()}, device_cap_kw=device_caps)


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


def compute_kpis(result: RunResult, series: Series | None = None) -> dict[str, Any]:
    """The KPI dictionary written to kpis.json."""
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

    judged = [r for r in result.sessions if start < r.departure <= end]
    feasible = met = 0
    for record in judged:
        deliverable = sum(kwh for _, kwh in uncontrolled_twin(record))
        required = min(record.need_kwh, deliverable)
        if deliverable + NEED_TOLERANCE_KWH < record.need_kwh:
            continue
        feasible += 1
        if record.delivered_kwh >= required - NEED_TOLERANCE_KWH - 0.01 * required:
            met += 1
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
        "sessions_judged": len(judged),
        "sessions_feasible": feasible,
        "needs_met_pct": round(100.0 * met / feasible, 2) if feasible else None,
        "energy_delivered_kwh": round(float(energy.sum()), 1),
        "energy_uncontrolled_kwh": round(float(energy_unc.sum()), 1),
        "cost_eur_uncontrolled": round(cost_unc, 2),
        "cost_eur": round(cost, 2),
        "cost_saving_pct": round(100.0 * (cost_unc - cost) / cost_unc, 2) if cost_unc > 0 else None,
        # Energy deferred past the end of the period lowers the cost too; the average price paid does not.
        "avg_price_eur_per_mwh_uncontrolled": round(1000.0 * cost_unc / float(energy_unc.sum()), 2)
        if energy_unc.sum() > 0 else None,
        "avg_price_eur_per_mwh": round(1000.0 * cost / float(energy.sum()), 2) if energy.sum() > 0 else None,
        "peak_kw_uncontrolled": round(peak_unc, 1),
        "peak_kw": round(peak, 1),
        "peak_reduction_pct": round(100.0 * (peak_unc - peak) / peak_unc, 2) if peak_unc > 0 else None,
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
        "wall_seconds": round(result.wall_seconds, 1),
        "notes": result.notes,
    }


KPI_ROWS = [
    ("needs_met_pct", "needs met (%)"),
    ("energy_delivered_kwh", "energy delivered (kWh)"),
    ("cost_eur_uncontrolled", "cost uncontrolled (EUR)"),
    ("cost_eur", "cost controlled (EUR)"),
    ("cost_saving_pct", "cost saving (%)"),
    ("avg_price_eur_per_mwh_uncontrolled", "avg price paid uncontrolled (EUR/MWh)"),
    ("avg_price_eur_per_mwh", "avg price paid controlled (EUR/MWh)"),
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
