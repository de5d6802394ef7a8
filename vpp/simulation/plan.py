"""The sessions a scenario will see, drawn once from its seed, and the simulation's timeline.

Both the controlled run and the uncontrolled comparison charge exactly these sessions.
"""

from __future__ import annotations

import bisect
import math
import random
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from itertools import accumulate
from zoneinfo import ZoneInfo

from sim.cpo.elaad import ElaadSampler, default_data_dir, load_arrival_weights
from vpp.simulation.scenario import CpoSpec, Scenario

ELAAD_CATEGORY = {"home": "private", "public": "public", "workplace": "workplace"}
TRADING_TIME = time(8, 45)  # before the aFRR capacity gate (09:00 D-1) and the day-ahead gate (12:00 D-1)
MIN_GAP = timedelta(minutes=10)


@dataclass(frozen=True)
class Timeline:
    """Begin of the warm-up, the trading moment on D-1, and the delivery period [delivery_start, end)."""

    begin: datetime
    trading_at: datetime
    delivery_start: datetime
    end: datetime
    zone: ZoneInfo

    def local(self, day: date, at: time) -> datetime:
        """A local wall-clock moment as aware local time."""
        return datetime.combine(day, at, tzinfo=self.zone)

    def delivery_days(self) -> list[date]:
        """The local delivery days."""
        first = self.delivery_start.astimezone(self.zone).date()
        last = (self.end - timedelta(seconds=1)).astimezone(self.zone).date()
        return [first + timedelta(days=k) for k in range((last - first).days + 1)]


def timeline_of(scenario: Scenario) -> Timeline:
    """When the simulation begins, trades and delivers."""
    zone = ZoneInfo(scenario.timezone)
    delivery_start = datetime.combine(scenario.start, time(0), tzinfo=zone)
    end = datetime.combine(scenario.start + timedelta(days=scenario.days), time(0), tzinfo=zone)
    if scenario.delivery_window is not None:
        low, high = (time.fromisoformat(t) for t in scenario.delivery_window)
        delivery_start = datetime.combine(scenario.start, low, tzinfo=zone)
        end = datetime.combine(scenario.start, high, tzinfo=zone)
    trading_at = datetime.combine(scenario.start - timedelta(days=1), TRADING_TIME, tzinfo=zone)
    if scenario.warmup_from is not None:
        begin = min(trading_at, datetime.combine(scenario.start - timedelta(days=1),
                                                 time.fromisoformat(scenario.warmup_from), tzinfo=zone))
    else:
        begin = min(trading_at, datetime.combine(scenario.start - timedelta(days=1), time(0), tzinfo=zone)
                    - timedelta(hours=scenario.warmup_hours))
    return Timeline(begin=begin, trading_at=trading_at, delivery_start=delivery_start, end=end, zone=zone)


@dataclass
class PlannedSession:
    """A car that will plug in: where, when, for how long and for how much energy."""

    party: str
    location_id: str
    evse_uid: str
    arrival: datetime
    departure: datetime
    energy_kwh: float
    soc: float | None = None
    target_soc: float | None = None
    token_uid: str | None = None
    vehicle_id: str | None = None
    booking_id: str | None = None
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def hours(self) -> float:
        """Plug-in duration in hours."""
        return (self.departure - self.arrival).total_seconds() / 3600.0


@dataclass(frozen=True)
class Booking:
    """A car-sharing booking: the car is away in [start, end) and needs ``energy_kwh`` for it."""

    booking_id: str
    vehicle_id: str
    token_uid: str
    start: datetime
    end: datetime
    energy_kwh: float


def location_ids(spec: CpoSpec) -> list[str]:
    """The simulated CPO's location ids (as sim.cpo names them)."""
    return [f"LOC{index + 1:03d}" for index in range(spec.locations)]


def evse_uids(spec: CpoSpec) -> list[tuple[str, str]]:
    """(location id, EVSE uid) of every EVSE, as sim.cpo names them."""
    return [(loc, f"{loc}-{number + 1:02d}") for loc in location_ids(spec) for number in range(spec.evses_per_location)]


def _hhmm(text: str) -> time:
    return time.fromisoformat(text)


class _Arrivals:
    """Draws local arrival moments of a day from the ElaadNL distributions."""

    def __init__(self, rng: random.Random, category: str) -> None:
        self.rng = rng
        self.category = category
        self.data = default_data_dir()

    def draw(self, day: date, zone: ZoneInfo) -> datetime:
        weights = load_arrival_weights(self.data, day.weekday() >= 5)[self.category]
        cumulative = list(accumulate(weights))
        slot = min(bisect.bisect_left(cumulative, self.rng.uniform(0, cumulative[-1])), len(weights) - 1)
        midnight = datetime.combine(day, time(0), tzinfo=zone)
        return midnight + timedelta(minutes=15 * slot, seconds=self.rng.uniform(0, 900))


def _count(rng: random.Random, rate: float) -> int:
    whole = math.floor(rate)
    return whole + (1 if rng.random() < rate - whole else 0)


def plan_cpo(spec: CpoSpec, timeline: Timeline, seed: int) -> list[PlannedSession]:
    """Every session of one CPO in [begin, end): per EVSE, non-overlapping, drawn from ElaadNL or the spec."""
    rng = random.Random(f"{seed}:{spec.party}")
    return _draw(spec, rng, timeline.zone, timeline.begin, timeline.end, cut_at_end=False)


