"""Run a scenario end to end: the service and the simulated parties on one simulated clock.

The service runs its production code paths (OCPI intake, portfolio, bids, activations, the dispatcher's cycle
and the OCPI charge-point network); only *when* things happen is decided here, by the simulated clock: CPOs
step their fleets, the TSO posts a setpoint every 4 simulated seconds in activation windows, and the
dispatcher runs one cycle per step (every 4 s in those windows).
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
import tempfile
import time as wallclock
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sim.cpo.clock import ManualClock
from sim.cpo.config import CpoConfig
from sim.cpo.fleet import Car, apply_power, charge_power_kw
from sim.exchange import clear_curve_order
from sim.world import SimulatedCpo, World, start_world
from vpp.simulation.plan import (
    Booking,
    PlannedSession,
    Timeline,
    location_ids,
    plan_car_sharing,
    plan_cpo,
    plan_history,
    timeline_of,
)
from vpp.simulation.scenario import CpoSpec, Scenario
from vpp.simulation.sites import SitePhysics, SiteState

ZONE_POOL = "zone:NL"
AFRR_STEP_S = 4.0
CPO_CATEGORY = {"home": "private", "public": "public", "workplace": "workplace"}
V2G_MIN_SOC_PCT = 30.0
# Pushes a simulated CPO keeps in flight (each session's in order), so that the service handles one while the
# CPO writes the next: with one at a time the two processes mostly took turns.
PUSH_CONCURRENCY = 8
# A car this close to its energy (kWh) draws nothing more that any figure shows.
FULL_KWH = 1e-9
# Cars followed step by step for the report, spread over the CPOs and over the delivery period.
CAR_SAMPLE_SIZE = 10


def site_id(party: str, location_id: str) -> str:
    """The site id a CPO location gets in the topology."""
    return f"{party.replace('/', '-')}-{location_id}"


@dataclass
class SessionRecord:
    """What the simulation knows of one session it plugged in (for the uncontrolled twin and needs)."""

    party: str
    location_id: str
    external_id: str
    start: datetime
    departure: datetime
    car: Car
    evse_max_kw: float
    dc: bool
    need_kwh: float
    service_id: str | None = None
    delivered_kwh: float = 0.0
    # May discharge (smart+V2G strategy, a V2G CPO and a car that can feed back on this EVSE).
    v2g: bool = False
    # Its uncontrolled twin's energy per minute, once computed (vpp.simulation.kpis).
    twin: list[tuple[datetime, float]] | None = field(default=None, repr=False, compare=False)


@dataclass
class StepLog:
    """Energy per step: total and per congestion point (kWh), and the aFRR exchange of the step."""

    starts: list[datetime] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    total_kwh: list[float] = field(default_factory=list)
    point_kwh: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    # Energy per step of each device under a §14a curtailment (a CPO location: the unit the DSO curtails).
    device_kwh: dict[tuple[str, str], list[float]] = field(default_factory=lambda: defaultdict(list))
    afrr: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class CarTrace:
    """One sampled car, per step: the limit in force mid-step (kW, None: no limit), the average power it drew
    (kW) and its state of charge at the end of the step (%)."""

    party: str
    session_id: str
    location_id: str
    evse_max_kw: float
    start: datetime
    departure: datetime
    need_kwh: float
    at: list[datetime] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    limit_kw: list[float | None] = field(default_factory=list)
    power_kw: list[float] = field(default_factory=list)
    soc_pct: list[float] = field(default_factory=list)


@dataclass
class RunResult:
    """Everything the KPIs and the report are computed from."""

    scenario: Scenario
    timeline: Timeline
    log: StepLog
    sessions: list[SessionRecord]
    point_members: dict[str, set[tuple[str, str]]]
    point_limits: dict[str, list[tuple[datetime, datetime, float]]]
    prices: dict[datetime, float]
    chargers: int
    afrr_awarded_mw: float
    afrr_capacity_revenue_eur: float
    notes: list[str]
    wall_seconds: float
    activation_check: dict[str, Any]
    # The most MW the capacity bid offered in the scenario's direction in a product with an activation window.
    afrr_offered_mw: float = 0.0
    # §14a curtailments: per device (party, location), its windows and the power it was curtailed to.
    device_caps: dict[tuple[str, str], list[tuple[datetime, datetime, float]]] = field(default_factory=dict)
    # The run follows the delivery period's sessions past its end until the last has left (like-for-like KPIs).
    follow_end: datetime | None = None
    # The pool's committed day-ahead schedule (kW) per UTC ISP start.
    committed_kw: dict[datetime, float] = field(default_factory=dict)
    # Grid capacity (kW) of each location (site) that has one.
    site_caps: dict[tuple[str, str], float] = field(default_factory=dict)
    # A few cars followed step by step (the report's per-car view).
    car_sample: list[CarTrace] = field(default_factory=list)
    # Sites behind the meter (PV, load, battery): their energies per ISP.
    sites: list[SiteState] = field(default_factory=list)


class Progress:
    """One line on stderr: the simulated clock, the wall time so far and the wall time expected to be left.

    The time left is, for each length of step the run still takes (``steps_left``: to the expected last departure,
    on the runner's grid: hourly in the warm-up, 15 minutes in delivery and follow, 4 s in aFRR windows), the steps
    left at the mean wall time of the last ``RATE_STEPS`` steps of that length (a length not yet run: the nearest
    one run). One rate for every step had an aFRR window's cheap 4-s steps predict a minute for the costly evening
    after them, and the first delivery steps hours for the rest. Without ``steps_left``, the simulated time left at
    the simulated seconds per wall second of the last half minute.
    """

    RATE_STEPS = 20

    def __init__(self, enabled: bool, zone: Any) -> None:
        self.enabled = enabled
        self.zone = zone
        self.started = wallclock.monotonic()
        self._last = 0.0
        self.expected_end: datetime | None = None
        self.steps_left: Callable[[datetime], dict[float, float]] | None = None
        self._samples: deque[tuple[float, float]] = deque()
        # Wall seconds of the latest steps, per simulated length of step (s).
        self._step_wall: dict[float, deque[float]] = {}

    def show(self, at: datetime, phase: str, active: int, force: bool = False) -> None:
        now = wallclock.monotonic()
        if self._samples:
            wall0, sim0 = self._samples[-1]
            length = round(at.timestamp() - sim0, 1)
            if length > 0:
                self._step_wall.setdefault(length, deque(maxlen=self.RATE_STEPS)).append(now - wall0)
        self._samples.append((now, at.timestamp()))
        while len(self._samples) > 2 and now - self._samples[1][0] > 30.0:
            self._samples.popleft()
        if not self.enabled or (not force and now - self._last < 0.5):
            return
        self._last = now
        local = at.astimezone(self.zone)
        sys.stderr.write(f"\r[simulate] {local:%Y-%m-%d %H:%M:%S %Z}  {phase:<9} {active:5d} plugged in  "
                         f"wall {now - self.started:6.1f} s{self._left(at)} ")
        sys.stderr.flush()

    def _left(self, at: datetime) -> str:
        if self.steps_left is not None:
            if not self._step_wall:
                return ""
            rates = {length: sum(walls) / len(walls) for length, walls in self._step_wall.items()}
            left = 0.0
            for length, steps in self.steps_left(at).items():
                nearest = min(rates, key=lambda seen: abs(math.log(seen / max(length, 1e-3))))
                left += steps * rates[nearest]
            return f", ~{left:5.0f} s left"
        (wall0, sim0), (wall1, sim1) = self._samples[0], self._samples[-1]
        if self.expected_end is None or wall1 - wall0 < 1.0 or sim1 <= sim0:
            return ""
        remaining = max(0.0, self.expected_end.timestamp() - at.timestamp())
        return f", ~{remaining / ((sim1 - sim0) / (wall1 - wall0)):5.0f} s left"

    def done(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")
            sys.stderr.flush()


def scenario_prices(scenario: Scenario, timeline: Timeline) -> dict[datetime, float]:
    """EUR/MWh per UTC ISP start from the trading day to the end of the follow period (``follow_hours``)."""
    import pandas as pd

    start = datetime.combine(scenario.start - timedelta(days=1), datetime.min.time(), tzinfo=timeline.zone)
    stop = datetime.combine(scenario.start + timedelta(days=scenario.days), datetime.min.time(), tzinfo=timeline.zone)
    follow = timedelta(hours=scenario.follow_hours)
    index = pd.date_range(start.astimezone(UTC), (stop + follow).astimezone(UTC), freq="15min", inclusive="left")
    if scenario.prices == "nl-day-ahead":
        from vpp.data.prices import load_day_ahead_prices, prices_for_isps

        # The bundled prices end somewhere: the follow period takes what there is.
        last = load_day_ahead_prices().index[-1] + pd.Timedelta(hours=1)
        series = prices_for_isps(pd.DatetimeIndex(index[index < last]))
        return {t.to_pydatetime(): float(v) for t, v in zip(series.index, series.to_numpy(), strict=True)}
    values = list(scenario.prices)
    per_isp = values if len(values) == 96 else [v for v in values for _ in range(4)]
    out = {}
    for ts in index:
        local = ts.tz_convert(timeline.zone)
        out[ts.to_pydatetime()] = float(per_isp[(local.hour * 60 + local.minute) // 15 % 96])
    return out


class Simulation:
    """One scenario run."""

    def __init__(self, scenario: Scenario, *, data_dir: Path, progress: bool = True,
                 settings_overrides: dict[str, Any] | None = None) -> None:
        self.scenario = scenario
        self.settings_overrides = settings_overrides or {}
        self.data_dir = data_dir
        self.timeline = timeline_of(scenario)
        self.clock = ManualClock(self.timeline.begin.astimezone(UTC))
        self.progress = Progress(progress, self.timeline.zone)
        self.notes: list[str] = []
        self.log = StepLog()
        self.records: dict[tuple[str, str], SessionRecord] = {}
        self.pending: dict[str, list[PlannedSession]] = {}
        self.bookings: list[Booking] = []
        self.specs: list[CpoSpec] = list(scenario.cpos)
        self.point_members: dict[str, set[tuple[str, str]]] = {}
        self.point_limits: dict[str, list[tuple[datetime, datetime, float]]] = defaultdict(list)
        self.device_caps: dict[tuple[str, str], list[tuple[datetime, datetime, float]]] = defaultdict(list)
        self.prices: dict[datetime, float] = {}
        self.afrr_awarded_mw = 0.0
        self.afrr_offered_mw = 0.0
        self.afrr_capacity_revenue_eur = 0.0
        self.afrr_seq = 0
        self.new_sessions: dict[str, list[SessionRecord]] = defaultdict(list)
        self.kwh_seen: dict[tuple[str, str], float] = {}
        self.follow_end: datetime | None = None
        self.follow = timedelta(hours=scenario.follow_hours)
        self.committed_kw: dict[datetime, float] = {}
        self.car_sample: dict[tuple[str, str], CarTrace] = {}
        self._next_car_pick: dict[str, datetime] = {}

    # ------------------------------------------------------------------------------- set-up

    def plan(self) -> None:
        """Draw every session once."""
        for spec in self.scenario.cpos:
            self.pending[spec.party] = plan_cpo(spec, self.timeline, self.scenario.seed)
        if self.scenario.car_sharing is not None:
            cpo, sessions, self.bookings = plan_car_sharing(self.scenario, self.timeline)
            self.specs.append(cpo)
            self.pending[cpo.party] = sessions
        for point in self.scenario.congestion:
            self.point_members[point.congestion_point] = {
                (c.party, loc) for c in self.specs if c.party in point.cpos for loc in location_ids(c)}
        self.site_physics = SitePhysics(self.scenario, self.timeline, self.specs)
        end = self.timeline.end.astimezone(UTC)
        departures = [p.departure for queue in self.pending.values() for p in queue if p.arrival < end]
        self.progress.expected_end = min(max(departures, default=end), end + self.follow)
        self.progress.steps_left = self._steps_by_length

    def _steps_by_length(self, at: datetime) -> dict[float, float]:
        """About how many steps of each simulated length (s) the run takes from ``at`` to the expected last
        departure: hourly in the warm-up, ``step_seconds`` in delivery, 4 s in aFRR windows, at least 15 minutes
        in the follow period."""
        end = self.progress.expected_end or self.timeline.end.astimezone(UTC)

        def seconds(low: datetime, high: datetime) -> float:
            return max(0.0, (min(high, end) - max(low, at)).total_seconds())

        tl, spec = self.timeline, self.scenario
        delivery_start, delivery_end = tl.delivery_start.astimezone(UTC), tl.end.astimezone(UTC)
        tail = timedelta(seconds=spec.afrr.tail_seconds)
        windows = [(a, b + tail) for day in tl.delivery_days() for a, b in self._afrr_windows(day)
                   if a < delivery_end and b > delivery_start] if spec.afrr.enabled else []
        afrr = sum(seconds(a, b) for a, b in windows)
        follow = max(spec.step_seconds, 900.0)
        steps: dict[float, float] = defaultdict(float)
        steps[float(spec.warmup_step_seconds)] += seconds(tl.begin.astimezone(UTC), delivery_start) / \
            spec.warmup_step_seconds
        steps[float(spec.step_seconds)] += max(0.0, seconds(delivery_start, delivery_end) - afrr) / spec.step_seconds
        steps[AFRR_STEP_S] += afrr / AFRR_STEP_S
        steps[follow] += seconds(delivery_end, end) / follow
        return dict(steps)

    async def setup(self, world: World) -> None:
        """CPOs register over OCPI, the topology is imported, bookings stated."""
        v2g_allowed = self.scenario.strategy == "smart+v2g"
        for spec in self.specs:
            period = max(self.scenario.report_period_seconds, self.scenario.warmup_step_seconds)
            config = CpoConfig(party=spec.party, name=f"CPO {spec.party}", evses=spec.evses,
                               evses_per_location=spec.evses_per_location, max_kw=spec.evse_max_kw,
                               power_type="DC" if spec.dc else "AC_3_PHASE",
                               v2g=spec.v2g, category=CPO_CATEGORY[spec.category], seed=self.scenario.seed,
                               period_s=int(period), physics_step_s=self.scenario.physics_step_seconds,
                               callback_delay_s=2.0, push_concurrency=PUSH_CONCURRENCY,
                               profile_timeout_s=30, report_soc="always",
                               fast_period_s=int(self.scenario.afrr.telemetry_seconds), fast_windows=[
                                   (a, b + timedelta(seconds=self.scenario.afrr.tail_seconds))
                                   for day in self.timeline.delivery_days() for a, b in self._afrr_windows(day)
                               ] if self.scenario.afrr.enabled else [])
            await world.add_cpo(config, discharge_profiles=v2g_allowed and spec.v2g)
        await self._import_topology(world)
        await self._wait_for_locations(world)
        await self.site_physics.setup(world)
        if self.scenario.history_days > 0:
            await self._report_history(world)
        partner = world.client("partner")
        for booking in self.bookings:
            response = await partner.put(f"/api/v1/bookings/{booking.booking_id}", json={
                "vehicle_id": booking.vehicle_id, "vehicle_token_uid": booking.token_uid,
                "start": booking.start.isoformat(), "end": booking.end.isoformat(),
                "energy_kwh": round(booking.energy_kwh, 2)})
            response.raise_for_status()

    async def _import_topology(self, world: World) -> None:
        point_of: dict[tuple[str, str], str] = {}
        for point, members in self.point_members.items():
            for member in members:
                point_of.setdefault(member, point)
        rows = ["ean,dso,site_id,site_capacity_kw,party,location_id,category"]
        for spec in self.specs:
            capacity = "" if spec.site_max_kw is None else f"{spec.site_max_kw:g}"
            for loc in location_ids(spec):
                # Locations outside the scenario's congestion points sit behind an unconstrained feeder.
                ean = point_of.get((spec.party, loc), f"FEEDER-{spec.party.replace('/', '-')}")
                rows.append(f"{ean},DSO-SIM,{site_id(spec.party, loc)},{capacity},"
                            f"{spec.party},{loc},{spec.category}")
        response = await world.client("admin").post("/api/v1/portfolio/topology/import", content="\n".join(rows),
                                                     headers={"Content-Type": "text/csv"})
        if response.status_code >= 300:
            raise RuntimeError(f"topology import refused: {response.text[:300]}")

    async def _wait_for_locations(self, world: World) -> None:
        """Pull each CPO's Locations (OCPI pull) so connector powers and V2G capability are known."""
        admin = world.client("admin")
        for cpo in world.cpos.values():
            (await admin.post(f"/api/v1/ocpi/connections/{cpo.connection_id}/pull")).raise_for_status()
        expected = sum(spec.evses for spec in self.specs)
        for _ in range(600):
            count = await world.evse_count()
            if count >= expected:
                return
            await asyncio.sleep(0.05)
        self.notes.append(f"only {count} of {expected} EVSEs were pulled before the run started")

    async def _report_history(self, world: World) -> None:
        """Each CPO reports the completed sessions of the days before the begin (OCPI Session PUTs): the history
        the forecast learns from, as an aggregator connected for a while would have it, without simulating it."""
        gate = asyncio.Semaphore(8)
        for spec in self.scenario.cpos:
            cpo = world.cpos[spec.party]
            history = plan_history(spec, self.timeline, self.scenario.seed, self.scenario.history_days)
            refused = await asyncio.gather(*(self._report_completed(gate, cpo, spec, number, planned)
                                             for number, planned in enumerate(history, 1)))
            if any(refused):
                self.notes.append(f"{spec.party}: {sum(map(bool, refused))} of {len(history)} history "
                                  f"sessions refused, e.g. {next(r for r in refused if r)}")

    @staticmethod
    async def _report_completed(gate: asyncio.Semaphore, cpo: SimulatedCpo, spec: CpoSpec, number: int,
                                planned: PlannedSession) -> str:
        """PUT one completed session as the CPO (on its own keep-alive pushes, as its live sessions go); the
        refusal, or an empty string."""
        from adapters.ocpi.v2_2_1.schemas import (
            AuthMethod,
            CdrToken,
            InterfaceRole,
            ModuleID,
            Price,
            Session,
            SessionStatus,
            TokenType,
        )
        from adapters.ocpi.v2_2_1.transport import join_url
        from sim.cpo.state import Outbound

        simulator = cpo.simulator
        connection = next(iter(simulator.connections.values()))
        url = connection.endpoint(ModuleID.SESSIONS, InterfaceRole.RECEIVER)
        if url is None:
            return "no Sessions receiver"
        party = simulator.party
        external_id = f"H{number:06d}"
        hours = (planned.departure - planned.arrival).total_seconds() / 3600.0
        # Charged uncontrolled at up to 11 kW (a typical onboard charger) from arrival.
        kwh = round(min(planned.energy_kwh, hours * min(spec.evse_max_kw, 11.0)), 3)
        slot = simulator.slots[planned.evse_uid.casefold()]
        token = f"{number:08d}"
        body = Session(
            country_code=party.country_code, party_id=party.party_id, id=external_id,
            start_date_time=planned.arrival.astimezone(UTC), end_date_time=planned.departure.astimezone(UTC),
            kwh=kwh, cdr_token=CdrToken(country_code=party.country_code, party_id=party.party_id, uid=f"HIST{token}",
                                        type=TokenType.RFID,
                                        contract_id=f"{party.country_code}-{party.party_id}-H{token}"),
            auth_method=AuthMethod.WHITELIST, location_id=planned.location_id, evse_uid=slot.evse_uid,
            connector_id=slot.connector_id, currency="EUR", charging_periods=[], total_cost=Price(excl_vat=0.0),
            status=SessionStatus.COMPLETED, last_updated=planned.departure.astimezone(UTC))
        push = Outbound("PUT", join_url(url, party.country_code, party.party_id, external_id), ModuleID.SESSIONS,
                        connection, body.to_json_dict(), "history", lane=external_id)
        async with gate:
            status, answer = await simulator._push(push)
        return "" if status < 300 else f"{status} {answer[:160].decode(errors='replace')}"

    # ------------------------------------------------------------------------------- markets and grid

    async def trade(self, world: World, day: Any) -> None:
        """D-1: day-ahead curve build, submit, exchange clearing, awards; aFRR capacity bid and award."""
        trader = world.client("trader")
        if self.scenario.dayahead:
            built = await trader.post("/api/v1/bids/day-ahead/build", json={"pool": ZONE_POOL,
                                                                             "delivery_day": day.isoformat()})
            if built.status_code >= 300:
                self.notes.append(f"day-ahead build for {day} refused: {built.status_code} {built.text[:200]}")
            else:
                bid = built.json()
                (await trader.post(f"/api/v1/bids/{bid['id']}/submit")).raise_for_status()
                document = await trader.get(f"/api/v1/bids/{bid['id']}/document", params={"format": "json"})
                document.raise_for_status()
                cleared = clear_curve_order(document.text, self.prices)
                awards = await trader.post(f"/api/v1/bids/{bid['id']}/awards",
                                           json={"format": "json", "content": json.dumps(cleared)})
                awards.raise_for_status()
        if self.scenario.afrr.enabled:
            await self._afrr_bid(world, day)

    async def _afrr_bid(self, world: World, day: Any) -> None:
        trader = world.client("trader")
        start = datetime.combine(day, datetime.min.time(), tzinfo=self.timeline.zone).astimezone(UTC)
        built = await trader.post("/api/v1/bids/afrr/build", json={
            "pool": ZONE_POOL, "start": start.isoformat(), "end": (start + timedelta(days=1)).isoformat(),
            "products": ["capacity"]})
        if built.status_code >= 300:
            self.notes.append(f"aFRR build for {day} refused: {built.status_code} {built.text[:200]}")
            return
        bid = built.json()
        windows = self._afrr_windows(day)
        awards = []
        for item in bid["content"].get("capacity", []):
            if item["direction"] != self.scenario.afrr.direction:
                continue
            product_start = datetime.fromisoformat(item["product_start"].replace("Z", "+00:00"))
            product_end = product_start + timedelta(hours=float(item["product_hours"]))
            if not any(a < product_end and b > product_start for a, b in windows):
                continue
            offered_mw = math.floor(float(item["capacity_kw"]) / 1000.0 + 1e-9)
            self.afrr_offered_mw = max(self.afrr_offered_mw, float(offered_mw))
            wanted = self.scenario.afrr.award_mw
            awarded = min(offered_mw, math.floor(wanted)) if wanted is not None else offered_mw
            if awarded >= self.scenario.afrr.min_award_mw:
                awards.append({"bid_id": item["bid_id"], "awarded_mw": awarded})
                self.afrr_awarded_mw = max(self.afrr_awarded_mw, float(awarded))
                self.afrr_capacity_revenue_eur += awarded * float(item["product_hours"]) * float(
                    item["capacity_price_eur_per_mw_per_h"])
        if not bid["content"].get("capacity"):
            self.notes.append(f"aFRR {day}: the pool offered no capacity (below the 1 MW minimum bid)")
        submitted = await trader.post(f"/api/v1/bids/{bid['id']}/submit")
        if submitted.status_code >= 300:
            self.notes.append(f"aFRR submit for {day} refused: {submitted.text[:200]}")
            return
        if awards:
            response = await trader.post(f"/api/v1/bids/{bid['id']}/awards",
                                         json={"format": "json", "content": json.dumps({"awards": awards})})
            response.raise_for_status()
        else:
            self.notes.append(f"aFRR {day}: no capacity awarded in the activation windows; setpoints are clipped "
                              "to 0 by the intake")

    def _afrr_windows(self, day: Any) -> list[tuple[datetime, datetime]]:
        windows = []
        for low, high in self.scenario.afrr.activations:
            a = datetime.combine(day, datetime.strptime(low, "%H:%M").time(), tzinfo=self.timeline.zone)
            b = datetime.combine(day, datetime.strptime(high, "%H:%M").time(), tzinfo=self.timeline.zone)
            windows.append((a.astimezone(UTC), b.astimezone(UTC)))
        return windows

    def _estimated_point_peak_kw(self, point: str, low: datetime, high: datetime) -> float:
        """Uncontrolled peak of a point in [low, high), estimated from the plan at the EVSEs' power."""
        members = self.point_members[point]
        power = {spec.party: min(spec.evse_max_kw, 11.0) for spec in self.specs}
        steps = int((high - low) / timedelta(minutes=15))
        load = [0.0] * max(steps, 1)
        for party, sessions in self.pending.items():
            for planned in sessions:
                if (party, planned.location_id) not in members:
                    continue
                end = min(planned.departure, planned.arrival + timedelta(hours=planned.energy_kwh / power[party]))
                for k in range(steps):
                    t = low + k * timedelta(minutes=15)
                    if planned.arrival <= t < end:
                        load[k] += power[party]
        return max(load)

    async def post_congestion(self, world: World) -> None:
        """The DSO states each day's limits the day before (dso role)."""
        dso = world.client("dso")
        for spec in self.scenario.congestion:
            low_t, high_t = spec.window()
            for day in self.timeline.delivery_days():
                low = datetime.combine(day, low_t, tzinfo=self.timeline.zone).astimezone(UTC)
                high = datetime.combine(day, high_t, tzinfo=self.timeline.zone).astimezone(UTC)
                if high <= low:
                    high += timedelta(days=1)
                if spec.signal == "curtailment":
                    members = sorted(self.point_members[spec.congestion_point])
                    response = await dso.post("/api/v1/dso/curtailments", json={
                        "devices": [site_id(p, loc) for p, loc in members], "start": low.isoformat(),
                        "end": high.isoformat(), "max_kw_per_device": spec.max_kw_per_device})
                    response.raise_for_status()
                    for member in members:
                        self.device_caps[member].append((low, high, spec.max_kw_per_device))
                    cap = spec.max_kw_per_device * len(members)
                    self.point_limits[spec.congestion_point].append((low, high, cap))
                    continue
                cap = spec.max_kw if spec.max_kw is not None else round(
                    spec.max_share_of_peak * self._estimated_point_peak_kw(spec.congestion_point, low, high), 1)
                response = await dso.post("/api/v1/dso/limits", json={
                    "congestion_point": spec.congestion_point, "start": low.isoformat(), "end": high.isoformat(),
                    "max_kw": cap})
                response.raise_for_status()
                self.point_limits[spec.congestion_point].append((low, high, cap))

    # ------------------------------------------------------------------------------- stepping

    def _plug_in(self, cpo: SimulatedCpo, now: datetime) -> int:
        queue = self.pending[cpo.party]
        simulator = cpo.simulator
        started = 0
        while queue and queue[0].arrival <= now:
            planned = queue.pop(0)
            departure = max(planned.departure, now + timedelta(minutes=15))
            slot = simulator.slots.get(planned.evse_uid.casefold())
            if slot is None or slot.session_id is not None:
                continue
            # A shared car starts its session with its own token: the service finds its bookings by that uid.
            session = simulator.plug_in(planned.evse_uid, energy_kwh=planned.energy_kwh,
                                        connection_hours=(departure - now).total_seconds() / 3600.0,
                                        token_uid=planned.token_uid)
            car = session.car
            if planned.soc is not None:
                car.soc = planned.soc
                battery = car.model.battery_kwh
                target = planned.target_soc if planned.target_soc is not None else min(
                    0.95, planned.soc + planned.energy_kwh / battery)
                car.energy_demand_kwh = max(0.5, (target - planned.soc) * battery)
            spec = next(s for s in self.specs if s.party == cpo.party)
            record = SessionRecord(
                party=cpo.party, location_id=planned.location_id, external_id=session.id, start=session.start,
                departure=session.departure,
                car=Car(model=car.model, soc=car.soc, energy_demand_kwh=car.energy_demand_kwh),
                evse_max_kw=slot.max_kw, dc=slot.dc, need_kwh=car.energy_needed_kwh,
                v2g=self.scenario.strategy == "smart+v2g" and spec.v2g and car.can_discharge(slot.dc))
            self.records[(cpo.party, session.id)] = record
            if self._states_needs(cpo.party) and planned.booking_id is None:
                self.new_sessions[cpo.party].append(record)
            started += 1
        return started

    def _states_needs(self, party: str) -> bool:
        spec = next(s for s in self.specs if s.party == party)
        return spec.needs == "explicit"

    async def _post_needs(self, world: World) -> None:
        """The CPO's app states departure and energy of each new session (partner role)."""
        partner = world.client("partner")
        trader = world.client("trader")
        v2g = self.scenario.strategy == "smart+v2g"
        for party, records in list(self.new_sessions.items()):
            if not records:
                continue
            ids: dict[str, str] = {}
            offset = 0
            # Newest first: the new sessions are on the first page unless many started at once.
            limit = min(1000, max(100, 2 * len(records)))
            while True:
                page = await trader.get("/api/v1/sessions", params={"cpo": party, "status": "active",
                                                                   "limit": limit, "offset": offset})
                page.raise_for_status()
                body = page.json()
                ids.update({item["external_id"]: item["id"] for item in body["items"]})
                offset += len(body["items"])
                if offset >= body["total"] or not body["items"] or all(r.external_id in ids for r in records):
                    break
            spec = next(s for s in self.specs if s.party == party)
            for record in records:
                service_id = ids.get(record.external_id)
                if service_id is None:
                    continue
                record.service_id = service_id
                need: dict[str, Any] = {"departure": record.departure.isoformat(),
                                        "energy_kwh": round(record.need_kwh, 3)}
                if v2g and spec.v2g:
                    need.update(discharge_allowed=True, battery_kwh=record.car.model.battery_kwh,
                                min_soc_pct=V2G_MIN_SOC_PCT)
                response = await partner.put(f"/api/v1/sessions/{service_id}/charging-need", json=need)
                if response.status_code >= 300:
                    self.notes.append(f"need of {record.external_id} refused: {response.text[:160]}")
            self.new_sessions[party] = []

    def _record_energy(self, world: World, start: datetime, seconds: float) -> None:
        self._sample_cars(world, start, seconds)
        total = 0.0
        per_point: dict[str, float] = dict.fromkeys(self.point_members, 0.0)
        per_device: dict[tuple[str, str], float] = dict.fromkeys(self.device_caps, 0.0)
        where: dict[tuple[str, str], list[str]] = defaultdict(list)
        for point, members in self.point_members.items():
            for member in members:
                where[member].append(point)
        for cpo in world.cpos.values():
            for session in cpo.simulator.sessions.values():
                key = (cpo.party, session.id)
                before = self.kwh_seen.get(key, 0.0)
                if session.kwh == before:
                    continue
                delta = session.kwh - before
                self.kwh_seen[key] = session.kwh
                total += delta
                device = (cpo.party, session.slot.location_id)
                for point in where.get(device, ()):
                    per_point[point] += delta
                if device in per_device:
                    per_device[device] += delta
        self.log.starts.append(start)
        self.log.seconds.append(seconds)
        self.log.total_kwh.append(total)
        for point, value in per_point.items():
            self.log.point_kwh[point].append(value)
        for device, value in per_device.items():
            steps = self.log.device_kwh[device]
            steps.extend([0.0] * (len(self.log.starts) - 1 - len(steps)))  # curtailed since a later step
            steps.append(value)

    def _sample_cars(self, world: World, start: datetime, seconds: float) -> None:
        """Follow a few cars through the delivery period (before ``kwh_seen`` moves on to this step): per CPO,
        up to its share of CAR_SAMPLE_SIZE, a newly plugged-in car with energy to charge picked at even intervals."""
        delivery_start, end = self.timeline.delivery_start.astimezone(UTC), self.timeline.end.astimezone(UTC)
        if start < delivery_start or seconds <= 0:
            return
        share = max(1, math.ceil(CAR_SAMPLE_SIZE / max(len(world.cpos), 1)))
        spacing = (end - delivery_start) / share
        for cpo in world.cpos.values():
            sessions = cpo.simulator.sessions
            if self._next_car_pick.get(cpo.party, delivery_start) <= start < end:
                picked = sum(1 for party, _ in self.car_sample if party == cpo.party)
                new = None if picked >= share else next(
                    (s for s in sessions.values() if s.status.value == "ACTIVE" and s.car.energy_needed_kwh >= 2.0
                     and s.start >= start - timedelta(seconds=2 * seconds)
                     and (cpo.party, s.id) not in self.car_sample), None)
                if new is not None:
                    self.car_sample[(cpo.party, new.id)] = CarTrace(
                        party=cpo.party, session_id=new.id, location_id=new.slot.location_id,
                        evse_max_kw=new.slot.max_kw, start=new.start, departure=new.departure,
                        need_kwh=new.car.energy_needed_kwh + new.kwh)
                    self._next_car_pick[cpo.party] = start + spacing
            for (party, session_id), trace in self.car_sample.items():
                session = cpo.simulator.session(session_id) if party == cpo.party else None
                if session is None or (session.end is not None and session.end <= start):
                    continue
                drawn_kwh = session.kwh - self.kwh_seen.get((party, session_id), 0.0)
                trace.at.append(start)
                trace.seconds.append(seconds)
                trace.limit_kw.append(cpo.simulator.effective_limit_kw(session, start + timedelta(seconds=seconds / 2)))
                trace.power_kw.append(drawn_kwh * 3600.0 / seconds)
                trace.soc_pct.append(100.0 * session.car.soc)

    def _quiet_until(self, world: World) -> datetime | None:
        """The last departure, when every session still plugged in has its energy and may not discharge
        (it draws nothing more, controlled or not); None while one may still draw or feed back."""
        last: datetime | None = None
        for cpo in world.cpos.values():
            for session in cpo.simulator.sessions.values():
                if session.status.value != "ACTIVE":
                    continue
                record = self.records.get((cpo.party, session.id))
                if record is None or record.v2g or session.car.energy_needed_kwh > FULL_KWH:
                    return None
                last = session.departure if last is None else max(last, session.departure)
        return last

    def _active(self, world: World) -> int:
        return sum(1 for cpo in world.cpos.values() for s in cpo.simulator.sessions.values()
                   if s.status.value == "ACTIVE")

    def _in_windows(self, at: datetime, windows: list[tuple[datetime, datetime]], tail_s: float = 0.0) -> bool:
        return any(a <= at < b + timedelta(seconds=tail_s) for a, b in windows)

    def _setpoint_mw(self, at: datetime, windows: list[tuple[datetime, datetime]]) -> float:
        """The TSO asks for a share of the award inside a window (of 1 MW when nothing was awarded), else 0;
        negative (more consumption) for the down direction. ``setpoint_shape: varying`` ramps up over the full
        activation time and then moves between the share and half of it."""
        window = next(((a, b) for a, b in windows if a <= at < b), None)
        if window is None:
            return 0.0
        spec = self.scenario.afrr
        awarded = self.afrr_awarded_mw or spec.min_award_mw
        sign = -1.0 if spec.direction == "down" else 1.0
        share = spec.setpoint_share * setpoint_share(spec.setpoint_shape, (at - window[0]).total_seconds())
        return round(sign * share * awarded, 3)

    async def run(self) -> RunResult:
        """The whole run; returns what the KPIs need."""
        started = wallclock.monotonic()
        self.plan()
        self.prices = scenario_prices(self.scenario, self.timeline)
        world = await start_world(self.data_dir, self.clock, **self.settings_overrides)
        try:
            await self.setup(world)
            activation_check = await self._steps(world)
        finally:
            self.progress.done()
            await world.close()
        for (party, external_id), record in self.records.items():
            record.delivered_kwh = self.kwh_seen.get((party, external_id), 0.0)
        chargers = sum(spec.evses for spec in self.specs)
        self.notes.extend(self.site_physics.notes)
        return RunResult(
            scenario=self.scenario, timeline=self.timeline, log=self.log, sessions=list(self.records.values()),
            point_members=self.point_members, point_limits=dict(self.point_limits), prices=self.prices,
            chargers=chargers, afrr_awarded_mw=self.afrr_awarded_mw,
            afrr_capacity_revenue_eur=self.afrr_capacity_revenue_eur, notes=self.notes,
            wall_seconds=wallclock.monotonic() - started, activation_check=activation_check,
            afrr_offered_mw=self.afrr_offered_mw, device_caps=dict(self.device_caps), follow_end=self.follow_end,
            committed_kw=self.committed_kw,
            site_caps={(spec.party, loc): spec.site_max_kw for spec in self.specs if spec.site_max_kw is not None
                       for loc in location_ids(spec)},
            car_sample=list(self.car_sample.values()), sites=self.site_physics.sites)

    async def _steps(self, world: World) -> dict[str, Any]:
        tl = self.timeline
        delivery = (tl.delivery_start.astimezone(UTC), tl.end.astimezone(UTC))
        windows = [w for day in tl.delivery_days() for w in self._afrr_windows(day)
                   if w[0] < delivery[1] and w[1] > delivery[0]] if self.scenario.afrr.enabled else []
        trading = sorted(datetime.combine(day - timedelta(days=1), tl.trading_at.timetz()).replace(
            tzinfo=tl.zone).astimezone(UTC) for day in tl.delivery_days())
        delivery_start = tl.delivery_start.astimezone(UTC)
        end = tl.end.astimezone(UTC)
        now = self.clock.now()
        congestion_posted = False
        switched_period = False
        # Past the end, the run goes on (no new arrivals) until the last session of the period has left, so the
        # controlled and the uncontrolled twin are compared on the same sessions and the same energy.
        while now < end or (now < end + self.follow and self._active(world) > 0):
            if trading and now >= trading[0]:
                day = trading.pop(0).astimezone(tl.zone).date() + timedelta(days=1)
                await self.trade(world, day)
            if not congestion_posted and now >= tl.trading_at.astimezone(UTC):
                await self.post_congestion(world)
                congestion_posted = True
            delivering = now >= delivery_start
            if not switched_period and now >= delivery_start - timedelta(hours=1):
                for cpo in world.cpos.values():
                    cpo.simulator.config.period_s = int(self.scenario.report_period_seconds)
                switched_period = True
            if self._in_windows(now, windows, tail_s=self.scenario.afrr.tail_seconds):
                step = AFRR_STEP_S
            elif delivering and now >= end:
                # Following the period's last sessions: a cycle per ISP at most is plenty for cost and needs.
                step = max(self.scenario.step_seconds, 900.0)
            elif delivering:
                step = self.scenario.step_seconds
            else:
                step = self.scenario.warmup_step_seconds
            # Steps stay on their grid (from the delivery start) so that each lies within one ISP.
            grid = math.floor((now - delivery_start).total_seconds() / step + 1e-9) + 1
            target = delivery_start + timedelta(seconds=grid * step)
            for nxt in (*trading, delivery_start, end, *(a for a, _ in windows)):
                if now < nxt < target:
                    target = nxt
            quiet = delivering and now >= end and self._quiet_until(world) is not None
            if quiet:
                # Every car still plugged in is full and cannot discharge: nothing is drawn any more, whatever
                # the dispatcher would send, so the run jumps to the grid step where the loop would have found
                # the last one gone (the same end, the same figures), and the CPOs report one period for it.
                last = min(self._quiet_until(world) or now, end + self.follow)
                grid = math.ceil((last - delivery_start).total_seconds() / step - 1e-9)
                target = max(target, delivery_start + timedelta(seconds=grid * step))
                for cpo in world.cpos.values():
                    cpo.simulator.config.period_s = max(cpo.simulator.config.period_s,
                                                        math.ceil((target - now).total_seconds()))
            if now < end:
                for cpo in world.cpos.values():
                    self._plug_in(cpo, now)
            # New sessions reach the service before the cycle of this step, so none charges a step uncapped.
            await asyncio.gather(*(cpo.simulator.flush() for cpo in world.cpos.values()))
            await self._post_needs(world)
            # The sites' meters report the ISP that ended before the dispatcher's cycle reads them.
            await self.site_physics.meter(world, now)
            if delivering and not quiet:
                setpoint = None
                if self._in_windows(now, windows, tail_s=self.scenario.afrr.tail_seconds):
                    setpoint = self._setpoint_mw(now, windows)
                    await self._post_setpoint(world, now, setpoint)
                await world.dispatch(now)
                if setpoint is not None:
                    self.log.afrr.append({"at": now, "setpoint_mw": setpoint})
            self.clock.advance((target - now).total_seconds())
            await world.set_clock(target)
            await asyncio.gather(*(cpo.simulator.run_until(target) for cpo in world.cpos.values()))
            self._record_energy(world, now, (target - now).total_seconds())
            await self.site_physics.step(world, now, (target - now).total_seconds())
            now = target
            phase = "warm-up" if not delivering else "delivery" if now <= end else "follow"
            self.progress.show(now, phase, self._active(world))
        self.follow_end = now
        if self._active(world):
            self.notes.append(f"{self._active(world)} sessions were still plugged in when the run stopped "
                              f"(follow_hours {self.scenario.follow_hours:g}): what they drew afterwards is in no "
                              "figure, so the like-for-like energies may differ")
        self.committed_kw = await self._commitment(world, delivery_start, now)
        return await self._activation_check(world, windows)

    async def _commitment(self, world: World, start: datetime, end: datetime) -> dict[datetime, float]:
        """The pool's committed day-ahead schedule (kW per UTC ISP start) as the service recorded it."""
        response = await world.client("trader").get("/api/v1/commitments", params={
            "pool": ZONE_POOL, "start": start.isoformat(), "end": end.isoformat()})
        if response.status_code >= 300:
            self.notes.append(f"commitments not read: {response.status_code} {response.text[:160]}")
            return {}
        return {datetime.fromisoformat(item["isp_start"].replace("Z", "+00:00")).astimezone(UTC):
                float(item["power_kw"]) for item in response.json() if item["kind"] == "day_ahead_schedule"}

    async def _post_setpoint(self, world: World, at: datetime, setpoint_mw: float) -> None:
        self.afrr_seq += 1
        response = await world.client("market").post("/api/v1/market/afrr/setpoints", json={
            "pool": ZONE_POOL, "seq": self.afrr_seq, "timestamp": at.isoformat(), "setpoint_mw": setpoint_mw})
        if response.status_code >= 300:
            self.notes.append(f"setpoint {self.afrr_seq} refused: {response.status_code} {response.text[:160]}")

    async def _activation_check(self, world: World, windows: list[tuple[datetime, datetime]]) -> dict[str, Any]:
        """What the service recorded of each setpoint step (pool responses), for the KPIs and the invariants."""
        if not windows:
            return {"setpoints_sent": 0, "responses": []}
        market = world.client("market")
        first = min(a for a, _ in windows)
        last = max(b for _, b in windows) + timedelta(seconds=self.scenario.afrr.tail_seconds + 4)
        response = await market.get("/api/v1/market/afrr/response", params={
            "pool": ZONE_POOL, "start": first.isoformat(), "end": last.isoformat()})
        response.raise_for_status()
        return {"setpoints_sent": self.afrr_seq, "responses": response.json()}


def setpoint_share(shape: str, seconds: float) -> float:
    """Share of the full request ``seconds`` into an activation: 1 throughout (flat), or (varying) a ramp over
    the 300-s full activation time, then three minutes at 1, a 60-s ramp to 0.5, three minutes there, back."""
    if shape == "flat":
        return 1.0
    if seconds < 300.0:
        return seconds / 300.0
    t = (seconds - 300.0) % 480.0
    if t < 180.0:
        return 1.0
    if t < 240.0:
        return 1.0 - 0.5 * (t - 180.0) / 60.0
    if t < 420.0:
        return 0.5
    return 0.5 + 0.5 * (t - 420.0) / 60.0


def uncontrolled_twin(record: SessionRecord, resolution_s: float = 60.0,
                      caps: Sequence[tuple[datetime, datetime, float]] = ()) -> list[tuple[datetime, float]]:
    """Energy per ``resolution_s`` of the same car charging at full power from plug-in until full or departure.

    ``caps``: windows ``(start, end, kW)`` in which the car may draw at most that much (a DSO's §14a curtailment
    of its device): the most any control could give it.
    """
    car = Car(model=record.car.model, soc=record.car.soc, energy_demand_kwh=record.car.energy_demand_kwh)
    out: list[tuple[datetime, float]] = []
    at = record.start
    while at < record.departure:
        seconds = min(resolution_s, (record.departure - at).total_seconds())
        if caps:
            # A step that a window starts or ends inside of is cut there.
            step_end = at + timedelta(seconds=seconds)
            edges = [edge for low, high, _ in caps for edge in (low, high) if at < edge < step_end]
            if edges:
                seconds = (min(edges) - at).total_seconds()
        limit = min((kw for low, high, kw in caps if low <= at < high), default=None)
        power = charge_power_kw(car, evse_max_kw=record.evse_max_kw, dc=record.dc, limit_kw=limit,
                                v2g_allowed=False, seconds=seconds)
        if power <= 1e-9 and (limit is None or limit > 1e-9):
            break
        out.append((at, apply_power(car, power, seconds)))
        at += timedelta(seconds=seconds)
    return out


async def run_scenario(scenario: Scenario, *, progress: bool = True, data_dir: Path | None = None,
                       settings_overrides: dict[str, Any] | None = None) -> RunResult:
    """Run ``scenario`` in a fresh temporary data directory (or ``data_dir``); ``settings_overrides`` go to
    the service's Settings (e.g. ``database_url``/``redis_url`` of a test run)."""
    if data_dir is not None:
        return await Simulation(scenario, data_dir=data_dir, progress=progress,
                                settings_overrides=settings_overrides).run()
    with tempfile.TemporaryDirectory(prefix="vpp-simulate-") as tmp:
        return await Simulation(scenario, data_dir=Path(tmp), progress=progress,
                                settings_overrides=settings_overrides).run()


__all__ = ["CarTrace", "RunResult", "SessionRecord", "Simulation", "run_scenario", "uncontrolled_twin"]
