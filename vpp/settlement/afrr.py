"""aFRR settlement of a pool's day: 4-second steps from the pool responses and setpoints, per ISP and activation."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from itertools import pairwise

import numpy as np
import numpy.typing as npt
from sqlalchemy import select
from sqlalchemy.orm import Session

from vpp.activations.tables import AfrrSetpoint, PoolResponse
from vpp.algorithms.settlement import AfrrSettlement, settle_afrr
from vpp.commitments.tables import Commitment
from vpp.domain.commitments import CommitmentKind
from vpp.settlement.values import STEP_S, STEPS_PER_ISP, DayGrid, SettlementParams

FloatArray = npt.NDArray[np.float64]
# The dispatcher's baseline is the pool's committed schedule, else its sessions' uncontrolled power.
AFRR_BASELINE_METHOD = "dispatch_baseline"


@dataclass(frozen=True)
class StepSeries:
    """A pool's day on the 4-second grid (MW; measured and baseline in the consumption sign, NaN = missing)."""

    setpoint_mw: FloatArray
    measured_mw: FloatArray
    baseline_mw: FloatArray

    @property
    def has_data(self) -> bool:
        """True when any step has a response or a setpoint."""
        return bool(np.isfinite(self.measured_mw).any() or (self.setpoint_mw != 0).any())


@dataclass(frozen=True)
class Activation:
    """A run of steps with a non-zero (ramped) request in one direction."""

    first_step: int
    last_step: int
    direction: int


@dataclass(frozen=True)
class AfrrDay:
    """The aFRR settlement of a day: per ISP from the algorithm, plus prices and activations."""

    result: AfrrSettlement
    price_eur_per_mwh: FloatArray
    price_source: list[str]
    activations: list[Activation]
    flagged_steps: npt.NDArray[np.int64]
    missing_active_steps: npt.NDArray[np.int64]


def load_steps(db: Session, pool: str, grid: DayGrid, *, setpoint_max_age_s: float = 60.0) -> StepSeries:
    """Pool responses on the step grid; the request where no response was recorded is the setpoint in force."""
    n = grid.steps
    measured = np.full(n, np.nan)
    baseline = np.full(n, np.nan)
    requested = np.full(n, np.nan)
    rows = db.execute(
        select(PoolResponse.at, PoolResponse.requested_mw, PoolResponse.measured_kw, PoolResponse.baseline_kw)
        .where(PoolResponse.pool == pool, PoolResponse.at >= grid.start, PoolResponse.at < grid.end)
        .order_by(PoolResponse.at)
    ).all()
    if rows:
        index = np.floor(grid.seconds([r[0] for r in rows]) / STEP_S).astype(np.int64)
        requested[index] = [r[1] for r in rows]
        measured[index] = [r[2] / 1000.0 for r in rows]
        baseline[index] = [r[3] / 1000.0 for r in rows]
    missing = np.isnan(requested)
    if missing.any():
        requested[missing] = _setpoints_in_force(db, pool, grid, setpoint_max_age_s)[missing]
    return StepSeries(setpoint_mw=requested, measured_mw=measured, baseline_mw=baseline)


def _setpoints_in_force(db: Session, pool: str, grid: DayGrid, max_age_s: float) -> FloatArray:
    rows = db.execute(
        select(AfrrSetpoint.timestamp, AfrrSetpoint.setpoint_mw)
        .where(AfrrSetpoint.pool == pool, AfrrSetpoint.stale.is_(False),
               AfrrSetpoint.timestamp >= grid.start - timedelta(seconds=max_age_s),
               AfrrSetpoint.timestamp < grid.end)
        .order_by(AfrrSetpoint.timestamp, AfrrSetpoint.seq)
    ).all()
    values = np.zeros(grid.steps)
    if not rows:
        return values
    at = grid.seconds([r[0] for r in rows])
    level = np.array([r[1] for r in rows], dtype=np.float64)
    step_at = np.arange(grid.steps) * STEP_S
    latest = np.searchsorted(at, step_at, side="right") - 1
    valid = (latest >= 0) & (step_at - at[np.maximum(latest, 0)] <= max_age_s)
    values[valid] = level[latest[valid]]
    return values


