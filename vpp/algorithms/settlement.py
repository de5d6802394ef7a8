"""Settlement math: aFRR delivery checks, USEF FlexOrder settlement, day-ahead imbalance, per-session shares
and CDR reconciliation (markets.md sections 1.6 and 5).

Sign conventions: power is positive for consumption. aFRR quantities are oriented in the regulation
direction: a positive setpoint asks for upward regulation (less consumption) and
``supplied = baseline - measured`` is positive when consumption went down (Elia's ``measured - baseline``
with the sign flipped). Missing measurements are NaN, never zero.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from vpp.domain.errors import InvalidInput

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


def _series(name: str, values: object, n: int | None = None) -> FloatArray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise InvalidInput(f"{name}: must be one-dimensional, got shape {array.shape}")
    if n is not None and array.shape[0] != n:
        raise InvalidInput(f"{name}: expected {n} values, got {array.shape[0]}")
    return array


def _per_isp(name: str, values: object, isps: int) -> FloatArray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 0:
        return np.full(isps, float(array))
    return _series(name, array, isps)


# --- aFRR ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AfrrSteps:
    """Per-step check of aFRR delivery (MW, regulation direction)."""

    requested_mw: FloatArray
    ramped_mw: FloatArray
    supplied_mw: FloatArray
    band_low_mw: FloatArray
    band_high_mw: FloatArray
    accepted_mw: FloatArray
    shortfall_mw: FloatArray
    flagged: BoolArray
    missing: BoolArray
    counted: BoolArray


@dataclass(frozen=True)
class AfrrSettlement:
    """Per-ISP aFRR energy (MWh), money (EUR) and the step detail behind it."""

    requested_mwh: FloatArray
    delivered_mwh: FloatArray
    shortfall_mwh: FloatArray
    counted_shortfall_mwh: FloatArray
    missing_steps: IntArray
    payment_eur: FloatArray
    penalty_eur: FloatArray
    steps: AfrrSteps


def ramp_limited_setpoint(setpoint_mw: object, *, step_s: float = 4.0, ramp_s: float = 300.0) -> FloatArray:
    """Follow each setpoint change with a linear ramp that completes in ``ramp_s``.

    This is the moving mean of the setpoint over ``ramp_s``: the sum of one linear ramp per change, so a
    change of any size is fully reached after ``ramp_s`` (the full activation time). The setpoint before the
    series is taken as the first value.
    """
    setpoint = _series("setpoint_mw", setpoint_mw)
    if setpoint.size == 0:
        return setpoint.copy()
    window = max(1, round(ramp_s / step_s))
    padded = np.concatenate([np.full(window, setpoint[0]), setpoint])
    cumulative = np.concatenate([[0.0], np.cumsum(padded)])
    # The value at step k averages steps k-window+1 .. k; the ramp is done when the window is all new.
    ramped: FloatArray = (cumulative[window + 1 :] - cumulative[1:-window]) / window
    return ramped


def check_afrr_steps(
    setpoint_mw: object,
    measured_mw: object,
    baseline_mw: object,
    *,
    step_s: float = 4.0,
    ramp_s: float = 300.0,
    tolerance: float = 0.05,
    tolerance_floor_mw: float = 0.0,
    window_s: float = 300.0,
    flagged_share_allowed: float = 0.05,
    flag_over_delivery: bool = False,
) -> AfrrSteps:
    """Check every step against the tolerance band around the ramp-limited setpoint.

    Band: ramped +/- max(tolerance * |ramped|, tolerance_floor_mw). markets.md 5.2 (after the German
    model, 1.6) puts the 5 % on the acceptance limits and no floor on the band itself (its 1 MW floor is on
    the channel gradient), hence floor 0 by default. A step is flagged when the supply falls short of the
    band's near edge (over-delivery only with ``flag_over_delivery``); shortfall counts only at steps whose
    trailing ``window_s`` (the step and the ones before it) has strictly more than 5 % flagged steps.
    """
    setpoint = _series("setpoint_mw", setpoint_mw)
    n = setpoint.shape[0]
    measured = _series("measured_mw", measured_mw, n)
    baseline = _per_isp("baseline_mw", baseline_mw, n)
    if step_s <= 0 or ramp_s <= 0 or window_s <= 0:
        raise InvalidInput("step_s/ramp_s/window_s: must be positive")
    if not 0 <= tolerance < 1:
        raise InvalidInput("tolerance: must be in [0, 1)")
    ramped = ramp_limited_setpoint(setpoint, step_s=step_s, ramp_s=ramp_s)
    supplied = baseline - measured
    missing = np.isnan(supplied)
    direction = np.sign(ramped)
    magnitude = np.abs(ramped)
    half_band = np.maximum(tolerance * magnitude, tolerance_floor_mw)
    near_edge = np.maximum(magnitude - half_band, 0.0)
    far_edge = magnitude + half_band
    along = np.where(missing, 0.0, direction * np.nan_to_num(supplied))
    accepted = np.clip(along, 0.0, far_edge)
    shortfall = np.where(missing | (direction == 0), 0.0, np.maximum(near_edge - accepted, 0.0))
    flagged = shortfall > 0
    if flag_over_delivery:
        flagged |= ~missing & (np.abs(np.nan_to_num(supplied) - ramped) > half_band) & (direction == 0)
        flagged |= ~missing & (along > far_edge)
    window = max(1, round(window_s / step_s))
    count = np.cumsum(flagged.astype(np.int64))
    trailing = count - np.concatenate([np.zeros(window, dtype=np.int64), count[:-window]])[:n]
    # Integer count against the allowed share: exactly 5 % is allowed, one more step is not.
    counted = trailing > flagged_share_allowed * window + 1e-9
    return AfrrSteps(
        requested_mw=setpoint,
        ramped_mw=ramped,
        supplied_mw=supplied,
        band_low_mw=ramped - half_band,
        band_high_mw=ramped + half_band,
        accepted_mw=direction * accepted,
        shortfall_mw=shortfall,
        flagged=flagged,
        missing=missing,
        counted=counted,
    )


def settle_afrr(
    setpoint_mw: object,
    measured_mw: object,
    baseline_mw: object,
    energy_price_eur_per_mwh: object,
    penalty_price_eur_per_mwh: object,
    *,
    step_s: float = 4.0,
    isp_s: float = 900.0,
    **check: Any,
) -> AfrrSettlement:
    """Aggregate the step check per ISP: energy requested, delivered, shortfall; payment and penalty.

    The series starts at an ISP boundary and covers whole ISPs. Energies are magnitudes in the requested
    direction; prices are per ISP (or one value) and applied as given for either direction.
    """
    steps = check_afrr_steps(setpoint_mw, measured_mw, baseline_mw, step_s=step_s, **check)
    per_isp = round(isp_s / step_s)
    n = steps.requested_mw.shape[0]
    if per_isp <= 0 or n % per_isp:
        raise InvalidInput(f"setpoint_mw: {n} steps is not a whole number of ISPs of {per_isp} steps")
    isps = n // per_isp
    hours = step_s / 3600.0

    def total(values: npt.NDArray[Any]) -> FloatArray:
        return np.asarray(values.reshape(isps, per_isp).sum(axis=1) * hours, dtype=np.float64)

    requested = total(np.abs(steps.requested_mw))
    delivered = total(np.abs(steps.accepted_mw))
    shortfall = total(steps.shortfall_mw)
    counted = total(np.where(steps.counted, steps.shortfall_mw, 0.0))
    price = _per_isp("energy_price_eur_per_mwh", energy_price_eur_per_mwh, isps)
    penalty = _per_isp("penalty_price_eur_per_mwh", penalty_price_eur_per_mwh, isps)
    return AfrrSettlement(
        requested_mwh=requested,
        delivered_mwh=delivered,
        shortfall_mwh=shortfall,
        counted_shortfall_mwh=counted,
        missing_steps=steps.missing.reshape(isps, per_isp).sum(axis=1).astype(np.int64),
        payment_eur=delivered * price,
        penalty_eur=counted * penalty,
        steps=steps,
    )


# --- congestion (USEF FlexOrder) ----------------------------------------------------------------------------


@dataclass(frozen=True)
class FlexOrderSettlement:
    """Per-ISP USEF FlexOrder settlement (MW, EUR) and the order's net."""

    delivered_mw: FloatArray
    deficiency_mw: FloatArray
    net_eur: FloatArray
    total_net_eur: float


