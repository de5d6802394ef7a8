"""Session flexibility envelopes, pool aggregation with guaranteed bounds, and exact disaggregation.

Pool model (inner approximation, see ``LagModel``): every flexible member charges along its own nominal
ramp (its need spread evenly from plug-in until ``max_lag_h`` before departure) evaluated at ONE
pool-wide virtual time ``s``. The pool trajectory fixes ``s`` (the pool's cumulative flexible energy is
the increasing function B(s) = sum of the ramps), so the split is unique and exact. Publishing

* cumulative energy between B(t - max_lag) and B(t)           -> lag 0..max_lag, so every need is met;
* power between 0 and min over the reachable lags of B(s + catch_up * ISP) - B(s) -> ``s`` advances at
  most ``catch_up`` ISPs per ISP, so no member exceeds nominal_kw * catch_up <= max_kw;

guarantees that any pool trajectory inside the bounds is deliverable. Members that cannot be pooled this
way (short or tight sessions, unmet needs, sites whose cap would be at risk) are rigid: they follow
their uncontrolled baseline, which is added to both power bounds. Optional extra energy stays in the
per-session envelopes. V2G discharge is offered as power (``discharge_kw``): what each car can give back for
a stated time above its state-of-charge floor while full power afterwards still meets its need.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vpp.domain.errors import InvalidInput
from vpp.domain.flexibility import (
    EnvelopeArrays,
    LagModel,
    PoolFlexibility,
    SessionEnvelopes,
    SessionFlexInput,
)
from vpp.domain.isp import ISP_HOURS, IspHorizon

DT_H = ISP_HOURS
_EPS_KWH = 1e-9
_SUBSTEPS = 6


def build_envelopes(sessions: SessionFlexInput, horizon: IspHorizon) -> SessionEnvelopes:
    """Compact per-session envelopes over ``horizon``: windows, required/deliverable energy, unmet flags."""
    start_h = np.maximum(horizon.hours_since_start(sessions.plugged_in), 0.0)
    departure_h = horizon.hours_since_start(sessions.departure)
    window_h = np.maximum(departure_h - start_h, 0.0)
    requested = sessions.energy_kwh
    soc_known = ~np.isnan(sessions.soc_kwh)
    battery_known = ~np.isnan(sessions.battery_kwh)
    # Without a known SoC we offer no energy beyond the stated need: the battery might be full.
    headroom = np.where(soc_known & battery_known, np.maximum(sessions.battery_kwh - sessions.soc_kwh, 0.0), requested)
    deliverable = np.minimum(headroom, sessions.max_kw * window_h)
    unmet = requested > deliverable + _EPS_KWH
    required = np.minimum(requested, deliverable)
    # Without a known SoC a V2G car may only give back what it received inside the horizon.
    floor_kwh = np.where(soc_known, np.minimum(0.0, sessions.min_soc_kwh - sessions.soc_kwh), 0.0)
    return SessionEnvelopes(
        horizon=horizon,
        start_h=start_h,
        departure_h=departure_h,
        max_kw=sessions.max_kw.copy(),
        min_kw=sessions.min_kw.copy(),
        energy_requested_kwh=requested.copy(),
        energy_required_kwh=required,
        energy_max_kwh=deliverable,
        headroom_kwh=headroom,
        floor_kwh=floor_kwh,
        unmet=unmet,
        shortfall_kwh=requested - required,
    )


def envelope_arrays(
    env: SessionEnvelopes, index: np.ndarray | None = None, *, dtype: type[np.floating[Any]] = np.float32
) -> EnvelopeArrays:
    """Dense per-ISP envelopes for sessions ``index`` (all when None); vectorised, four (n, T) arrays."""
    rows = np.arange(env.n) if index is None else np.asarray(index, dtype=np.int64)
    n, t = rows.size, env.horizon.count
    start_h, window_h = env.start_h[rows], env.window_h[rows]
    max_kw, min_kw, required = env.max_kw[rows], env.min_kw[rows], env.energy_required_kwh[rows]
    floor_kwh, headroom = env.floor_kwh[rows], env.headroom_kwh[rows]
    ends_h = (np.arange(1, t + 1) * DT_H).astype(dtype)
    col = (slice(None), None)
    # full_kwh = energy at max power since plug-in, per ISP end; every other array derives from it
    full_kwh = np.subtract(ends_h[None, :], start_h.astype(dtype)[col])
    np.maximum(full_kwh, 0, out=full_kwh)
    np.minimum(full_kwh, window_h.astype(dtype)[col], out=full_kwh)
    np.multiply(full_kwh, max_kw.astype(dtype)[col], out=full_kwh)
    p_max = _diff_rows(full_kwh, 1.0 / DT_H)
    discharging = bool(np.any(min_kw < 0))
    ratio = np.zeros(n)
    np.divide(min_kw, max_kw, out=ratio, where=max_kw > 0)
    p_min = p_max * ratio.astype(dtype)[col] if discharging else np.zeros((n, t), dtype)
    e_min = np.add(full_kwh, (required - max_kw * window_h).astype(dtype)[col])
    if discharging or np.any(floor_kwh < 0):
        lowest = full_kwh * ratio.astype(dtype)[col]
        np.maximum(lowest, floor_kwh.astype(dtype)[col], out=lowest)
        np.maximum(e_min, lowest, out=e_min)
    else:
        np.maximum(e_min, 0, out=e_min)
    # baseline energy in ISP k = clip(need - full_{k-1}, 0, full_k - full_{k-1})
    baseline = np.empty_like(full_kwh)
    baseline[:, 0] = required.astype(dtype)
    np.subtract(required.astype(dtype)[col], full_kwh[:, :-1], out=baseline[:, 1:])
    np.maximum(baseline, 0, out=baseline)
    baseline *= dtype(1.0 / DT_H)
    np.minimum(baseline, p_max, out=baseline)
    np.minimum(full_kwh, headroom.astype(dtype)[col], out=full_kwh)
    return EnvelopeArrays(
        index=rows, p_min_kw=p_min, p_max_kw=p_max, e_min_kwh=e_min, e_max_kwh=full_kwh, baseline_kw=baseline
    )


def _diff_rows(cumulative: np.ndarray, scale: float) -> np.ndarray:
    """Per-row first differences (the first column against 0), times ``scale``."""
    out = np.empty_like(cumulative)
    out[:, 0] = cumulative[:, 0]
    np.subtract(cumulative[:, 1:], cumulative[:, :-1], out=out[:, 1:])
    out *= out.dtype.type(scale)
    return out


def _codes(values: np.ndarray, n: int, field: str) -> np.ndarray:
    codes = np.asarray(values)
    if codes.shape != (n,) or not np.issubdtype(codes.dtype, np.integer):
        raise InvalidInput(f"{field}: expected {n} integer codes (-1 = no pool), got {codes.dtype} {codes.shape}")
    if codes.size and codes.min() < -1:
        raise InvalidInput(f"{field}: codes must be >= -1")
    return codes.astype(np.int64, copy=False)


def _ramp_grid(
    codes: np.ndarray,
    n_groups: int,
    start_h: np.ndarray,
    length_h: np.ndarray,
    rate_kw: np.ndarray,
    edges: int,
    step_h: float = DT_H,
) -> np.ndarray:
    """Per group, sum of rate * clip(t - start, 0, length) at grid times t = e * step_h, e = 0..edges-1."""
    keep = (codes >= 0) & (rate_kw != 0) & (length_h > 0)
    code, start, stop, rate = codes[keep], start_h[keep], (start_h + length_h)[keep], rate_kw[keep]
    kinks = np.concatenate([start, stop])
    weights = np.concatenate([rate, -rate])
    owner = np.concatenate([code, code])
    # Each kink adds weight * max(0, t - x): a slope change at the first grid point at or after x,
    # plus the constant it has already accumulated there.
    first = np.clip(np.ceil(kinks / step_h - 1e-9), 0, None).astype(np.int64)
    inside = first < edges
    slot = owner[inside] * edges + first[inside]
    size = n_groups * edges
    slope = np.bincount(slot, weights=weights[inside], minlength=size).reshape(n_groups, edges)
    offset_w = weights[inside] * (first[inside] * step_h - kinks[inside])
    offset = np.bincount(slot, weights=offset_w, minlength=size).reshape(n_groups, edges)
    active = np.cumsum(slope, axis=1)
    grid = np.zeros((n_groups, edges))
    grid[:, 1:] = np.cumsum(active[:, :-1], axis=1) * step_h
    grid += np.cumsum(offset, axis=1)
    return grid


def _baseline_ramp(env: SessionEnvelopes) -> tuple[np.ndarray, np.ndarray]:
    length = np.zeros(env.n)
    np.divide(env.energy_required_kwh, env.max_kw, out=length, where=env.max_kw > 0)
    return length, np.where(length > 0, env.max_kw, 0.0)


def plan_lag_model(
    env: SessionEnvelopes,
    *,
    max_lag_hours: float = 2.0,
    catch_up: int = 3,
    site_codes: np.ndarray | None = None,
    site_cap_kw: np.ndarray | None = None,
) -> LagModel:
    """Choose the flexible members and their nominal ramps; sites keep their cap under any pool trajectory."""
    lag_isps = max_lag_hours / DT_H
    if max_lag_hours < 0 or abs(lag_isps - round(lag_isps)) > 1e-9:
        raise InvalidInput(f"max_lag_hours: must be a non-negative multiple of 0.25, got {max_lag_hours}")
    if catch_up < 2:
        raise InvalidInput(f"catch_up: must be an integer >= 2, got {catch_up}")
    nominal_h = env.departure_h - env.start_h - max_lag_hours
    flexible = (
        (env.energy_required_kwh > _EPS_KWH)
        & ~env.unmet
        & (nominal_h > 0)
        & (env.max_kw * nominal_h >= catch_up * env.energy_required_kwh)
    )
    overloaded: np.ndarray | None = None
    sites: np.ndarray | None = None
    if site_codes is not None:
        sites = _codes(site_codes, env.n, "site_codes")
        if site_cap_kw is None:
            raise InvalidInput("site_cap_kw: required with site_codes (inf = no cap)")
        caps = np.asarray(site_cap_kw, dtype=np.float64)
        n_sites = caps.shape[0] if caps.ndim == 1 else -1
        if n_sites < 0 or np.any(np.isnan(caps)) or np.any(caps < 0):
            raise InvalidInput("site_cap_kw: expected one non-negative cap per site (inf = no cap)")
        if sites.size and sites.max() >= n_sites:
            raise InvalidInput(f"site_codes: code {int(sites.max())} has no entry in site_cap_kw")
        length, rate = _baseline_ramp(env)
        edges = env.horizon.count + 1

        def rigid_peak_kw(flex: np.ndarray) -> np.ndarray:
            cum = _ramp_grid(np.where(flex, -1, sites), n_sites, env.start_h, length, rate, edges)
            return np.asarray(np.diff(cum, axis=1).max(axis=1, initial=0.0) / DT_H)

        nominal_kw = np.zeros(env.n)
        np.divide(env.energy_required_kwh, nominal_h, out=nominal_kw, where=flexible)
        flex_sites = np.where(flexible, sites, -1)
        swing_kw = catch_up * np.bincount(flex_sites[flex_sites >= 0], nominal_kw[flex_sites >= 0], n_sites)
        at_risk = rigid_peak_kw(flexible) + swing_kw > caps + 1e-9
        flexible = flexible & ~((sites >= 0) & at_risk[np.maximum(sites, 0)])
        overloaded = rigid_peak_kw(flexible) > caps + 1e-9
    return LagModel(
        envelopes=env,
        flexible=flexible,
        nominal_h=np.where(flexible, nominal_h, 0.0),
        max_lag_h=float(max_lag_hours),
        catch_up=int(catch_up),
        site_codes=sites,
        site_overloaded=overloaded,
    )


def _pool_grids(model: LagModel, codes: np.ndarray, n_pools: int) -> dict[str, np.ndarray]:
    env = model.envelopes
    t, lag, kappa, sub = env.horizon.count, round(model.max_lag_h / DT_H), model.catch_up, _SUBSTEPS
    length, rate = _baseline_ramp(env)
    all_cum = _ramp_grid(codes, n_pools, env.start_h, length, rate, t + 1)
    rigid_cum = _ramp_grid(np.where(model.flexible, -1, codes), n_pools, env.start_h, length, rate, t + 1)
    fine = _ramp_grid(
        np.where(model.flexible, codes, -1),
        n_pools,
        env.start_h,
        model.nominal_h,
        model.nominal_kw,
        (t + kappa) * sub + 1,
        DT_H / sub,
    )
    nominal = fine[:, ::sub]
    # padded[:, e + lag] = B(t_e), with B = 0 before the horizon start
    padded = np.concatenate([np.zeros((n_pools, lag)), nominal], axis=1)
    # With s_j (the virtual time at the start of ISP j) in [t_j - lag, t_j], the pool must not gain more
    # than B(s_j + kappa) - B(s_j) in ISP j. When s_j >= t_j+1 - kappa, the cumulative cap B(t_j+1)
    # already guarantees that; deeper lags fall in the sub-steps [u, u + step] of the ISPs starting at
    # t_j - back (back = kappa..lag), where the pool gains at least B(u + kappa) - B(u + step).
    flex_max = nominal[:, 1 : t + 1] - padded[:, :t]
    if lag >= kappa:
        gains = fine[:, kappa * sub : kappa * sub + t * sub] - fine[:, 1 : 1 + t * sub]
        # s is the LATEST virtual time with B(s) = E (capped at t_j), so it never sits inside a sub-step
        # where B is flat unless at its right end, which the next sub-step covers.
        flat = fine[:, 1 : 1 + t * sub] <= fine[:, : t * sub]
        gains[flat] = np.inf
        block_min = gains.reshape(n_pools, t, sub).min(axis=2)
        for back in range(kappa, min(lag, t - 1) + 1):
            np.minimum(flex_max[:, back:], block_min[:, : t - back], out=flex_max[:, back:])
    return {
        "baseline_kw": np.diff(all_cum, axis=1) / DT_H,
        "rigid_kw": np.diff(rigid_cum, axis=1) / DT_H,
        "flex_max_kw": np.maximum(flex_max, 0.0) / DT_H,
        "e_min": rigid_cum[:, 1:] + padded[:, 1 : 1 + t],
        "e_max": rigid_cum[:, 1:] + nominal[:, 1 : 1 + t],
        "rigid_cum": rigid_cum,
        "nominal_cum": padded,
    }


def tighten_bounds(
    p_min_kw: np.ndarray, p_max_kw: np.ndarray, e_min_kwh: np.ndarray, e_max_kwh: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shrink cumulative bounds to the energies reachable from 0 that can still stay inside; plus a feasible flag."""
    # work ISP-major so every step touches contiguous memory
    lo, hi = np.ascontiguousarray(e_min_kwh.T), np.ascontiguousarray(e_max_kwh.T)
    low_step, high_step = np.ascontiguousarray(p_min_kw.T) * DT_H, np.ascontiguousarray(p_max_kw.T) * DT_H
    t = lo.shape[0]
    prev_lo = prev_hi = np.zeros(lo.shape[1])
    for j in range(t):
        np.maximum(lo[j], prev_lo + low_step[j], out=lo[j])
        np.minimum(hi[j], prev_hi + high_step[j], out=hi[j])
        prev_lo, prev_hi = lo[j], hi[j]
    for j in range(t - 2, -1, -1):
        np.maximum(lo[j], lo[j + 1] - high_step[j + 1], out=lo[j])
        np.minimum(hi[j], hi[j + 1] - low_step[j + 1], out=hi[j])
    lo, hi = np.ascontiguousarray(lo.T), np.ascontiguousarray(hi.T)
    start_ok = (lo[:, 0] <= p_max_kw[:, 0] * DT_H + 1e-6) & (hi[:, 0] >= p_min_kw[:, 0] * DT_H - 1e-6)
    feasible = np.all(lo <= hi + 1e-6, axis=1) & np.all(p_min_kw <= p_max_kw + 1e-9, axis=1) & start_ok
    return lo, hi, feasible