def energy_prices(db: Session, pool: str, grid: DayGrid, direction: FloatArray,
                  params: SettlementParams) -> tuple[FloatArray, list[str]]:
    """Energy price per ISP: the awarded bid's price of the requested direction, else the parameter."""
    kinds = {CommitmentKind.AFRR_CAPACITY_UP.value: 1, CommitmentKind.AFRR_CAPACITY_DOWN.value: -1}
    rows = db.execute(
        select(Commitment.isp_start, Commitment.kind, Commitment.price_eur_per_mwh)
        .where(Commitment.pool == pool, Commitment.isp_start >= grid.start, Commitment.isp_start < grid.end,
               Commitment.kind.in_(list(kinds)), Commitment.price_eur_per_mwh.is_not(None))
    ).all()
    awarded = {(start, kinds[kind]): float(price) for start, kind, price in rows if price is not None}
    prices = np.full(grid.isps, params.afrr_energy_price_eur_per_mwh)
    source = ["parameter"] * grid.isps
    for k, start in enumerate(grid.isp_starts):
        price = awarded.get((start, 1 if direction[k] >= 0 else -1))
        if price is not None:
            prices[k], source[k] = price, "award"
    return prices, source


def find_activations(ramped_mw: FloatArray) -> list[Activation]:
    """Maximal runs of steps whose ramped request is non-zero in one direction."""
    sign = np.sign(np.where(np.abs(ramped_mw) > 1e-9, ramped_mw, 0.0)).astype(np.int64)
    change = np.flatnonzero(np.diff(np.concatenate([[0], sign, [0]])))
    activations: list[Activation] = []
    for first, after in pairwise(change):
        if sign[first] != 0:
            activations.append(Activation(int(first), int(after) - 1, int(sign[first])))
    return activations


def settle_afrr_day(db: Session, pool: str, grid: DayGrid, params: SettlementParams,
                    steps: StepSeries | None = None) -> AfrrDay:
    """Check every step (5 % band, 5 %/300 s rule) and total energy, payment and penalty per ISP."""
    steps = steps or load_steps(db, pool, grid, setpoint_max_age_s=params.setpoint_max_age_s)
    net_direction = steps.setpoint_mw.reshape(grid.isps, STEPS_PER_ISP).sum(axis=1)
    prices, source = energy_prices(db, pool, grid, net_direction, params)
    result = settle_afrr(steps.setpoint_mw, steps.measured_mw, steps.baseline_mw, prices,
                         params.afrr_penalty_eur_per_mwh, step_s=STEP_S)
    detail = result.steps
    active = np.abs(detail.ramped_mw) > 1e-9
    per_isp = (grid.isps, STEPS_PER_ISP)
    return AfrrDay(
        result=result,
        price_eur_per_mwh=prices,
        price_source=source,
        activations=find_activations(detail.ramped_mw),
        flagged_steps=detail.flagged.reshape(per_isp).sum(axis=1).astype(np.int64),
        missing_active_steps=(detail.missing & active).reshape(per_isp).sum(axis=1).astype(np.int64),
    )


def activation_totals(day: AfrrDay, activation: Activation) -> dict[str, float]:
    """Requested, delivered and counted-shortfall energy (MWh) and payment/penalty (EUR) of one activation."""
    steps = day.result.steps
    window = slice(activation.first_step, activation.last_step + 1)
    hours = STEP_S / 3600.0
    price = np.repeat(day.price_eur_per_mwh, STEPS_PER_ISP)[window]
    delivered = np.abs(steps.accepted_mw[window]) * hours
    counted = np.where(steps.counted[window], steps.shortfall_mw[window], 0.0) * hours
    penalty = np.asarray(day.result.penalty_eur, dtype=np.float64)
    counted_isp = day.result.counted_shortfall_mwh
    with np.errstate(divide="ignore", invalid="ignore"):
        penalty_price = np.where(counted_isp > 0, penalty / counted_isp, 0.0)
    return {
        "requested_mwh": float(np.abs(steps.requested_mw[window]).sum() * hours),
        "delivered_mwh": float(delivered.sum()),
        "shortfall_mwh": float(counted.sum()),
        "revenue_eur": float((delivered * price).sum()),
        "penalty_eur": float((counted * np.repeat(penalty_price, STEPS_PER_ISP)[window]).sum()),
    }


def isp_weights(activation: Activation, isps: int) -> FloatArray:
    """Share of each ISP's duration the activation covers (0..1)."""
    steps = np.zeros(isps * STEPS_PER_ISP)
    steps[activation.first_step:activation.last_step + 1] = 1.0
    return np.asarray(steps.reshape(isps, STEPS_PER_ISP).mean(axis=1), dtype=np.float64)
