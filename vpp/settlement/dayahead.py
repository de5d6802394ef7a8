"""Day-ahead imbalance of a pool's day: metered minus the day_ahead_schedule commitments, and its cost."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from vpp.algorithms.settlement import Imbalance, day_ahead_imbalance
from vpp.commitments.tables import Commitment
from vpp.domain.commitments import CommitmentKind
from vpp.settlement.values import DayGrid

FloatArray = npt.NDArray[np.float64]
ISP_H = 0.25


def schedule_kw(db: Session, pool: str, grid: DayGrid) -> FloatArray:
    """The pool's scheduled power per ISP (the sum over references), NaN where nothing was scheduled."""
    rows = db.execute(
        select(Commitment.isp_start, func.sum(Commitment.power_kw))
        .where(Commitment.pool == pool, Commitment.kind == CommitmentKind.DAY_AHEAD_SCHEDULE.value,
               Commitment.isp_start >= grid.start, Commitment.isp_start < grid.end)
        .group_by(Commitment.isp_start)
    ).all()
    position = {start: k for k, start in enumerate(grid.isp_starts)}
    values = np.full(grid.isps, np.nan)
    for start, total in rows:
        values[position[start]] = float(total)
    return values


def imbalance(metered_kwh: FloatArray, scheduled_kw: FloatArray, prices_eur_per_mwh: FloatArray) -> Imbalance:
    """Imbalance per ISP (MWh); ISPs without a schedule or with a meter gap stay NaN and cost nothing."""
    return day_ahead_imbalance(metered_kwh / 1000.0, scheduled_kw * ISP_H / 1000.0, prices_eur_per_mwh)