def plan_history(spec: CpoSpec, timeline: Timeline, seed: int, days: float) -> list[PlannedSession]:
    """The sessions one CPO saw in the ``days`` before the simulation begins, drawn like ``plan_cpo`` (from a
    stream of their own, so the simulated sessions do not change); a car still plugged in at the begin left then."""
    rng = random.Random(f"{seed}:{spec.party}:history")
    return _draw(spec, rng, timeline.zone, timeline.begin - timedelta(days=days), timeline.begin, cut_at_end=True)


def _draw(spec: CpoSpec, rng: random.Random, zone: ZoneInfo, begin: datetime, end: datetime, *,
          cut_at_end: bool) -> list[PlannedSession]:
    category = ELAAD_CATEGORY[spec.category]
    sampler = ElaadSampler(rng, category)
    arrivals = _Arrivals(rng, category)
    first_day = begin.astimezone(zone).date() - timedelta(days=1)
    last_day = (end - timedelta(seconds=1)).astimezone(zone).date()
    days = [first_day + timedelta(days=k) for k in range((last_day - first_day).days + 1)]
    planned: list[PlannedSession] = []
    for location_id, evse_uid in evse_uids(spec):
        moments: list[datetime] = []
        for day in days:
            for _ in range(_count(rng, spec.sessions_per_evse_per_day)):
                if spec.arrival_window is not None:
                    low, high = (datetime.combine(day, _hhmm(t), tzinfo=zone) for t in spec.arrival_window)
                    if high <= low:
                        high += timedelta(days=1)
                    moments.append(low + (high - low) * rng.random())
                else:
                    moments.append(arrivals.draw(day, zone))
        moments.sort()
        free_from = begin
        for index, arrival in enumerate(moments):
            if arrival < free_from or arrival >= end:
                continue
            hours = rng.uniform(*spec.dwell_hours) if spec.dwell_hours is not None else sampler.connection_hours()
            departure = arrival + timedelta(hours=hours)
            if index + 1 < len(moments):
                departure = min(departure, max(moments[index + 1] - MIN_GAP, arrival + timedelta(minutes=15)))
            if cut_at_end:
                departure = min(departure, end)
            soc = None
            energy = sampler.energy_demand_kwh()
            if spec.target_soc is not None:
                soc = rng.uniform(0.05, max(0.06, spec.target_soc - 0.2))
            planned.append(PlannedSession(
                party=spec.party, location_id=location_id, evse_uid=evse_uid, arrival=arrival.astimezone(zone),
                departure=departure.astimezone(zone), energy_kwh=energy, soc=soc, target_soc=spec.target_soc,
            ))
            free_from = departure + MIN_GAP
    planned.sort(key=lambda s: s.arrival)
    return planned


def plan_car_sharing(scenario: Scenario, timeline: Timeline) -> tuple[CpoSpec, list[PlannedSession], list[Booking]]:
    """Shared cars: one EVSE each, plugged in except during bookings; the bookings themselves."""
    spec = scenario.car_sharing
    assert spec is not None
    rng = random.Random(f"{scenario.seed}:car-sharing")
    cpo = CpoSpec(party=spec.party, locations=max(1, math.ceil(spec.cars / 10)), evses_per_location=10,
                  evse_max_kw=spec.evse_max_kw, v2g=spec.v2g, category="public", sessions_per_evse_per_day=0)
    zone = timeline.zone
    slots = evse_uids(cpo)[: spec.cars]
    days = [timeline.begin.astimezone(zone).date() + timedelta(days=k)
            for k in range((timeline.end - timeline.begin).days + 2)]
    sessions: list[PlannedSession] = []
    bookings: list[Booking] = []
    for car, (location_id, evse_uid) in enumerate(slots):
        vehicle_id = f"CAR{car + 1:04d}"
        token_uid = f"CS{car + 1:06d}"
        trips: list[tuple[datetime, datetime, float]] = []
        for day in days:
            for _ in range(_count(rng, spec.bookings_per_car_per_day)):
                start = datetime.combine(day, time(7), tzinfo=zone) + timedelta(minutes=rng.uniform(0, 14 * 60))
                end = start + timedelta(hours=rng.uniform(*spec.booking_hours))
                trips.append((start, end, rng.uniform(*spec.booking_energy_kwh)))
        trips.sort()
        kept: list[tuple[datetime, datetime, float]] = []
        for trip in trips:
            if (not kept or trip[0] >= kept[-1][1] + timedelta(hours=1)) and trip[0] > timeline.begin:
                kept.append(trip)
        for number, (start, end, energy) in enumerate(kept):
            bookings.append(Booking(f"{vehicle_id}-B{number + 1:03d}", vehicle_id, token_uid, start, end, energy))
        plugged = timeline.begin
        for number, (start, end, energy) in enumerate([*kept, (timeline.end + timedelta(days=1), timeline.end, 20.0)]):
            if start >= timeline.end and plugged >= timeline.end:
                break
            # A car leaves for its booking, which the service was told of, however long after the period it
            # starts (the run follows it); only the last stay, before no booking, ends 12 h after the period.
            departure = start if number < len(kept) else min(start, timeline.end + timedelta(hours=12))
            if departure - plugged >= timedelta(minutes=30) and plugged < timeline.end:
                sessions.append(PlannedSession(
                    party=spec.party, location_id=location_id, evse_uid=evse_uid, arrival=plugged.astimezone(zone),
                    departure=departure.astimezone(zone), energy_kwh=energy,
                    soc=rng.uniform(0.3, 0.7), token_uid=token_uid, vehicle_id=vehicle_id,
                    booking_id=f"{vehicle_id}-B{number + 1:03d}" if number < len(kept) else None,
                ))
            plugged = end
    sessions.sort(key=lambda s: s.arrival)
    return cpo, sessions, bookings