@dataclass(frozen=True)
class SettlementComparison:
    """Our answer to a DSO FlexSettlement: Accepted, or Disputed with the ISP indices that differ."""

    disposition: Literal["Accepted", "Disputed"]
    differing_isps: tuple[int, ...]
    reason: str


def settle_flex_order(
    baseline_mw: object,
    ordered_mw: object,
    actual_mw: object,
    price_eur_per_mw: float,
    penalty_eur_per_mw: float,
) -> FlexOrderSettlement:
    """Settle a consumption-reduction FlexOrder per ISP (markets.md 5.3).

    delivered = clip(baseline - actual, 0, ordered); deficiency = max(0, actual - (baseline - ordered));
    net = delivered * price - deficiency * penalty. ``ordered_mw`` is the reduction magnitude (USEF sends it
    as negative power for a consumption-overloaded point; the adapter passes its absolute value).
    """
    baseline = _series("baseline_mw", baseline_mw)
    n = baseline.shape[0]
    ordered = _per_isp("ordered_mw", ordered_mw, n)
    actual = _series("actual_mw", actual_mw, n)
    if (ordered < 0).any():
        raise InvalidInput("ordered_mw: must be a non-negative reduction")
    delivered = np.clip(baseline - actual, 0.0, ordered)
    deficiency = np.maximum(actual - (baseline - ordered), 0.0)
    net = delivered * price_eur_per_mw - deficiency * penalty_eur_per_mw
    return FlexOrderSettlement(delivered, deficiency, net, float(net.sum()))