def aggregate_pools(
    model: LagModel,
    pool_codes: np.ndarray,
    n_pools: int | None = None,
    *,
    pool_cap_kw: np.ndarray | None = None,
) -> PoolFlexibility:
    """Baseline and guaranteed power/energy bounds per pool (one pool kind; code -1 = not pooled)."""
    env = model.envelopes
    codes = _codes(pool_codes, env.n, "pool_codes")
    count = int(n_pools) if n_pools is not None else (int(codes.max()) + 1 if codes.size else 0)
    if codes.size and codes.max() >= count:
        raise InvalidInput(f"pool_codes: code {int(codes.max())} is not below n_pools={count}")
    grids = _pool_grids(model, codes, count)
    p_min = grids["rigid_kw"]
    p_max = p_min + grids["flex_max_kw"]
    if pool_cap_kw is not None:
        caps = np.asarray(pool_cap_kw, dtype=np.float64)
        if caps.shape != (count,):
            raise InvalidInput(f"pool_cap_kw: expected {count} caps, got shape {caps.shape}")
        p_max = np.minimum(p_max, caps[:, None])
    e_min, e_max, feasible = tighten_bounds(p_min, p_max, grids["e_min"], grids["e_max"])
    members = codes >= 0
    sessions = np.bincount(codes[members], minlength=count)
    flexible = np.bincount(codes[members & model.flexible], minlength=count)
    if model.site_overloaded is not None and model.site_codes is not None:
        at_bad_site = members & (model.site_codes >= 0)
        at_bad_site[at_bad_site] = model.site_overloaded[model.site_codes[at_bad_site]]
        feasible &= np.bincount(codes[at_bad_site], minlength=count) == 0
    return PoolFlexibility(
        horizon=env.horizon,
        baseline_kw=grids["baseline_kw"],
        p_min_kw=p_min,
        p_max_kw=p_max,
        e_min_kwh=e_min,
        e_max_kwh=e_max,
        sessions=sessions,
        flexible_sessions=flexible,
        feasible=feasible,
    )


