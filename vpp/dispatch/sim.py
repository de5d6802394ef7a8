"""Simulated cars and an in-process charge-point network, for tests and benchmarks of the dispatcher.

Cars follow their limit with a delay of one or two 4-s steps; a share ignores limits altogether. The network
sleeps a latency per request, bounds concurrency per CPO, and can be told that a CPO is down.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from vpp.domain.dispatch import DispatchSnapshot, GroupCaps
from vpp.ports import LimitOutcome, LimitStatus, SessionLimit


@dataclass
class SimulatedFleet:
    """A pool of cars: each applies the limit it got ``delay`` steps ago; non-followers keep their power."""

    pool: str
    session_ids: list[str]
    cpo_of: list[str]
    max_kw: np.ndarray
    delay_steps: np.ndarray
    follows: np.ndarray
    power_kw: np.ndarray
    schedule_kw: float = math.nan
    limits_kw: np.ndarray = field(default_factory=lambda: np.zeros(0))
    history: deque[np.ndarray] = field(default_factory=deque)
    index: dict[str, int] = field(default_factory=dict)

    @classmethod
    def build(cls, n: int, *, pool: str = "zone:NL", cpos: int = 4, non_followers: float = 0.05,
              seed: int = 1, schedule_share: float | None = 0.5) -> SimulatedFleet:
        """A fleet of ``n`` cars over ``cpos`` CPOs, a share of them not following."""
        rng = np.random.default_rng(seed)
        max_kw = rng.choice([3.7, 7.4, 11.0, 11.0, 22.0], size=n).astype(np.float64)
        follows = rng.random(n) >= non_followers
        # Cars that ignore limits charge at a fixed power of their own choosing.
        power = np.where(follows, max_kw * schedule_share if schedule_share else max_kw,
                         max_kw * rng.uniform(0.3, 1.0, size=n))
        ids = [f"s{i:06d}" for i in range(n)]
        fleet = cls(
            pool=pool, session_ids=ids, cpo_of=[f"cpo:NL-C{i % cpos:02d}" for i in range(n)], max_kw=max_kw,
            delay_steps=rng.integers(1, 3, size=n), follows=follows, power_kw=power,
            schedule_kw=float(np.sum(max_kw) * schedule_share) if schedule_share else math.nan,
        )
        fleet.limits_kw = max_kw.copy()
        fleet.history = deque([max_kw.copy() for _ in range(3)], maxlen=3)
        fleet.index = {sid: i for i, sid in enumerate(ids)}
        return fleet

    def set_limit(self, session_id: str, limit_kw: float) -> None:
        """A charge point received a limit (it takes effect after the car's delay)."""
        self.limits_kw[self.index[session_id]] = limit_kw

    def step(self) -> None:
        """Advance one 4-s step: followers apply the limit they had ``delay`` steps ago."""
        self.history.append(self.limits_kw.copy())
        lagged = np.where(self.delay_steps == 1, self.history[-1], self.history[-2])
        self.power_kw = np.where(self.follows, np.minimum(np.maximum(lagged, 0.0), self.max_kw), self.power_kw)

    def snapshot(self, at: datetime) -> DispatchSnapshot:
        """What the dispatcher sees: bounds, measured power, the CPO groups and the schedule."""
        n = len(self.session_ids)
        cpo_ids = sorted(set(self.cpo_of))
        group_of = {c: g for g, c in enumerate(cpo_ids)}
        return DispatchSnapshot(
            pool=self.pool, at=at, session_ids=tuple(self.session_ids), min_kw=np.zeros(n),
            max_kw=self.max_kw.copy(), energy_needed_kwh=np.full(n, 5.0), hours_to_departure=np.full(n, 8.0),
            current_kw=self.power_kw.copy(), baseline_kw=self.max_kw.copy(),
            groups=GroupCaps(group_ids=tuple(cpo_ids), max_kw=np.full(len(cpo_ids), np.inf),
                             member_session=np.arange(n, dtype=np.int64),
                             member_group=np.array([group_of[c] for c in self.cpo_of], dtype=np.int64)),
            schedule_kw=self.schedule_kw,
        )


@dataclass
class FleetSource:
    """A PoolSnapshotSource over simulated fleets."""

    fleets: dict[str, SimulatedFleet]

    def pools(self) -> list[str]:
        """The simulated pools."""
        return sorted(self.fleets)

    def snapshot(self, pool: str, at: datetime) -> DispatchSnapshot | None:
        """The fleet's snapshot now."""
        fleet = self.fleets.get(pool)
        return fleet.snapshot(at) if fleet else None


class FakeNetwork:
    """An in-process ChargePointNetwork: one request per session, a latency each, bounded per CPO."""

    def __init__(self, fleet: SimulatedFleet | None = None, *, latency_s: float = 0.05, jitter_s: float = 0.02,
                 per_cpo_concurrency: int = 32, seed: int = 1) -> None:
        self.fleet = fleet
        self.latency_s = latency_s
        self.jitter_s = jitter_s
        self.per_cpo = per_cpo_concurrency
        self.down: dict[str, str] = {}
        self.statuses: dict[str, LimitStatus] = {}
        self.sent: list[SessionLimit] = []
        self._rng = random.Random(seed)
        self._gates: dict[str, asyncio.Semaphore] = {}

    def cpo(self, session_id: str) -> str:
        """The CPO of a session."""
        if self.fleet is not None and session_id in self.fleet.index:
            return self.fleet.cpo_of[self.fleet.index[session_id]]
        return "cpo:NL-C00"

    async def _one(self, limit: SessionLimit) -> LimitOutcome:
        cpo = self.cpo(limit.session_id)
        gate = self._gates.setdefault(cpo, asyncio.Semaphore(self.per_cpo))
        async with gate:
            mode = self.down.get(cpo)
            if mode == "hang":
                await asyncio.sleep(3600)
            if mode == "raise":
                raise ConnectionError(f"{cpo} is down")
            if self.latency_s:
                await asyncio.sleep(max(0.0, self.latency_s + self._rng.uniform(-self.jitter_s, self.jitter_s)))
        self.sent.append(limit)
        status = self.statuses.get(limit.session_id, LimitStatus.ACCEPTED)
        if status in (LimitStatus.ACCEPTED, LimitStatus.APPLIED) and self.fleet is not None:
            self.fleet.set_limit(limit.session_id, limit.limit_kw)
        return LimitOutcome(session_id=limit.session_id, status=status, limit_kw=limit.limit_kw)

    async def set_limits(self, limits: Sequence[SessionLimit]) -> list[LimitOutcome]:
        """Send each limit; a CPO marked down raises or hangs."""
        return list(await asyncio.gather(*(self._one(limit) for limit in limits)))

    async def clear_limits(self, session_ids: Sequence[str]) -> list[LimitOutcome]:
        """Clear limits (back to the car's maximum)."""
        return await self.set_limits([SessionLimit(sid, math.inf) for sid in session_ids])