def settle_flex_order_instance(instance: Mapping[str, Any]) -> dict[str, Any]:
    """Settle an offline FlexOrder instance: prices and per-ISP baseline/ordered/actual in MW."""
    try:
        price = float(instance["price_eur_per_mw"])
        penalty = float(instance["penalty_eur_per_mw"])
        isps = list(instance["isps"])
        columns = {key: [float(isp[key]) for isp in isps] for key in ("baseline_mw", "ordered_mw", "actual_mw")}
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInput(f"flex order instance: missing or non-numeric field ({exc})") from exc
    result = settle_flex_order(columns["baseline_mw"], columns["ordered_mw"], columns["actual_mw"], price, penalty)
    return {
        "isps": [
            {"delivered_mw": float(d), "deficiency_mw": float(f), "net_eur": float(e)}
            for d, f, e in zip(result.delivered_mw, result.deficiency_mw, result.net_eur, strict=True)
        ],
        "net_eur": result.total_net_eur,
    }


def compare_flex_settlement(
    ours: FlexOrderSettlement, theirs: FlexOrderSettlement, tolerance: float = 1e-6
) -> SettlementComparison:
    """Compare our recomputation with the DSO's FlexSettlement figures, ISP by ISP."""
    if ours.net_eur.shape != theirs.net_eur.shape:
        return SettlementComparison(
            "Disputed", (), f"ISP count differs: ours {ours.net_eur.size}, theirs {theirs.net_eur.size}"
        )
    differs = np.zeros(ours.net_eur.shape, dtype=bool)
    for a, b in (
        (ours.delivered_mw, theirs.delivered_mw),
        (ours.deficiency_mw, theirs.deficiency_mw),
        (ours.net_eur, theirs.net_eur),
    ):
        differs |= ~np.isclose(a, b, rtol=0.0, atol=tolerance)
    indices = tuple(int(i) for i in np.flatnonzero(differs))
    if indices:
        return SettlementComparison("Disputed", indices, f"{len(indices)} ISP(s) differ beyond {tolerance}")
    if abs(ours.total_net_eur - theirs.total_net_eur) > tolerance:
        return SettlementComparison("Disputed", (), "net settlement differs")
    return SettlementComparison("Accepted", (), "")


# --- day-ahead imbalance ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Imbalance:
    """Per-ISP imbalance (MWh, + = consumed more than scheduled, i.e. short) and its cost (EUR, + = we pay)."""

    imbalance_mwh: FloatArray
    cost_eur: FloatArray
    missing: BoolArray
    total_cost_eur: float