def _session_cumulative(env: SessionEnvelopes, index: np.ndarray, virtual_h: np.ndarray) -> np.ndarray:
    """Baseline cumulative energy (float64) at the given grid times for sessions ``index``."""
    elapsed = np.clip(virtual_h[None, :] - env.start_h[index, None], 0.0, None)
    window = np.maximum(env.departure_h[index] - env.start_h[index], 0.0)
    elapsed = np.minimum(elapsed, window[:, None])
    return np.asarray(np.minimum(elapsed * env.max_kw[index, None], env.energy_required_kwh[index, None]))


def disaggregate(
    model: LagModel,
    pool_codes: np.ndarray,
    pool: int,
    schedule_kw: np.ndarray,
    *,
    tolerance_kwh: float = 1e-6,
) -> tuple[np.ndarray, np.ndarray]:
    """Split a pool schedule within its published bounds over the members: (session indices, power (m, T))."""
    env = model.envelopes
    t = env.horizon.count
    codes = _codes(pool_codes, env.n, "pool_codes")
    schedule = np.asarray(schedule_kw, dtype=np.float64)
    if schedule.shape != (t,) or not np.all(np.isfinite(schedule)):
        raise InvalidInput(f"schedule_kw: expected {t} finite values, got shape {schedule.shape}")
    single = np.where(codes == pool, 0, -1)
    grids = _pool_grids(model, single, 1)
    p_min = grids["rigid_kw"][0]
    p_max = p_min + grids["flex_max_kw"][0]
    cumulative = np.cumsum(schedule) * DT_H
    tol_kw = tolerance_kwh / DT_H
    bad_power = (schedule < p_min - tol_kw) | (schedule > p_max + tol_kw)
    bad_energy = (cumulative < grids["e_min"][0] - tolerance_kwh) | (cumulative > grids["e_max"][0] + tolerance_kwh)
    if bad_power.any() or bad_energy.any():
        isp = int(np.flatnonzero(bad_power | bad_energy)[0])
        what = "power" if bad_power[isp] else "cumulative energy"
        raise InvalidInput(f"schedule_kw: {what} outside the published bounds of pool {pool} at ISP {isp}")

    members = np.flatnonzero(codes == pool)
    flex = members[model.flexible[members]]
    rigid = members[~model.flexible[members]]
    grid_h = np.arange(t + 1) * DT_H
    power = np.zeros((members.size, t))
    where = np.searchsorted(members, rigid)
    power[where] = np.diff(_session_cumulative(env, rigid, grid_h), axis=1) / DT_H
    if flex.size:
        lag = round(model.max_lag_h / DT_H)
        nominal = grids["nominal_cum"][0]
        target = np.concatenate([[0.0], cumulative]) - grids["rigid_cum"][0]
        target = np.clip(target, nominal[: t + 1], nominal[lag : lag + t + 1])
        target = np.maximum.accumulate(target)
        virtual_h = _invert_ramps(env.start_h[flex], model.nominal_h[flex], model.nominal_kw[flex], target)
        virtual_h = np.minimum(virtual_h, grid_h)
        progress = np.clip((virtual_h[None, :] - env.start_h[flex, None]) / model.nominal_h[flex, None], 0.0, 1.0)
        energy = progress * env.energy_required_kwh[flex, None]
        power[np.searchsorted(members, flex)] = np.diff(energy, axis=1) / DT_H
    return members, power


