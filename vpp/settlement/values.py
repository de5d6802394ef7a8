"""Parameters of a settlement and the time grid of a delivery day."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt

from vpp.congestion.values import day_isp_starts
from vpp.domain.errors import InvalidInput

FloatArray = npt.NDArray[np.float64]
ISP = timedelta(minutes=15)
STEP_S = 4.0
STEPS_PER_ISP = 225


@dataclass(frozen=True)
class SettlementParams:
    """Prices and tolerances; a price may be one value or one per ISP of the day."""

    afrr_energy_price_eur_per_mwh: float = 100.0
    afrr_penalty_eur_per_mwh: float = 200.0
    imbalance_price_eur_per_mwh: float | Sequence[float] = 100.0
    flex_penalty_eur_per_mw: float = 0.0
    cdr_abs_tolerance_kwh: float = 0.5
    cdr_rel_tolerance: float = 0.02
    max_reading_gap_h: float = 0.5
    cell_gap_tolerance_s: float = 60.0
    setpoint_max_age_s: float = 60.0
    extra: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """The parameters as stored with a run."""
        data = asdict(self)
        if not isinstance(self.imbalance_price_eur_per_mwh, int | float):
            data["imbalance_price_eur_per_mwh"] = [float(v) for v in self.imbalance_price_eur_per_mwh]
        return data

    def imbalance_prices(self, isps: int) -> FloatArray:
        """The imbalance price per ISP (a flat price repeated)."""
        prices = np.asarray(self.imbalance_price_eur_per_mwh, dtype=np.float64)
        if prices.ndim == 0:
            return np.full(isps, float(prices))
        if prices.shape != (isps,):
            raise InvalidInput(f"imbalance_price_eur_per_mwh: expected 1 or {isps} values, got {prices.size}")
        return prices


@dataclass(frozen=True)
class DayGrid:
    """The ISPs of a local delivery day (92, 96 or 100) in UTC."""

    day: date
    isp_starts: tuple[datetime, ...]

    @classmethod
    def of(cls, day: date, time_zone: str) -> DayGrid:
        """The grid of ``day`` in ``time_zone``."""
        return cls(day, tuple(day_isp_starts(day, time_zone)))

    @property
    def start(self) -> datetime:
        """First instant of the day."""
        return self.isp_starts[0]

    @property
    def end(self) -> datetime:
        """First instant after the day."""
        return self.isp_starts[-1] + ISP

    @property
    def isps(self) -> int:
        """How many ISPs the day has."""
        return len(self.isp_starts)

    @property
    def steps(self) -> int:
        """How many 4-second steps the day has."""
        return self.isps * STEPS_PER_ISP

    def seconds(self, moments: Any) -> FloatArray:
        """Seconds since the day's start of UTC timestamps (a sequence or pandas values)."""
        values = np.asarray([m.timestamp() for m in moments], dtype=np.float64) if len(moments) else np.zeros(0)
        return values - self.start.timestamp()
