"""Simulated sites behind the meter: PV, the building's load and a battery beside the simulated chargers.

What a real site's energy manager and meter would do, over the service's real interface:

* at set-up, each site's equipment is stated (``PUT /api/v1/portfolio/sites/{id}/equipment``) and its meter
  reports the week before the simulation begins (load and PV, ``PUT .../series/{kind}``): the history the
  service's seasonal-naive forecast reads; grid-stress signals and outages are posted for every delivery day;
* every ISP the meter reports the ISP that ended (load, PV, grid import and export, the battery's state of
  charge), and the battery takes its power from the service's plan of the site (``GET .../plan``; a site whose
  plan is not of this ISP, because no car was plugged in there to re-plan the pool, asks for one: ``POST``);
* each step: PV and load from the profiles, the cars' energy as the simulated CPOs delivered it at the site's
  location, the battery within its power and SoC limits (one-way efficiency as the planner assumes), and the
  meter's import and export. PV the export limit cannot take is curtailed. In an outage the grid is gone: the
  battery serves what the house, the cars and the PV leave, and what nobody can serve is unserved load.

Profiles: household loads and PV are ev2gym's (``vpp.data.site_profiles``); ``office`` and ``depot`` loads are
synthetic shapes (below), scaled to ``load_kw`` on average.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from itertools import pairwise
from typing import TYPE_CHECKING, Any

import numpy as np

from vpp.data.site_profiles import homes, household_load_kw, pv_kw_per_kwp
from vpp.domain.isp import ISP, floor_to_isp
from vpp.simulation.site_spec import SiteSpec

if TYPE_CHECKING:
    from vpp.simulation.plan import Timeline
    from vpp.simulation.scenario import CpoSpec, Scenario

HISTORY_DAYS = 7
ISP_H = 0.25


def office_shape(local: datetime) -> float:
    """Relative office load: 1 on working days 08:00-18:00, 0.35 otherwise (lights, servers, ventilation)."""
    working = local.weekday() < 5 and time(8) <= local.time() < time(18)
    return 1.0 if working else 0.35


def depot_shape(local: datetime) -> float:
    """Relative depot load: workshops and offices 06:00-22:00 (1), a night base (0.5)."""
    return 1.0 if time(6) <= local.time() < time(22) else 0.5


@dataclass
class SiteState:
    """One simulated site: its spec, battery, the ISP being metered and its log per ISP."""

    site_id: str
    party: str
    location_id: str
    spec: SiteSpec
    household: int
    soc_kwh: float | None
    capacity_kwh: float
    plan_start: datetime | None = None
    plan_battery_kw: list[float] = field(default_factory=list)
    # Energy (kWh) per ISP start: pv available, pv used, load, cars, battery (+ charging), import, export, unserved.
    isps: dict[datetime, dict[str, float]] = field(default_factory=dict)


class SitePhysics:
    """The sites of a scenario (see the module docstring)."""

    def __init__(self, scenario: Scenario, timeline: Timeline, specs: list[CpoSpec]) -> None:
        from vpp.simulation.plan import location_ids
        from vpp.simulation.runner import site_id

        self.scenario = scenario
        self.timeline = timeline
        self.sites: list[SiteState] = []
        self.notes: list[str] = []
        by_party = {spec.party: spec for spec in specs}
        for spec in scenario.sites:
            for n, loc in enumerate(location_ids(by_party[spec.cpo])):
                capacity = spec.battery.capacity_kwh if spec.battery else 0.0
                soc = capacity * spec.battery.soc_pct / 100.0 if spec.battery else None
                self.sites.append(SiteState(site_id=site_id(spec.cpo, loc), party=spec.cpo, location_id=loc,
                                            spec=spec, household=(spec.household + n) % homes(), soc_kwh=soc,
                                            capacity_kwh=capacity))
        self._by_location = {(s.party, s.location_id): s for s in self.sites}
        self._kwh_seen: dict[tuple[str, str], float] = {}
        self._metered: datetime | None = None
        self._planned: datetime | None = None
        self._profile_cache: dict[tuple[str, datetime], tuple[float, float]] = {}
        self._means: dict[int, float] = {}

    @property
    def enabled(self) -> bool:
        """True when the scenario has sites behind the meter."""
        return bool(self.sites)

    # ------------------------------------------------------------------------------- profiles

    def profile(self, site: SiteState, isp: datetime) -> tuple[float, float]:
        """(PV kW, load kW) of the site in the ISP starting at ``isp``."""
        key = (site.site_id, isp)
        cached = self._profile_cache.get(key)
        if cached is not None:
            return cached
        spec = site.spec
        pv = float(pv_kw_per_kwp([isp])[0]) * spec.pv_kwp if spec.pv_kwp > 0 else 0.0
        load = 0.0
        local = isp.astimezone(self.timeline.zone)
        if spec.load == "household":
            raw = float(household_load_kw([isp], site.household, self.scenario.timezone)[0])
            load = raw * (spec.load_kw / self._household_mean(site.household) if spec.load_kw else 1.0)
        elif spec.load == "office":
            load = (spec.load_kw or 10.0) * office_shape(local) / self._mean_shape(office_shape)
        elif spec.load == "depot":
            load = (spec.load_kw or 20.0) * depot_shape(local) / self._mean_shape(depot_shape)
        elif spec.load == "flat":
            load = spec.load_kw or 0.0
        self._profile_cache[key] = (pv, load)
        return pv, load

    def _household_mean(self, home: int) -> float:
        """The home's mean load over the week before the delivery, to scale it to ``load_kw``."""
        if home not in self._means:
            first = self.timeline.delivery_start.astimezone(UTC) - timedelta(days=HISTORY_DAYS)
            isps = [first + ISP * k for k in range(96 * HISTORY_DAYS)]
            self._means[home] = float(np.mean(household_load_kw(isps, home, self.scenario.timezone)))
        return max(self._means[home], 1e-6)

    def _mean_shape(self, shape: Any) -> float:
        start = self.timeline.delivery_start.astimezone(self.timeline.zone)
        week = [start - timedelta(minutes=15 * k) for k in range(96 * 7)]
        return float(np.mean([shape(t) for t in week]))

    # ------------------------------------------------------------------------------- set-up

    async def setup(self, world: Any) -> None:
        """State each site's equipment, report its meter's last week, post the signals of every delivery day."""
        admin = world.client("admin")
        begin = floor_to_isp(self.timeline.begin.astimezone(UTC))
        first = begin - timedelta(days=HISTORY_DAYS)
        isps = [first + ISP * k for k in range(int((begin - first) / ISP))]
        for site in self.sites:
            spec = site.spec
            body: dict[str, Any] = {"import_max_kw": spec.import_max_kw, "export_max_kw": spec.export_max_kw,
                                    "subscription_kva": spec.subscription_kva, "pv_kwp": spec.pv_kwp,
                                    "tariff": spec.tariff}
            if spec.battery is not None:
                body["battery"] = {**spec.battery.model_dump(exclude={"soc_pct"}), "soc_kwh": site.soc_kwh}
            for kind in ("load", "pv"):
                if kind == "pv" and spec.pv_kwp <= 0:
                    continue
                values = [round(self.profile(site, t)[0 if kind == "pv" else 1], 4) for t in isps]
                await self._put(admin, f"/api/v1/portfolio/sites/{site.site_id}/series/{kind}",
                                {"start": first.isoformat(), "values": values})
            await self._put(admin, f"/api/v1/portfolio/sites/{site.site_id}/equipment", body)
            for day in self.timeline.delivery_days():
                for kind, windows in (("grid_stress", spec.grid_stress), ("outage", spec.outages)):
                    for window in windows:
                        start = datetime.combine(day, time.fromisoformat(window.start), tzinfo=self.timeline.zone)
                        end = datetime.combine(day, time.fromisoformat(window.end), tzinfo=self.timeline.zone)
                        response = await admin.post("/api/v1/portfolio/signals", json={
                            "kind": kind, "site_id": site.site_id, "mode": window.mode,
                            "start": start.astimezone(UTC).isoformat(), "end": end.astimezone(UTC).isoformat()})
                        if response.status_code >= 300:
                            raise RuntimeError(f"site {site.site_id}: signal refused: {response.text[:300]}")

    @staticmethod
    async def _put(client: Any, url: str, body: dict[str, Any]) -> None:
        response = await client.put(url, json=body)
        if response.status_code >= 300:
            raise RuntimeError(f"{url} refused: {response.status_code} {response.text[:300]}")

    # ------------------------------------------------------------------------------- steps

    def in_outage(self, site: SiteState, at: datetime) -> bool:
        """Whether ``at`` falls in one of the site's outage windows."""
        return in_window(at.astimezone(self.timeline.zone).time(), site.spec.outages)

    async def step(self, world: Any, start: datetime, seconds: float) -> None:
        """The sites over [start, start + seconds): meter the ISP that ended, follow the plan, balance."""
        if not self.sites or seconds <= 0:
            return
        cars = self._cars_kwh(world)
        await self.meter(world, start)
        # The plan to follow is fetched after the step's dispatch: the dispatcher's cycle counts on the battery
        # plan of the re-plan made before it, so the battery follows that one, not the one stored before it.
        isp = floor_to_isp(start)
        if self._planned is None or isp > self._planned:
            await self._fetch_plans(world, isp)
            self._planned = isp
        end = start + timedelta(seconds=seconds)
        # A step may span ISPs (the warm-up): split it, the cars' energy evenly over its time.
        cuts = [start]
        while floor_to_isp(cuts[-1]) + ISP < end:
            cuts.append(floor_to_isp(cuts[-1]) + ISP)
        cuts.append(end)
        for site in self.sites:
            for a, b in pairwise(cuts):
                share = (b - a).total_seconds() / seconds
                self._balance(site, a, (b - a).total_seconds(), cars.get(site.site_id, 0.0) * share)

    async def meter(self, world: Any, at: datetime) -> None:
        """At the first moment of an ISP: report the ISP that ended."""
        isp = floor_to_isp(at)
        if self.sites and (self._metered is None or isp > self._metered):
            await self._meter(world, isp)
            self._metered = isp

    def _cars_kwh(self, world: Any) -> dict[str, float]:
        out: dict[str, float] = defaultdict(float)
        for party, cpo in world.cpos.items():
            for session in cpo.simulator.sessions.values():
                site = self._by_location.get((party, session.slot.location_id))
                if site is None:
                    continue
                key = (party, session.id)
                before = self._kwh_seen.get(key, 0.0)
                if session.kwh != before:
                    out[site.site_id] += session.kwh - before
                    self._kwh_seen[key] = session.kwh
        return out

    def _balance(self, site: SiteState, at: datetime, seconds: float, cars_kwh: float) -> None:
        hours = seconds / 3600.0
        isp = floor_to_isp(at)
        pv_kw, load_kw = self.profile(site, isp)
        row = site.isps.setdefault(isp, dict.fromkeys(
            ("pv_kwh", "pv_used_kwh", "load_kwh", "cars_kwh", "cars_out_kwh", "battery_kwh", "battery_out_kwh",
             "import_kwh", "export_kwh", "unserved_kwh", "hours"), 0.0))
        setpoint = 0.0
        if site.plan_start is not None:
            k = int((isp - site.plan_start) / ISP)
            if 0 <= k < len(site.plan_battery_kw):
                setpoint = site.plan_battery_kw[k]
        outage = self.in_outage(site, at)
        net_kwh = (load_kw - pv_kw) * hours + cars_kwh
        if outage:
            setpoint = -net_kwh / hours if hours > 0 else 0.0  # the battery holds the island as far as it can
        battery_kwh = self._battery(site, setpoint, hours)
        net_kwh += battery_kwh
        curtailed = 0.0
        unserved = 0.0
        spec = site.spec
        if outage:
            if net_kwh > 0:
                unserved, net_kwh = net_kwh, 0.0
            else:
                curtailed, net_kwh = -net_kwh, 0.0
        elif net_kwh < 0 and spec.export_max_kw is not None and -net_kwh > spec.export_max_kw * hours:
            curtailed = -net_kwh - spec.export_max_kw * hours
            net_kwh = -spec.export_max_kw * hours
        row["pv_kwh"] += pv_kw * hours
        row["pv_used_kwh"] += pv_kw * hours - min(curtailed, pv_kw * hours)
        row["load_kwh"] += load_kw * hours
        row["cars_kwh"] += max(cars_kwh, 0.0)
        row["cars_out_kwh"] += max(-cars_kwh, 0.0)
        row["battery_kwh"] += max(battery_kwh, 0.0)
        row["battery_out_kwh"] += max(-battery_kwh, 0.0)
        row["import_kwh"] += max(net_kwh, 0.0)
        row["export_kwh"] += max(-net_kwh, 0.0)
        row["unserved_kwh"] += unserved
        row["hours"] += hours

    def _battery(self, site: SiteState, setpoint_kw: float, hours: float) -> float:
        """Energy the battery takes from (+) or gives to (-) the site in the step, within its limits."""
        battery = site.spec.battery
        if battery is None or site.soc_kwh is None or hours <= 0:
            return 0.0
        power = max(-battery.power_kw, min(battery.power_kw, setpoint_kw))
        low = battery.capacity_kwh * battery.min_soc_pct / 100.0
        high = battery.capacity_kwh * battery.max_soc_pct / 100.0
        if power >= 0:
            stored = min(power * hours * battery.efficiency, max(high - site.soc_kwh, 0.0))
            site.soc_kwh += stored
            return stored / battery.efficiency
        given = min(-power * hours, max(site.soc_kwh - low, 0.0) * battery.efficiency)
        site.soc_kwh -= given / battery.efficiency
        return -given

    async def _meter(self, world: Any, isp: datetime) -> None:
        """Report the ISP before ``isp`` (meter, battery SoC)."""
        admin = world.client("admin")
        previous = isp - ISP
        readings = []
        for site in self.sites:
            row = site.isps.get(previous)
            reading: dict[str, Any] = {"site_id": site.site_id, "isp_start": previous.isoformat()}
            if row is not None and row["hours"] > 0:
                hours = row["hours"]
                reading.update({"load_kw": round(row["load_kwh"] / hours, 4),
                                "import_kw": round(row["import_kwh"] / hours, 4),
                                "export_kw": round(row["export_kwh"] / hours, 4)})
                if site.spec.pv_kwp > 0:
                    reading["pv_kw"] = round(row["pv_kwh"] / hours, 4)
            if site.soc_kwh is not None:
                reading["battery_soc_kwh"] = round(min(site.soc_kwh, site.capacity_kwh), 4)
            if len(reading) > 2:
                readings.append(reading)
        if readings:
            response = await admin.post("/api/v1/portfolio/site-readings", json=readings)
            if response.status_code >= 300:
                raise RuntimeError(f"meter readings refused: {response.status_code} {response.text[:300]}")

    async def _fetch_plans(self, world: Any, isp: datetime) -> None:
        """Fetch each battery site's plan for ``isp`` (asked for when the stored one begins before it)."""
        admin = world.client("admin")
        for site in self.sites:
            if site.spec.battery is None:
                continue
            response = await admin.get(f"/api/v1/portfolio/sites/{site.site_id}/plan")
            plan = response.json() if response.status_code == 200 else None
            if plan is None or datetime.fromisoformat(plan["start"]) < isp:
                response = await admin.post(f"/api/v1/portfolio/sites/{site.site_id}/plan")
                if response.status_code >= 300:
                    self.notes.append(f"site {site.site_id}: no plan at {isp:%H:%M}: {response.text[:160]}")
                    continue
                plan = response.json()
            site.plan_start = datetime.fromisoformat(plan["start"])
            site.plan_battery_kw = [float(v) for v in plan["battery_kw"]]


def usable_kwh(spec: SiteSpec) -> float:
    """The battery's usable energy (0 without one)."""
    b = spec.battery
    return 0.0 if b is None else b.capacity_kwh * (b.max_soc_pct - b.min_soc_pct) / 100.0


def in_window(local: time, windows: list[Any]) -> bool:
    """Whether a local time of day lies in one of ``windows``."""
    return any(time.fromisoformat(w.start) <= local < time.fromisoformat(w.end) for w in windows)


