"""Simulated cars and an in-process charge-point network, for tests and benchmarks of the dispatcher.

Cars follow their limit with a delay of one or two 4-s steps; a share ignores limits altogether. The network
sleeps a latency per request, bounds concurrency per CPO, and can be told that a CPO is down.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import numpy.typing as npt

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


TAPER_START_SOC = 0.8
TAPER_FLOOR = 0.1


def _taper(soc: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Share of full power a battery accepts: 1 below 80 % SoC, falling linearly to 10 % (as sim/cpo's cars)."""
    falling = np.maximum(TAPER_FLOOR, (1.0 - soc) / (1.0 - TAPER_START_SOC))
    return np.where(soc >= 1.0, 0.0, np.where(soc <= TAPER_START_SOC, 1.0, falling))


def _onboard_models(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Onboard AC chargers (kW) and batteries (kWh) drawn by registrations from the ev2gym car list."""
    from importlib.resources import files

    specs = json.loads(files("vpp.data").joinpath("ev2gym", "ev_specs.json").read_text(encoding="utf-8"))
    weights = np.array([float(s.get("number_of_registrations", 1)) for s in specs.values()])
    pick = rng.choice(len(specs), size=n, p=weights / weights.sum())
    onboard = np.array([float(s["max_ac_charge_power"]) for s in specs.values()])[pick]
    battery = np.array([float(s["battery_capacity"]) for s in specs.values()])[pick]
    return onboard, battery


@dataclass
class TelemetryFleet:
    """A pool as production sees it: the dispatcher knows each charger's maximum, not the car behind it.

    Cars draw at most their onboard charger, less above 80 % SoC (taper), nothing once at their target; a share
    ignores limits. Cars arrive and leave. Power is seen only as charging-period averages every
    ``telemetry_s`` (each session on its own phase), with the period it covers, as OCPI Session PATCHes carry
    it. A limit sent before a step holds for that step (as the simulated CPOs apply a ChargingProfiles PUT).
    """

    pool: str
    rng: np.random.Generator
    telemetry_s: float
    step_s: float
    arrivals_per_h: float
    charger_choices: tuple[float, ...]
    non_followers: float
    now_s: float = 0.0
    ids: list[str] = field(default_factory=list)
    index: dict[str, int] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    schedule_kw: float = math.nan
    counter: int = 0

    COLUMNS = ("charger_kw", "onboard_kw", "battery_kwh", "soc", "target_soc", "depart_s", "follows", "limit_kw",
               "power_kw", "phase_s", "period_start_s", "period_kwh", "reading_kw", "reading_start_s",
               "reading_end_s", "active", "cpo")

    @classmethod
    def build(cls, n: int, *, telemetry_s: float = 10.0, step_s: float = 4.0, non_followers: float = 0.0,
              seed: int = 1, start_s: float = 0.0, arrivals_per_h: float | None = None,
              charger_choices: tuple[float, ...] = (11.0, 11.0, 22.0)) -> TelemetryFleet:
        """``n`` cars plugged in at ``start_s``; as many again arrive over ~10 hours unless told otherwise."""
        fleet = cls(pool="zone:NL", rng=np.random.default_rng(seed), telemetry_s=telemetry_s, step_s=step_s,
                    arrivals_per_h=n / 10.0 if arrivals_per_h is None else arrivals_per_h,
                    charger_choices=charger_choices, non_followers=non_followers, now_s=start_s)
        fleet.arrays = {c: np.zeros(0) for c in cls.COLUMNS}
        fleet.arrive(n)
        return fleet

    def arrive(self, k: int) -> None:
        """Plug ``k`` cars in now, each with its own need, stay and telemetry phase."""
        if k <= 0:
            return
        rng = self.rng
        onboard, battery = _onboard_models(rng, k)
        soc = rng.uniform(0.15, 0.85, size=k)
        new = {
            "charger_kw": rng.choice(self.charger_choices, size=k),
            "onboard_kw": onboard,
            "battery_kwh": battery,
            "soc": soc,
            "target_soc": np.minimum(soc + rng.uniform(0.1, 0.6, size=k), 1.0),
            "depart_s": self.now_s + rng.uniform(1.0, 10.0, size=k) * 3600.0,
            "follows": (rng.random(k) >= self.non_followers).astype(np.float64),
            "limit_kw": np.full(k, math.inf),
            "power_kw": np.zeros(k),
            "phase_s": rng.uniform(0.0, self.telemetry_s, size=k),
            "period_start_s": np.full(k, self.now_s),
            "period_kwh": np.zeros(k),
            "reading_kw": np.full(k, math.nan),
            "reading_start_s": np.full(k, math.nan),
            "reading_end_s": np.full(k, math.nan),
            "active": np.ones(k),
            "cpo": rng.integers(0, 4, size=k).astype(np.float64),
        }
        if self.counter == 0:
            # The pool was there before: its cars' last period, charging uncontrolled, is already reported.
            hardware = np.minimum(new["charger_kw"], onboard) * _taper(soc)
            new["reading_kw"] = hardware
            new["reading_start_s"] = np.full(k, self.now_s - self.telemetry_s)
            new["reading_end_s"] = np.full(k, self.now_s)
        for column in self.COLUMNS:
            self.arrays[column] = np.concatenate([self.arrays[column], new[column]])
        for _ in range(k):
            sid = f"t{self.counter:06d}"
            self.index[sid] = len(self.ids)
            self.ids.append(sid)
            self.counter += 1

    def set_limit(self, session_id: str, limit_kw: float) -> None:
        """A charge point received a limit; it holds from the next step on."""
        self.arrays["limit_kw"][self.index[session_id]] = limit_kw

    def drawable_kw(self) -> np.ndarray:
        """What each car would draw now without a limit (onboard charger, charger, taper, its target)."""
        a = self.arrays
        hardware = np.minimum(a["charger_kw"], a["onboard_kw"]) * _taper(a["soc"])
        need_kwh = np.maximum(a["target_soc"] - a["soc"], 0.0) * a["battery_kwh"]
        return np.where(a["active"] > 0, np.minimum(hardware, need_kwh * 3600.0 / self.step_s), 0.0)

    def step(self) -> float:
        """Advance one step; returns the pool's mean power over it (what the TSO meters)."""
        a = self.arrays
        drawable = self.drawable_kw()
        limited = np.minimum(drawable, np.maximum(a["limit_kw"], 0.0))
        a["power_kw"] = np.where(a["follows"] > 0, limited, drawable)
        energy = a["power_kw"] * self.step_s / 3600.0
        a["soc"] = np.minimum(a["soc"] + np.where(a["battery_kwh"] > 0, energy / a["battery_kwh"], 0.0), 1.0)
        a["period_kwh"] += energy
        end = self.now_s + self.step_s
        # Periods close on each session's own phase; a reading averages its period.
        closing = (a["active"] > 0) & (np.floor((end - a["phase_s"]) / self.telemetry_s)
                                       > np.floor((self.now_s - a["phase_s"]) / self.telemetry_s))
        length = end - a["period_start_s"]
        a["reading_kw"] = np.where(closing, a["period_kwh"] * 3600.0 / np.maximum(length, 1e-9), a["reading_kw"])
        a["reading_start_s"] = np.where(closing, a["period_start_s"], a["reading_start_s"])
        a["reading_end_s"] = np.where(closing, end, a["reading_end_s"])
        a["period_start_s"] = np.where(closing, end, a["period_start_s"])
        a["period_kwh"] = np.where(closing, 0.0, a["period_kwh"])
        metered = float(np.sum(a["power_kw"]))
        self.now_s = end
        a["active"] = np.where(a["depart_s"] <= end, 0.0, a["active"])
        self.arrive(int(self.rng.poisson(self.arrivals_per_h * self.step_s / 3600.0)))
        return metered

    def snapshot(self, at: datetime) -> DispatchSnapshot:
        """What the dispatcher sees: the chargers' maxima, stated needs, the latest readings and their periods."""
        a = self.arrays
        rows = np.flatnonzero(a["active"] > 0)
        n = rows.size
        cpos = a["cpo"][rows].astype(np.int64)
        return DispatchSnapshot(
            pool=self.pool, at=at, session_ids=tuple(self.ids[i] for i in rows), min_kw=np.zeros(n),
            max_kw=a["charger_kw"][rows].copy(),
            energy_needed_kwh=(np.maximum(a["target_soc"] - a["soc"], 0.0) * a["battery_kwh"])[rows],
            hours_to_departure=np.maximum(a["depart_s"][rows] - at.timestamp(), 0.0) / 3600.0,
            current_kw=np.nan_to_num(a["reading_kw"][rows]), baseline_kw=a["charger_kw"][rows].copy(),
            groups=GroupCaps(group_ids=tuple(f"cpo:NL-C{c:02d}" for c in range(4)), max_kw=np.full(4, np.inf),
                             member_session=np.arange(n, dtype=np.int64), member_group=cpos),
            schedule_kw=self.schedule_kw,
            reading_start_s=a["reading_start_s"][rows].copy(), reading_end_s=a["reading_end_s"][rows].copy(),
        )
