"""An in-memory PortfolioView for the bid tests: generated sessions laid out on any requested period."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from vpp.algorithms.scheduling import problem_from_instance
from vpp.benchmarks.dayahead import generate_instance
from vpp.domain.errors import NotFound
from vpp.domain.pool_view import PoolFlexibility

ISP = timedelta(minutes=15)


def _isps(start: datetime, end: datetime) -> tuple[datetime, ...]:
    return tuple(start + k * ISP for k in range(int((end - start) / ISP)))


@dataclass
class FakePortfolioView:
    """Pools of generated charge-only sessions; the same seed gives the same pool on every request."""

    sessions: dict[str, int] = field(default_factory=lambda: {"zone:NL": 600})
    capped: bool = False
    seed: int = 7
    calls: list[str] = field(default_factory=list)

    def pools(self) -> list[str]:
        """The known pools."""
        return sorted(self.sessions)

    def _instance(self, pool: str, start: datetime, end: datetime) -> dict[str, Any]:
        if pool not in self.sessions:
            raise NotFound(f"pool {pool!r} does not exist")
        n_isps = len(_isps(start, end))
        return generate_instance(self.sessions[pool], v2g=False, seed=self.seed, isps=n_isps,
                                 with_pool_limit=self.capped)

    def flexibility(self, pool: str, start: datetime, end: datetime) -> PoolFlexibility:
        """Plugged power as the upper bound, zero as the lower, charge-as-soon-as-plugged as the baseline."""
        self.calls.append(f"flexibility {pool}")
        problem = problem_from_instance(self._instance(pool, start, end))
        n = problem.n_isps
        t = np.arange(n)
        plugged = (t[None, :] >= problem.arrival[:, None]) & (t[None, :] < problem.departure[:, None])
        max_kw = (problem.max_kw[:, None] * plugged).sum(axis=0)
        energy_isps = problem.energy_kwh / problem.isp_hours
        before = np.cumsum(problem.max_kw[:, None] * plugged, axis=1) - problem.max_kw[:, None] * plugged
        baseline = np.clip(energy_isps[:, None] - before, 0.0, problem.max_kw[:, None] * plugged).sum(axis=0)
        zeros = np.zeros(n)
        return PoolFlexibility(pool=pool, isp_starts=_isps(start, end), baseline_kw=baseline, min_kw=zeros,
                               max_kw=max_kw, energy_min_kwh=zeros, energy_max_kwh=zeros, max_kw_p10=0.9 * max_kw,
                               min_kw_p90=zeros, sessions_now=problem.n_sessions, sessions_forecast=0.0)

    def dayahead_instance(self, pool: str, start: datetime, end: datetime, *, reliability: float = 0.5,
                          prices_eur_per_mwh: Sequence[float]) -> dict[str, Any]:
        """The generated sessions with the given prices, starting at ``start``."""
        self.calls.append(f"dayahead_instance {pool} {reliability}")
        instance = self._instance(pool, start, end)
        instance["prices_eur_per_mwh"] = list(prices_eur_per_mwh)
        instance["start"] = start.isoformat().replace("+00:00", "Z")
        return instance