def day_ahead_imbalance(
    metered_mwh: object,
    scheduled_mwh: object,
    price_short_eur_per_mwh: object,
    price_long_eur_per_mwh: object | None = None,
) -> Imbalance:
    """Imbalance = metered - scheduled per ISP; cost = imbalance * price (short price when short, long else).

    With one price (single pricing) a long position earns the price. Missing meter data stays NaN and is
    left out of the total.
    """
    metered = _series("metered_mwh", metered_mwh)
    n = metered.shape[0]
    scheduled = _series("scheduled_mwh", scheduled_mwh, n)
    short_price = _per_isp("price_short_eur_per_mwh", price_short_eur_per_mwh, n)
    long_price = (
        short_price if price_long_eur_per_mwh is None else _per_isp("price_long_eur_per_mwh", price_long_eur_per_mwh, n)
    )
    imbalance = metered - scheduled
    cost = imbalance * np.where(imbalance > 0, short_price, long_price)
    missing = np.isnan(imbalance)
    return Imbalance(imbalance, cost, missing, float(np.nansum(cost)))


# --- per-session attribution --------------------------------------------------------------------------------


def session_contributions_kwh(
    counterfactual_kw: object, measured_kw: object, *, interval_h: float = 0.25, upward: bool = True
) -> FloatArray:
    """Each session's energy contribution per interval: counterfactual minus measured (upward), sessions x ISPs.

    NaN where the measurement is missing.
    """
    counterfactual = np.asarray(counterfactual_kw, dtype=np.float64)
    measured = np.asarray(measured_kw, dtype=np.float64)
    if counterfactual.shape != measured.shape:
        raise InvalidInput(f"measured_kw: shape {measured.shape} differs from {counterfactual.shape}")
    reduction = (counterfactual - measured) * interval_h
    return np.asarray(reduction if upward else -reduction, dtype=np.float64)


def split_pro_rata(total_eur: float, weights: object) -> FloatArray:
    """Split an amount pro rata to non-negative weights, in whole cents that add up exactly to the total.

    Largest remainder; zero, negative or NaN weights get nothing; with no positive weight nothing is split.
    """
    weight = np.nan_to_num(np.asarray(weights, dtype=np.float64), nan=0.0)
    weight = np.where(weight > 0, weight, 0.0)
    total_cents = round(total_eur * 100)
    if weight.sum() <= 0:
        return np.zeros(weight.shape)
    exact = abs(total_cents) * weight / weight.sum()
    cents = np.floor(exact).astype(np.int64)
    leftover = abs(total_cents) - int(cents.sum())
    if leftover:
        cents[np.argsort(-(exact - cents), kind="stable")[:leftover]] += 1
    return np.asarray(np.sign(total_cents) * cents / 100.0, dtype=np.float64)


@dataclass(frozen=True)
class SessionShares:
    """Per-session contribution (kWh), revenue and penalty shares (EUR)."""

    contribution_kwh: FloatArray
    revenue_eur: FloatArray
    penalty_eur: FloatArray


def attribute_to_sessions(
    contribution_kwh: object, revenue_eur: float, penalty_eur: float, excluded: object | None = None
) -> SessionShares:
    """Pass pool revenue and penalty to sessions pro rata to their positive contribution.

    ``contribution_kwh`` is per session (or sessions x ISPs, summed). Excluded sessions (flagged by
    reconciliation) get neither: their figures are held for review rather than guessed.
    """
    contribution = np.asarray(contribution_kwh, dtype=np.float64)
    if contribution.ndim == 2:
        contribution = np.nansum(contribution, axis=1)
    weight = np.where(np.isnan(contribution), 0.0, contribution)
    if excluded is not None:
        mask = np.asarray(excluded, dtype=bool)
        if mask.shape != weight.shape:
            raise InvalidInput(f"excluded: shape {mask.shape} differs from {weight.shape}")
        weight = np.where(mask, 0.0, weight)
    return SessionShares(
        contribution_kwh=contribution,
        revenue_eur=split_pro_rata(revenue_eur, weight),
        penalty_eur=split_pro_rata(penalty_eur, weight),
    )