def _invert_ramps(start_h: np.ndarray, length_h: np.ndarray, rate_kw: np.ndarray, energy_kwh: np.ndarray) -> np.ndarray:
    """Virtual times s with sum_i rate_i * clip(s - start_i, 0, length_i) = energy (exact, piecewise linear)."""
    kinks = np.concatenate([start_h, start_h + length_h])
    slopes = np.concatenate([rate_kw, -rate_kw])
    order = np.argsort(kinks, kind="stable")
    kinks, slopes = kinks[order], slopes[order]
    active = np.cumsum(slopes)
    level = np.concatenate([[0.0], np.cumsum(active[:-1] * np.diff(kinks))])
    # the last kink at or below each energy: on a plateau this picks its end, the latest preimage
    segment = np.clip(np.searchsorted(level, energy_kwh, side="right") - 1, 0, kinks.size - 1)
    rate = active[segment]
    ahead = np.zeros_like(energy_kwh)
    np.divide(energy_kwh - level[segment], rate, out=ahead, where=rate > 1e-12)
    return np.asarray(kinks[segment] + np.maximum(ahead, 0.0))


def headroom(pools: PoolFlexibility, schedule_kw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Upward (less consumption) and downward (more) kW per pool and ISP for a one-ISP deviation from a schedule."""
    schedule = np.asarray(schedule_kw, dtype=np.float64)
    if schedule.shape != pools.p_min_kw.shape:
        raise InvalidInput(f"schedule_kw: expected shape {pools.p_min_kw.shape}, got {schedule.shape}")
    cumulative = np.cumsum(schedule, axis=1) * DT_H
    up = np.minimum(schedule - pools.p_min_kw, (cumulative - pools.e_min_kwh) / DT_H)
    down = np.minimum(pools.p_max_kw - schedule, (pools.e_max_kwh - cumulative) / DT_H)
    return np.maximum(up, 0.0), np.maximum(down, 0.0)


def discharge_kw(env: SessionEnvelopes, hold_h: float) -> np.ndarray:
    """Per session and ISP (n, T), the discharge power (kW, >= 0) a car can hold for ``hold_h`` from the ISP's start.

    Bounded by its discharge limit (``-min_kw``), by the energy above its state-of-charge floor spread over
    ``hold_h`` (none while the SoC is unknown), and by its need: after giving ``p * hold_h`` back, full power
    must still meet the need (all of it, as if nothing had been charged since the horizon start) by departure.
    Zero outside the plugged-in window and where fewer than ``hold_h`` hours are left.
    """
    if not hold_h > 0:
        raise InvalidInput(f"hold_h: must be positive, got {hold_h}")
    t = env.horizon.count
    v2g = np.flatnonzero(env.min_kw < 0)
    out = np.zeros((env.n, t))
    if v2g.size == 0:
        return out
    isp_start_h = np.arange(t) * DT_H
    start_h, departure_h = env.start_h[v2g, None], env.departure_h[v2g, None]
    left_h = departure_h - np.maximum(isp_start_h[None, :], start_h)
    soc_kw = np.maximum(-env.floor_kwh[v2g], 0.0) / hold_h
    bound = np.minimum(-env.min_kw[v2g], soc_kw)[:, None]
    need_kw = (env.max_kw[v2g, None] * (left_h - hold_h) - env.energy_required_kwh[v2g, None]) / hold_h
    plugged = (isp_start_h[None, :] >= start_h - 1e-9) & (left_h >= hold_h)
    out[v2g] = np.where(plugged, np.clip(np.minimum(bound, need_kw), 0.0, None), 0.0)
    return out


def plugged_discharge_kw(discharge_kw_per_car: float, stay_hours: np.ndarray, stay_kwh: np.ndarray, max_kw: float,
                         hold_h: float) -> float:
    """Discharge power (kW, >= 0) a plugged-in V2G car still to come can hold for ``hold_h``, on average.

    A car met at a random moment is halfway through a stay drawn in proportion to its length (``stay_hours``,
    ``stay_kwh``: past stays), with half its energy still to charge at up to ``max_kw``; after giving back
    ``p * hold_h`` full power must still meet that. ``discharge_kw_per_car`` bounds it (what the pool's V2G
    cars can give above their SoC floors).
    """
    if not hold_h > 0:
        raise InvalidInput(f"hold_h: must be positive, got {hold_h}")
    hours = np.maximum(np.asarray(stay_hours, dtype=np.float64), 0.0)
    kwh = np.maximum(np.asarray(stay_kwh, dtype=np.float64), 0.0)
    if hours.sum() <= 0:
        return 0.0
    need_kw = (max_kw * (hours / 2.0 - hold_h) - kwh / 2.0) / hold_h
    power = np.clip(np.minimum(discharge_kw_per_car, need_kw), 0.0, None)
    return float(np.sum(hours * power) / hours.sum())
