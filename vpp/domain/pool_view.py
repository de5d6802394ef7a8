"""What the bid builders read of a pool: its flexibility per ISP over a delivery period."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class PoolFlexibility:
    """A pool's flexibility on the ISPs ``isp_starts`` (UTC), sessions plugged in now plus forecast arrivals.

    Powers are kW (positive = consumption); energies are kWh, cumulative from the first ISP's start to each
    ISP's end. ``*_p10``/``*_p90`` bound what is available with 90 % / 10 % probability, so a bid sized on
    ``max_kw_p10`` can be delivered with 90 % reliability.
    """

    pool: str
    isp_starts: tuple[datetime, ...]
    baseline_kw: FloatArray
    min_kw: FloatArray
    max_kw: FloatArray
    energy_min_kwh: FloatArray
    energy_max_kwh: FloatArray
    max_kw_p10: FloatArray
    min_kw_p90: FloatArray
    sessions_now: int
    sessions_forecast: float

    def headroom_kw(self, schedule_kw: FloatArray, *, reliable: bool = True) -> tuple[FloatArray, FloatArray]:
        """Upward (less consumption) and downward (more consumption) room around ``schedule_kw``, both >= 0."""
        upper = self.max_kw_p10 if reliable else self.max_kw
        lower = self.min_kw_p90 if reliable else self.min_kw
        up = np.maximum(schedule_kw - lower, 0.0)
        down = np.maximum(upper - schedule_kw, 0.0)
        return up, down