def flexibility_value_per_charger_month(
    net_eur_per_session: object, charger_of_session: object, chargers: int, period_days: float
) -> FloatArray:
    """Net flexibility value per charger, scaled to an average month (365.25 / 12 days)."""
    net = np.nan_to_num(np.asarray(net_eur_per_session, dtype=np.float64))
    charger = np.asarray(charger_of_session, dtype=np.int64)
    if period_days <= 0:
        raise InvalidInput("period_days: must be positive")
    if charger.shape != net.shape or (charger.size and (charger.min() < 0 or charger.max() >= chargers)):
        raise InvalidInput("charger_of_session: wrong length or unknown charger index")
    per_charger = np.bincount(charger, weights=net, minlength=chargers)
    return np.asarray(per_charger * (365.25 / 12.0) / period_days, dtype=np.float64)


# --- reconciliation -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reconciliation:
    """Per session: metered energy from readings, difference to the CDR and the flags."""

    metered_kwh: FloatArray
    difference_kwh: FloatArray
    longest_gap_h: FloatArray
    mismatch: BoolArray
    gap: BoolArray
    no_readings: BoolArray
    flagged: BoolArray


def reconcile_cdrs(
    cdr_energy_kwh: object,
    reading_session: object,
    reading_time_h: object,
    reading_energy_kwh: object,
    *,
    session_start_h: object | None = None,
    session_end_h: object | None = None,
    abs_tolerance_kwh: float = 0.5,
    rel_tolerance: float = 0.02,
    max_gap_h: float = 0.5,
) -> Reconciliation:
    """Compare each CDR's energy with the session's meter readings and flag what cannot be trusted.

    Readings are cumulative energy register values (kWh) at irregular times; the metered energy is the
    last valid reading minus the first, which needs no guess between samples (integrating irregular power
    samples would). NaN readings are missing: they never count as zero and widen the gap around them. A
    session is flagged when |CDR - metered| exceeds both tolerances, when two valid readings (or the session
    start/end and its first/last reading) are more than ``max_gap_h`` apart, or when it has no reading.
    """
    cdr = _series("cdr_energy_kwh", cdr_energy_kwh)
    n = cdr.shape[0]
    session = np.asarray(reading_session, dtype=np.int64)
    time_h = _series("reading_time_h", reading_time_h)
    energy = _series("reading_energy_kwh", reading_energy_kwh, time_h.shape[0])
    if session.shape != time_h.shape:
        raise InvalidInput("reading_session: length differs from reading_time_h")
    if session.size and (session.min() < 0 or session.max() >= n):
        raise InvalidInput("reading_session: unknown session index")
    valid = ~np.isnan(energy) & ~np.isnan(time_h)
    session, time_h, energy = session[valid], time_h[valid], energy[valid]
    ordering = np.lexsort((time_h, session))
    session, time_h, energy = session[ordering], time_h[ordering], energy[ordering]

    count = np.bincount(session, minlength=n)
    has = count > 0
    last_index = np.cumsum(count) - 1
    first_index = last_index - count + 1
    metered = np.full(n, np.nan)
    metered[has] = energy[last_index[has]] - energy[first_index[has]]
    longest_gap = np.zeros(n)
    if session.size > 1:
        same = session[1:] == session[:-1]
        np.maximum.at(longest_gap, session[1:][same], np.diff(time_h)[same])
    if session_start_h is not None:
        start = _series("session_start_h", session_start_h, n)
        longest_gap[has] = np.maximum(longest_gap[has], time_h[first_index[has]] - start[has])
    if session_end_h is not None:
        end = _series("session_end_h", session_end_h, n)
        longest_gap[has] = np.maximum(longest_gap[has], end[has] - time_h[last_index[has]])
    longest_gap[~has] = np.inf
    difference = cdr - metered
    limit = np.maximum(abs_tolerance_kwh, rel_tolerance * np.abs(cdr))
    mismatch = has & (np.abs(difference) > limit)
    gap = has & (longest_gap > max_gap_h)
    no_readings = ~has
    return Reconciliation(
        metered_kwh=metered,
        difference_kwh=difference,
        longest_gap_h=longest_gap,
        mismatch=mismatch,
        gap=gap,
        no_readings=no_readings,
        flagged=mismatch | gap | no_readings,
    )
