"""PNG plot of a pool's day: requested (ramped) vs supplied aFRR per 4-second step, with the tolerance band."""

from __future__ import annotations

import io
from datetime import date

import matplotlib

matplotlib.use("Agg")  # headless: servers and workers have no display

import matplotlib.pyplot as plt
import numpy as np
from sqlalchemy.orm import Session

from vpp.algorithms.settlement import check_afrr_steps
from vpp.settlement import afrr
from vpp.settlement.values import STEP_S, DayGrid


def requested_vs_delivered_png(db: Session, *, day: date, pool: str, time_zone: str) -> bytes:
    """The day's aFRR steps of ``pool`` as a PNG (missing measurements leave holes, never zeros)."""
    grid = DayGrid.of(day, time_zone)
    steps = afrr.load_steps(db, pool, grid)
    check = check_afrr_steps(steps.setpoint_mw, steps.measured_mw, steps.baseline_mw, step_s=STEP_S)
    hours = np.arange(grid.steps) * STEP_S / 3600.0
    figure, axis = plt.subplots(figsize=(12, 4), dpi=100)
    try:
        axis.fill_between(hours, check.band_low_mw, check.band_high_mw, color="tab:blue", alpha=0.15,
                          label="tolerance band")
        axis.plot(hours, check.requested_mw, color="tab:gray", linewidth=0.8, label="requested")
        axis.plot(hours, check.ramped_mw, color="tab:blue", linewidth=1.0, label="requested (ramp-limited)")
        axis.plot(hours, check.supplied_mw, color="tab:orange", linewidth=1.0, label="supplied")
        flagged = np.where(check.counted, check.supplied_mw, np.nan)
        axis.plot(hours, flagged, color="tab:red", linewidth=1.5, label="counted shortfall")
        axis.set_xlabel(f"hours since {grid.start.isoformat()}")
        axis.set_ylabel("MW (+ = up)")
        axis.set_title(f"aFRR {pool} {day.isoformat()}: requested vs delivered")
        axis.legend(loc="upper right", fontsize="small")
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", bbox_inches="tight")
        return buffer.getvalue()
    finally:
        plt.close(figure)
