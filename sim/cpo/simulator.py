"""The simulated CPO's behaviour: fleet stepping, OCPI pushes, charging-profile handling and registration."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import secrets
from collections import deque
from datetime import datetime, timedelta
from typing import Any

import httpx
from pydantic import ValidationError

from adapters.ocpi.v2_2_1.http1 import Http1Error, Http1Pool, Origin, build_request
from adapters.ocpi.v2_2_1.schemas import (
    ActiveChargingProfile,
    ActiveChargingProfileResult,
    BusinessDetails,
    Cdr,
    CdrDimension,
    CdrDimensionType,
    CdrLocation,
    ChargingPeriod,
    ChargingProfile,
    ChargingProfilePeriod,
    ChargingProfileResponse,
    ChargingProfileResponseType,
    ChargingProfileResult,
    ChargingProfileResultType,
    ChargingRateUnit,
    ClearProfileResult,
    ConnectorFormat,
    ConnectorType,
    Credentials,
    CredentialsRole,
    Endpoint,
    EvseStatus,
    GeoLocation,
    InterfaceRole,
    ModuleID,
    OcpiResponse,
    PowerType,
    Price,
    Role,
    SessionStatus,
    Version,
    VersionDetails,
)
from adapters.ocpi.v2_2_1.transport import (
    AUTHORIZATION,
    OCPI_VERSION,
    UNROUTED_MODULES,
    OcpiStatus,
    authorization_header,
    ensure_list,
    format_datetime,
    is_success,
    join_url,
    message_id_headers,
    routing_headers,
    to_jsonable,
    unwrap_single,
)
from sim.cpo.clock import Clock, ManualClock
from sim.cpo.config import CpoConfig
from sim.cpo.elaad import ElaadSampler, EvModel
from sim.cpo.faults import FaultInjector
from sim.cpo.fleet import (
    Car,
    apply_power,
    charge_power_kw,
    limit_to_kw,
    profile_changes_after,
    profile_limit_at,
)
from sim.cpo.state import (
    COUNTRY_ALPHA3,
    Connection,
    EvseSlot,
    Outbound,
    PendingCallback,
    SimSession,
    SiteLocation,
)

logger = logging.getLogger(__name__)

AC_VOLTAGE_V = 230
DC_VOLTAGE_V = 500
VAT = 0.21


class SimError(Exception):
    """An OCPI-level refusal: HTTP status plus OCPI status code and message for the envelope."""

    def __init__(self, http_status: int, status_code: int, message: str) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.status_code = status_code
        self.message = message


# The credentials POST waits for the peer to call our versions and details back and to store us: on a loaded host
# that takes far longer than an ordinary call, so it gets a long deadline of its own. (A POST given up on after the
# peer registered us may be retried with token A only while the peer allows it: this service does for 10 minutes.)
REGISTRATION_TIMEOUT_S = 120.0


class CpoSimulator:
    """One simulated CPO platform: EVSEs, cars, sessions and its OCPI conversation with SCSPs."""

    def __init__(self, config: CpoConfig, *, clock: Clock | None = None, http: httpx.AsyncClient | None = None) -> None:
        self.config = config
        self.party = config.party_ref
        self.clock: Clock = clock or ManualClock()
        self._sim_time = self.clock.now()
        self._rng = random.Random(config.seed)
        self.faults = FaultInjector(config.faults, seed=None if config.seed is None else config.seed + 1)
        self._sampler = ElaadSampler(self._rng, config.category, v2g=config.v2g)
        self._http = http
        self._owns_http = http is None
        # Pushes go over keep-alive HTTP/1.1 connections parsed in C (one pool per peer origin) unless a client
        # was injected (tests route it in memory): httpx's request and response models cost the simulating process
        # more CPU than the service spends on a Session PATCH.
        self._pools: dict[Origin, Http1Pool] = {}
        self.token_a: set[str] = {config.token_a or secrets.token_urlsafe(24)}
        self.connections: dict[str, Connection] = {}
        self.sessions: dict[str, SimSession] = {}
        self.cdrs: list[Cdr] = []
        self._cdr_periods: dict[str, list[ChargingPeriod]] = {}
        self._callbacks: list[PendingCallback] = []
        self._outbox: list[Outbound] = []
        self.sent: deque[dict[str, Any]] = deque(maxlen=500)
        self._lock = asyncio.Lock()
        self._run_id = f"{self._rng.getrandbits(24):06X}"
        self._counter = 0
        self.locations = self._build_locations()
        self.slots = {slot.evse_uid.casefold(): slot for loc in self.locations for slot in loc.slots}
        if config.auto_arrivals:
            for slot in self.slots.values():
                slot.next_arrival = self._sampler.next_arrival(self._sim_time)

    # ------------------------------------------------------------------------------- basics

    def now(self) -> datetime:
        """Simulated time (advanced by step() or the real-time ticker)."""
        return self._sim_time

    @property
    def http(self) -> httpx.AsyncClient:
        """Outbound HTTP client (created on first use unless one was injected)."""
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=10.0)
        return self._http

    async def aclose(self) -> None:
        """Close the outbound client if this simulator created it."""
        if self._owns_http and self._http is not None:
            await self._http.aclose()
            self._http = None
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()

    @property
    def versions_url(self) -> str:
        """Our version information endpoint."""
        return join_url(self.config.base_url, "ocpi/versions")

    @property
    def details_url(self) -> str:
        """Our 2.2.1 version details endpoint."""
        return join_url(self.config.base_url, "ocpi", OCPI_VERSION)

    def module_url(self, module: str) -> str:
        """Base URL of one of our modules."""
        return join_url(self.config.base_url, "ocpi/cpo", OCPI_VERSION, module)

    def versions(self) -> list[Version]:
        """Versions we speak."""
        return [Version(version=OCPI_VERSION, url=self.details_url)]

    def version_details(self) -> VersionDetails:
        """Our 2.2.1 endpoints, as a CPO."""
        sender, receiver = InterfaceRole.SENDER, InterfaceRole.RECEIVER
        modules = [
            (ModuleID.CREDENTIALS, sender),
            (ModuleID.LOCATIONS, sender),
            (ModuleID.SESSIONS, sender),
            (ModuleID.CDRS, sender),
            (ModuleID.CHARGING_PROFILES, receiver),
        ]
        return VersionDetails(
            version=OCPI_VERSION,
            endpoints=[Endpoint(identifier=m, role=r, url=self.module_url(m)) for m, r in modules],
        )

    def own_credentials(self, token: str) -> Credentials:
        """Our credentials object carrying ``token`` for the peer to use."""
        role = CredentialsRole(
            role=Role.CPO,
            business_details=BusinessDetails(name=self.config.name),
            party_id=self.party.party_id,
            country_code=self.party.country_code,
        )
        return Credentials(token=token, url=self.versions_url, roles=[role])

    def issue_token_a(self) -> str:
        """Create another registration token A (handed to an SCSP out of band)."""
        token = secrets.token_urlsafe(24)
        self.token_a.add(token)
        return token

    def connection_for(self, token: str) -> Connection | None:
        """The registered peer presenting this token."""
        return self.connections.get(token)

    # ----------------------------------------------------------------------------- topology

    def _build_locations(self) -> list[SiteLocation]:
        config = self.config
        power_type = PowerType(config.power_type)
        dc = power_type == PowerType.DC
        voltage = DC_VOLTAGE_V if dc else AC_VOLTAGE_V
        phases = 3 if power_type == PowerType.AC_3_PHASE else 1
        amperage = math.ceil(config.max_kw * 1000 / (voltage * phases))
        now = self._sim_time
        locations: list[SiteLocation] = []
        count = math.ceil(config.evses / config.evses_per_location)
        for index in range(count):
            location_id = f"LOC{index + 1:03d}"
            first = index * config.evses_per_location
            slots = [
                EvseSlot(
                    location_id=location_id,
                    evse_uid=f"{location_id}-{number + 1:02d}",
                    evse_id=f"{self.party.country_code}*{self.party.party_id}*E{index + 1:03d}{number + 1:02d}",
                    connector_id="1",
                    power_type=power_type,
                    voltage_v=voltage,
                    amperage_a=amperage,
                    max_kw=config.max_kw,
                    v2g=config.v2g,
                    profile_capable=config.charging_profile_capable,
                    status=EvseStatus.AVAILABLE,
                    last_updated=now,
                )
                for number in range(min(config.evses_per_location, config.evses - first))
            ]
            locations.append(
                SiteLocation(
                    id=location_id,
                    name=f"{config.name} site {index + 1}",
                    address=f"Simulatiestraat {index + 1}",
                    city="Arnhem",
                    postal_code="6811AA",
                    country=COUNTRY_ALPHA3.get(self.party.country_code.upper(), "NLD"),
                    latitude=51.98 + 0.01 * index,
                    longitude=5.91 + 0.01 * index,
                    slots=slots,
                    last_updated=now,
                )
            )
        return locations

    def location(self, location_id: str) -> SiteLocation | None:
        """Location by id (case-insensitive)."""
        return next((loc for loc in self.locations if loc.id.casefold() == location_id.casefold()), None)

    def session(self, session_id: str) -> SimSession | None:
        """Session by id (case-insensitive)."""
        return self.sessions.get(session_id.casefold())

    # ------------------------------------------------------------------------------ sessions

    def plug_in(
        self,
        evse_uid: str | None = None,
        *,
        energy_kwh: float | None = None,
        soc: float | None = None,
        connection_hours: float | None = None,
        model: str | None = None,
        reports_soc: bool | None = None,
        token_uid: str | None = None,
    ) -> SimSession:
        """Connect a car (sampled from ElaadNL unless given) to an EVSE and start its session.

        ``token_uid``: the uid of the token that starts it (a shared car's own token, which its bookings name);
        a random one unless given. The session's first PUT already carries it.
        """
        if evse_uid is None:
            slot = next((s for s in self.slots.values() if s.session_id is None), None)
            if slot is None:
                raise ValueError("no free EVSE")
        else:
            found = self.slots.get(evse_uid.casefold())
            if found is None:
                raise ValueError(f"unknown EVSE {evse_uid}")
            if found.session_id is not None:
                raise ValueError(f"EVSE {evse_uid} is occupied")
            slot = found
        return self._start_session(
            slot, energy_kwh=energy_kwh, soc=soc, hours=connection_hours, model=model, reports_soc=reports_soc,
            token_uid=token_uid,
        )

    def _pick_model(self, name: str | None) -> EvModel:
        if name is None:
            return self._sampler.car()
        for _ in range(200):
            candidate = self._sampler.car()
            if candidate.name.casefold() == name.casefold():
                return candidate
        raise ValueError(f"unknown car model {name}")

    def _start_session(
        self,
        slot: EvseSlot,
        *,
        energy_kwh: float | None = None,
        soc: float | None = None,
        hours: float | None = None,
        model: str | None = None,
        reports_soc: bool | None = None,
        token_uid: str | None = None,
    ) -> SimSession:
        now = self._sim_time
        ev = self._pick_model(model)
        demand = min(energy_kwh if energy_kwh is not None else self._sampler.energy_demand_kwh(), 0.95 * ev.battery_kwh)
        start_soc = soc if soc is not None else min(0.9, max(0.05, 0.9 - demand / ev.battery_kwh))
        if reports_soc is None:
            reports_soc = self.config.report_soc == "always" or (self.config.report_soc == "dc" and slot.dc)
        car = Car(model=ev, soc=start_soc, energy_demand_kwh=demand, reports_soc=reports_soc)
        self._counter += 1
        drawn_uid = f"{self._rng.getrandbits(32):08X}"
        session = SimSession(
            id=f"{self._run_id}-{self._counter:06d}",
            slot=slot,
            car=car,
            start=now,
            departure=now + timedelta(hours=hours if hours is not None else self._sampler.connection_hours()),
            # Drawn in any case, so that a given token leaves every later draw as it was.
            token_uid=token_uid or drawn_uid,
            period_start=now,
            last_updated=now,
        )
        self.sessions[session.id.casefold()] = session
        slot.session_id, slot.status, slot.last_updated, slot.next_arrival = (
            session.id,
            EvseStatus.CHARGING,
            now,
            None,
        )
        body = session.to_wire(self.party, self.config.tariff_eur_per_kwh).to_json_dict()
        self._to_session_receivers(session, "PUT", body, "session_start")
        return session

    def unplug(self, session_id: str) -> SimSession:
        """End a session now (the driver leaves)."""
        session = self.session(session_id)
        if session is None or session.status != SessionStatus.ACTIVE:
            raise ValueError(f"no active session {session_id}")
        session.departure = self._sim_time
        self._end_session(session, self._sim_time)
        return session

    def _to_session_receivers(self, session: SimSession, method: str, body: Any, kind: str) -> None:
        for connection in list(self.connections.values()):
            url = connection.endpoint(ModuleID.SESSIONS, InterfaceRole.RECEIVER)
            if url is None:
                continue
            target = join_url(url, self.party.country_code, self.party.party_id, session.id)
            self._outbox.append(Outbound(method, target, ModuleID.SESSIONS, connection, body, kind, lane=session.id))

    def _close_period(self, session: SimSession, at: datetime) -> ChargingPeriod | None:
        start = session.period_start
        if start is None or at <= start:
            return None
        hours = (at - start).total_seconds() / 3600.0
        energy = session.period_energy_kwh
        dimensions = [
            CdrDimension(type=CdrDimensionType.ENERGY, volume=round(energy, 4)),
            CdrDimension(type=CdrDimensionType.POWER, volume=round(energy / hours, 4)),
        ]
        if session.car.reports_soc:
            dimensions.append(
                CdrDimension(type=CdrDimensionType.STATE_OF_CHARGE, volume=round(session.car.soc * 100, 1))
            )
        period = ChargingPeriod(start_date_time=start, dimensions=dimensions)
        session.periods.append(period)
        charging_h = session.period_charging_s / 3600.0
        cdr_dimensions = [
            CdrDimension(type=CdrDimensionType.ENERGY, volume=round(energy, 4)),
            CdrDimension(type=CdrDimensionType.TIME, volume=round(charging_h, 4)),
        ]
        if hours - charging_h > 1e-6:
            cdr_dimensions.append(CdrDimension(type=CdrDimensionType.PARKING_TIME, volume=round(hours - charging_h, 4)))
        self._cdr_periods.setdefault(session.id, []).append(
            ChargingPeriod(start_date_time=start, dimensions=cdr_dimensions)
        )
        session.period_start = at
        session.period_energy_kwh = 0.0
        session.period_charging_s = 0.0
        return period

    def _patch(self, session: SimSession, at: datetime, period: ChargingPeriod | None, **extra: Any) -> None:
        session.last_updated = at
        body: dict[str, Any] = {"kwh": round(session.kwh, 4), **extra, "last_updated": format_datetime(at)}
        if period is not None:
            body["charging_periods"] = [period.to_json_dict()]
        self._to_session_receivers(session, "PATCH", body, "session_update")

    def _end_session(self, session: SimSession, at: datetime) -> None:
        period = self._close_period(session, at)
        session.status = SessionStatus.COMPLETED
        session.end = at
        session.power_kw = 0.0
        slot = session.slot
        slot.session_id, slot.status, slot.last_updated = None, EvseStatus.AVAILABLE, at
        if self.config.auto_arrivals:
            slot.next_arrival = self._sampler.next_arrival(at + timedelta(minutes=5))
        self._patch(session, at, period, status=SessionStatus.COMPLETED.value, end_date_time=format_datetime(at))
        self._callbacks = [cb for cb in self._callbacks if cb.session_id != session.id]
        cdr = self._build_cdr(session)
        self.cdrs.append(cdr)
        for connection in list(self.connections.values()):
            url = connection.endpoint(ModuleID.CDRS, InterfaceRole.RECEIVER)
            if url is not None:
                self._outbox.append(
                    Outbound("POST", url, ModuleID.CDRS, connection, cdr.to_json_dict(), "cdr", lane=session.id))

    def _build_cdr(self, session: SimSession) -> Cdr:
        end = session.end or self._sim_time
        slot = session.slot
        location = self.location(slot.location_id)
        assert location is not None
        periods = self._cdr_periods.pop(session.id, None) or [
            ChargingPeriod(
                start_date_time=session.start,
                dimensions=[CdrDimension(type=CdrDimensionType.ENERGY, volume=0.0)],
            )
        ]
        cost = round(max(session.kwh, 0.0) * self.config.tariff_eur_per_kwh, 2)
        return Cdr(
            country_code=self.party.country_code,
            party_id=self.party.party_id,
            id=f"{session.id}-CDR",
            start_date_time=session.start,
            end_date_time=end,
            session_id=session.id,
            cdr_token=session.cdr_token(),
            auth_method=session.to_wire(self.party, 0).auth_method,
            cdr_location=CdrLocation(
                id=location.id,
                name=location.name,
                address=location.address,
                city=location.city,
                postal_code=location.postal_code,
                country=location.country,
                coordinates=GeoLocation(latitude=f"{location.latitude:.6f}", longitude=f"{location.longitude:.6f}"),
                evse_uid=slot.evse_uid,
                evse_id=slot.evse_id,
                connector_id=slot.connector_id,
                connector_standard=ConnectorType.IEC_62196_T2_COMBO if slot.dc else ConnectorType.IEC_62196_T2,
                connector_format=ConnectorFormat.CABLE if slot.dc else ConnectorFormat.SOCKET,
                connector_power_type=slot.power_type,
            ),
            currency="EUR",
            charging_periods=periods,
            total_cost=Price(excl_vat=cost, incl_vat=round(cost * (1 + VAT), 2)),
            total_energy=round(session.kwh, 4),
            total_time=round((end - session.start).total_seconds() / 3600.0, 4),
            total_parking_time=round(session.parked_s / 3600.0, 4),
            last_updated=end,
        )

    # ---------------------------------------------------------------------------------- physics

    def effective_limit_kw(self, session: SimSession, at: datetime) -> float | None:
        """Minimum over all peers' profile limits at ``at``, in kW (None if no profile limits now)."""
        limits: list[float] = []
        for profile in session.profiles.values():
            limit = profile_limit_at(profile, at, session.start)
            if limit is not None:
                slot = session.slot
                limits.append(limit_to_kw(limit, profile.charging_rate_unit, slot.power_type, slot.voltage_v))
        return min(limits) if limits else None

    def _advance_session(self, session: SimSession, at: datetime, seconds: float) -> None:
        slot = session.slot
        power = charge_power_kw(
            session.car,
            evse_max_kw=slot.max_kw,
            dc=slot.dc,
            limit_kw=self.effective_limit_kw(session, at),
            v2g_allowed=slot.v2g,
            seconds=seconds,
        )
        energy = apply_power(session.car, power, seconds)
        session.power_kw = power
        session.kwh += energy
        session.period_energy_kwh += energy
        if abs(power) > 1e-3:
            session.period_charging_s += seconds
        else:
            session.parked_s += seconds

    def period_s(self, at: datetime) -> float:
        """The charging period length at ``at``: the fast one inside a fast window (aFRR), else ``period_s``."""
        fast = self.config.fast_period_s
        if fast is not None and any(a <= at < b for a, b in self.config.fast_windows):
            return float(fast)
        return float(self.config.period_s)

    def _active(self) -> list[SimSession]:
        return [s for s in self.sessions.values() if s.status == SessionStatus.ACTIVE]

    def _next_event(self, after: datetime) -> datetime | None:
        moments: list[datetime] = [cb.due for cb in self._callbacks]
        # Entering a fast window closes every open period (the first fast push), then one every fast period.
        moments.extend(a for a, _ in self.config.fast_windows if a > after)
        period = timedelta(seconds=self.period_s(after))
        for session in self._active():
            moments.append(session.departure)
            if session.period_start is not None:
                moments.append(session.period_start + period)
            for profile in session.profiles.values():
                change = profile_changes_after(profile, after, session.start)
                if change is not None:
                    moments.append(change)
        moments.extend(s.next_arrival for s in self.slots.values() if s.next_arrival is not None)
        later = [moment for moment in moments if moment > after]
        return min(later) if later else None

    def _process_events(self, at: datetime) -> None:
        due = [cb for cb in self._callbacks if cb.due <= at]
        self._callbacks = [cb for cb in self._callbacks if cb.due > at]
        for callback in due:
            self._complete_callback(callback, at)
        period = timedelta(seconds=self.period_s(at))
        for session in self._active():
            if session.departure <= at:
                self._end_session(session, at)
            elif session.period_start is not None and session.period_start + period <= at:
                self._patch(session, at, self._close_period(session, at))
        for slot in self.slots.values():
            if slot.next_arrival is not None and slot.next_arrival <= at and slot.session_id is None:
                self._start_session(slot)

    async def run_until(self, target: datetime) -> None:
        """Advance the fleet to ``target`` in small steps, then send everything that became due."""
        async with self._lock:
            self._process_events(self._sim_time)
            step = timedelta(seconds=self.config.physics_step_s)
            while self._sim_time < target:
                start = self._sim_time
                candidates = [target, start + step]
                upcoming = self._next_event(start)
                if upcoming is not None:
                    candidates.append(upcoming)
                end = min(candidates)
                seconds = (end - start).total_seconds()
                for session in self._active():
                    self._advance_session(session, start, seconds)
                self._sim_time = end
                self._process_events(end)
            await self._flush()

    async def step(self, seconds: float) -> datetime:
        """Advance the simulation by ``seconds`` (moving a ManualClock along) and push what happened."""
        if isinstance(self.clock, ManualClock):
            target = self.clock.advance(seconds)
        else:
            target = self._sim_time + timedelta(seconds=seconds)
        await self.run_until(max(target, self._sim_time))
        return self._sim_time

    def _now_or_clock(self) -> datetime:
        """The simulated time, or the clock's if it has run ahead of the last step."""
        return max(self._sim_time, self.clock.now())

    async def deliver_due_results(self) -> None:
        """Complete the profile requests whose result is due and send them, without advancing the fleet."""
        async with self._lock:
            now = self._now_or_clock()
            due = [cb for cb in self._callbacks if cb.due <= now]
            if not due:
                return
            self._callbacks = [cb for cb in self._callbacks if cb.due > now]
            for callback in due:
                self._complete_callback(callback, self._sim_time)
            await self._flush()

    async def run_forever(self) -> None:
        """Follow the clock in real time (used when serving with uvicorn)."""
        while True:
            try:
                await self.run_until(self.clock.now())
            except Exception:
                logger.exception("simulation tick failed")
            await asyncio.sleep(self.config.tick_s)

    # ------------------------------------------------------------------------ charging profiles

    def request_profile(
        self,
        connection: Connection,
        session_id: str,
        kind: str,
        response_url: str,
        *,
        profile: ChargingProfile | None = None,
        duration_s: int = 0,
    ) -> ChargingProfileResponse:
        """Synchronous answer to a profile PUT/GET/DELETE; ACCEPTED requests get an async result later."""

        def answer(result: ChargingProfileResponseType, timeout: int = 0) -> ChargingProfileResponse:
            return ChargingProfileResponse(result=result, timeout=timeout)

        if self.faults.hit(self.faults.config.too_often_rate):
            return answer(ChargingProfileResponseType.TOO_OFTEN)
        session = self.session(session_id)
        if session is None or session.status != SessionStatus.ACTIVE:
            return answer(ChargingProfileResponseType.UNKNOWN_SESSION)
        if not session.slot.profile_capable:
            return answer(ChargingProfileResponseType.NOT_SUPPORTED)
        # Where nothing advances the fleet (results delivered on a tick), the simulated time stands still: the
        # result is due callback_delay_s after the request as the clock tells it, not after the last step.
        now = self._now_or_clock()
        if kind == "set":
            last = session.last_profile_request.get(connection.incoming_token)
            interval = self.config.min_profile_interval_s
            if interval and last is not None and (now - last).total_seconds() < interval:
                return answer(ChargingProfileResponseType.TOO_OFTEN)
            session.last_profile_request[connection.incoming_token] = now
        self._callbacks.append(
            PendingCallback(
                due=now + timedelta(seconds=self.callback_delay_s),
                connection=connection,
                session_id=session.id,
                kind=kind,
                response_url=response_url,
                profile=profile,
                duration_s=duration_s,
                lost=self.faults.hit(self.faults.config.lost_callback_rate),
            )
        )
        return answer(ChargingProfileResponseType.ACCEPTED, self.config.profile_timeout_s)

    @property
    def callback_delay_s(self) -> float:
        """How long an async profile result waits: the fault's delay when one is injected, else the config's."""
        delay = self.faults.config.callback_delay_s
        return self.config.callback_delay_s if delay is None else delay

    def composite_profile(self, session: SimSession, start: datetime, duration_s: int) -> ChargingProfile:
        """Effective schedule in W from ``start``: min of all profiles and the EVSE maximum."""
        end = start + timedelta(seconds=duration_s)
        evse_max_w = session.slot.max_kw * 1000.0
        periods: list[ChargingProfilePeriod] = []
        moment = start
        while moment < end:
            limit_kw = self.effective_limit_kw(session, moment)
            limit_w = evse_max_w if limit_kw is None else min(evse_max_w, limit_kw * 1000.0)
            if not periods or periods[-1].limit != round(limit_w, 1):
                offset = int((moment - start).total_seconds())
                if periods and periods[-1].start_period == offset:
                    periods.pop()
                periods.append(ChargingProfilePeriod(start_period=offset, limit=limit_w))
            changes = [
                change
                for profile in session.profiles.values()
                if (change := profile_changes_after(profile, moment, session.start)) is not None
            ]
            moment = min([end, *changes])
        return ChargingProfile(
            duration=duration_s, charging_rate_unit=ChargingRateUnit.W, charging_profile_period=periods
        )

    def _complete_callback(self, callback: PendingCallback, at: datetime) -> None:
        session = self.session(callback.session_id)
        token = callback.connection.incoming_token
        result = ChargingProfileResultType.UNKNOWN
        body: Any
        changed = False
        if callback.kind == "set" and session is not None and callback.profile is not None:
            negative = any(p.limit < 0 for p in callback.profile.charging_profile_period)
            if negative and not (session.slot.v2g and session.car.can_discharge(session.slot.dc)):
                result = ChargingProfileResultType.REJECTED
            else:
                session.profiles[token] = callback.profile
                session.profile_setters.add(token)
                result, changed = ChargingProfileResultType.ACCEPTED, True
            body = ChargingProfileResult(result=result)
        elif callback.kind == "clear":
            if session is not None and session.profiles.pop(token, None) is not None:
                result, changed = ChargingProfileResultType.ACCEPTED, True
            body = ClearProfileResult(result=result)
        else:
            active = None
            if session is not None:
                result = ChargingProfileResultType.ACCEPTED
                active = ActiveChargingProfile(
                    start_date_time=at, charging_profile=self.composite_profile(session, at, callback.duration_s)
                )
            body = ActiveChargingProfileResult(result=result, profile=active)
        if callback.lost:
            logger.info("fault: dropping async %s result for %s", callback.kind, callback.session_id)
        else:
            self._outbox.append(
                Outbound(
                    "POST",
                    callback.response_url,
                    ModuleID.CHARGING_PROFILES,
                    callback.connection,
                    body.to_json_dict(),
                    f"result_{callback.kind}",
                    lane=callback.session_id,
                )
            )
        if changed and session is not None:
            self._push_active_profile(session, at)

    def _push_active_profile(self, session: SimSession, at: datetime) -> None:
        active = ActiveChargingProfile(
            start_date_time=at,
            charging_profile=self.composite_profile(session, at, self.config.active_profile_horizon_s),
        )
        for token in sorted(session.profile_setters):
            connection = self.connections.get(token)
            if connection is None:
                continue
            url = connection.endpoint(ModuleID.CHARGING_PROFILES, InterfaceRole.SENDER)
            if url is not None:
                self._outbox.append(
                    Outbound(
                        "PUT",
                        join_url(url, session.id),
                        ModuleID.CHARGING_PROFILES,
                        connection,
                        active.to_json_dict(),
                        "active_profile",
                        lane=session.id,
                    )
                )

    # ------------------------------------------------------------------------------ outbound

    def _headers(self, token: str, module: str, connection: Connection | None) -> dict[str, str]:
        headers = {AUTHORIZATION: authorization_header(token, raw=self.faults.config.raw_tokens)}
        headers.update(message_id_headers())
        if module not in UNROUTED_MODULES:
            headers.update(routing_headers(self.party, connection.party if connection else None))
        return headers

    async def _flush(self) -> None:
        """Send the outbox: in order, or with ``push_concurrency`` lanes (sessions) side by side, each lane's
        messages in order, so that the peer works on one push while the next is being written."""
        while self._outbox:
            batch, self._outbox = self._outbox, []
            lanes: dict[str, list[Outbound]] = {}
            for message in batch:
                lanes.setdefault(message.lane, []).append(message)
            if self.config.push_concurrency <= 1 or len(lanes) <= 1:
                for message in batch:
                    await self._deliver(message)
                continue
            queue = deque(lanes.values())
            await asyncio.gather(*(self._deliver_lanes(queue) for _ in range(min(self.config.push_concurrency,
                                                                                  len(queue)))))

    async def _deliver_lanes(self, queue: deque[list[Outbound]]) -> None:
        while queue:
            for message in queue.popleft():
                await self._deliver(message)

    async def flush(self) -> None:
        """Send queued messages now (normally done at the end of each step)."""
        async with self._lock:
            await self._flush()

    async def _deliver(self, message: Outbound) -> None:
        record: dict[str, Any] = {"method": message.method, "url": message.url, "kind": message.kind}
        try:
            status, body = await self._push(message)
            record["http_status"] = status
            try:
                answer = json.loads(body)
                record["status_code"] = answer.get("status_code") if isinstance(answer, dict) else None
            except ValueError:
                record["status_code"] = None
        except (httpx.HTTPError, Http1Error) as exc:
            # OCPI pushes are not retried; the receiver resyncs by pulling.
            logger.warning("push %s %s failed: %r", message.method, message.url, exc)
            record["error"] = repr(exc)
        self.sent.append(record)

    async def _push(self, message: Outbound) -> tuple[int, bytes]:
        """Send one push; its HTTP status and body. A push on a reused keep-alive connection that the receiver
        closed as we wrote (nothing arrived) is sent once more on a fresh one, rather than lose the update."""
        if not self._owns_http:
            try:
                response = await self._request(message)
            except (httpx.ReadError, httpx.RemoteProtocolError, httpx.WriteError):
                response = await self._request(message)
            return response.status_code, response.content
        origin = Origin.of(message.url)
        pool = self._pools.get(origin)
        if pool is None:
            pool = self._pools[origin] = Http1Pool(origin, size=max(1, self.config.push_concurrency), timeout_s=10.0)
        headers = self._headers(message.connection.outgoing_token, message.module, message.connection)
        body = json.dumps(to_jsonable(message.body), separators=(",", ":")).encode()
        answer = await pool.request(build_request(message.method, message.url, origin, headers, body))
        return answer.status, answer.body

    async def _request(self, message: Outbound) -> httpx.Response:
        return await self.http.request(
            message.method,
            message.url,
            headers=self._headers(message.connection.outgoing_token, message.module, message.connection),
            json=to_jsonable(message.body),
        )

    async def _get_envelope(self, url: str, token: str, module: str) -> OcpiResponse:
        try:
            response = await self.http.get(url, headers=self._headers(token, module, None))
        except httpx.HTTPError as exc:
            raise SimError(200, OcpiStatus.UNABLE_TO_USE_CLIENT_API, f"cannot reach {url}: {exc!r}") from exc
        try:
            envelope = OcpiResponse.model_validate(response.json())
        except (ValueError, ValidationError) as exc:
            raise SimError(
                200, OcpiStatus.UNABLE_TO_USE_CLIENT_API, f"{url} answered HTTP {response.status_code} without envelope"
            ) from exc
        if response.status_code >= 300 or not is_success(envelope.status_code):
            raise SimError(
                200,
                OcpiStatus.UNABLE_TO_USE_CLIENT_API,
                f"{url} answered HTTP {response.status_code} / OCPI {envelope.status_code}",
            )
        return envelope

    async def fetch_peer(self, versions_url: str, token: str) -> VersionDetails:
        """GET a peer's versions and 2.2.1 details with ``token`` (3001/3002/3003 on failure)."""
        envelope = await self._get_envelope(versions_url, token, "versions")
        try:
            versions = [Version.model_validate(item) for item in ensure_list(envelope.data)]
        except ValidationError as exc:
            raise SimError(200, OcpiStatus.UNABLE_TO_USE_CLIENT_API, f"bad versions list: {exc}") from exc
        chosen = next((v for v in versions if v.version == OCPI_VERSION), None)
        if chosen is None:
            raise SimError(200, OcpiStatus.UNSUPPORTED_VERSION, f"peer offers no OCPI {OCPI_VERSION}")
        details_envelope = await self._get_envelope(chosen.url, token, "versions")
        try:
            details = VersionDetails.model_validate(unwrap_single(details_envelope.data))
        except ValidationError as exc:
            raise SimError(200, OcpiStatus.UNABLE_TO_USE_CLIENT_API, f"bad version details: {exc}") from exc
        if not any(str(e.identifier) != ModuleID.CREDENTIALS for e in details.endpoints):
            raise SimError(200, OcpiStatus.NO_MATCHING_ENDPOINTS, "peer offers no functional module")
        return details

    # ---------------------------------------------------------------------------- registration

    async def accept_registration(self, token_a: str, theirs: Credentials) -> Credentials:
        """We are the credentials Receiver: check the peer with its token B, issue token C."""
        details = await self.fetch_peer(theirs.url, theirs.token)
        token_c = secrets.token_urlsafe(24)
        self.connections[token_c] = Connection(
            incoming_token=token_c,
            outgoing_token=theirs.token,
            versions_url=theirs.url,
            details=details,
            roles=list(theirs.roles),
        )
        self.token_a.discard(token_a)
        return self.own_credentials(token_c)

    async def update_registration(self, connection: Connection, theirs: Credentials) -> Credentials:
        """Credentials PUT: re-read the peer's endpoints with its new token and rotate our token."""
        details = await self.fetch_peer(theirs.url, theirs.token)
        token_c = secrets.token_urlsafe(24)
        self.connections.pop(connection.incoming_token, None)
        for session in self.sessions.values():
            self._retoken(session, connection.incoming_token, token_c)
        connection.incoming_token = token_c
        connection.outgoing_token = theirs.token
        connection.versions_url = theirs.url
        connection.details = details
        connection.roles = list(theirs.roles)
        self.connections[token_c] = connection
        return self.own_credentials(token_c)

    @staticmethod
    def _retoken(session: SimSession, old: str, new: str) -> None:
        if old in session.profiles:
            session.profiles[new] = session.profiles.pop(old)
        if old in session.profile_setters:
            session.profile_setters.discard(old)
            session.profile_setters.add(new)

    def unregister(self, connection: Connection) -> None:
        """Credentials DELETE: forget the peer."""
        self.connections.pop(connection.incoming_token, None)

    async def register_with(self, versions_url: str, token_a: str) -> Connection:
        """We are the credentials Sender: fetch the SCSP with token A, POST our token B, keep its token C."""
        details = await self.fetch_peer(versions_url, token_a)
        credentials_url = details.endpoint_url(ModuleID.CREDENTIALS)
        if credentials_url is None:
            raise SimError(200, OcpiStatus.NO_MATCHING_ENDPOINTS, "peer offers no credentials endpoint")
        token_b = secrets.token_urlsafe(24)
        # Stored before the POST: the peer calls our versions with token B before it answers.
        connection = Connection(
            incoming_token=token_b, outgoing_token=token_a, versions_url=versions_url, details=details
        )
        self.connections[token_b] = connection
        try:
            response = await self.http.post(
                credentials_url,
                headers=self._headers(token_a, ModuleID.CREDENTIALS, None),
                json=self.own_credentials(token_b).to_json_dict(),
                timeout=REGISTRATION_TIMEOUT_S,
            )
            envelope = OcpiResponse.model_validate(response.json())
            if response.status_code >= 300 or not is_success(envelope.status_code):
                raise SimError(
                    200, envelope.status_code, f"registration refused: HTTP {response.status_code} {envelope}"
                )
            theirs = Credentials.model_validate(unwrap_single(envelope.data))
        except (httpx.HTTPError, ValueError, ValidationError) as exc:
            self.connections.pop(token_b, None)
            raise SimError(200, OcpiStatus.UNABLE_TO_USE_CLIENT_API, f"registration failed: {exc!r}") from exc
        except SimError:
            self.connections.pop(token_b, None)
            raise
        connection.outgoing_token = theirs.token
        connection.roles = list(theirs.roles)
        return connection

    async def register_with_retry(self, versions_url: str, token_a: str, attempts: int = 10) -> None:
        """register_with, retried while the peer (or our own server) is still starting."""
        for attempt in range(attempts):
            try:
                connection = await self.register_with(versions_url, token_a)
                logger.info("registered with %s as %s", versions_url, connection.party)
                return
            except SimError as exc:
                logger.warning("registration attempt %d failed: %s", attempt + 1, exc.message)
                await asyncio.sleep(min(2**attempt, 30))

    # ------------------------------------------------------------------------------------ admin

    def snapshot(self) -> dict[str, Any]:
        """A readable summary of the simulation for the admin API and tests."""
        now = self._sim_time
        return {
            "now": format_datetime(now),
            "party": str(self.party),
            "token_a": sorted(self.token_a),
            "connections": [{"party": str(c.party), "versions_url": c.versions_url} for c in self.connections.values()],
            "sessions": [
                {
                    "id": s.id,
                    "evse_uid": s.slot.evse_uid,
                    "status": s.status.value,
                    "power_kw": round(s.power_kw, 3),
                    "soc": round(s.car.soc, 4),
                    "kwh": round(s.kwh, 4),
                    "limit_kw": self.effective_limit_kw(s, now),
                    "car": s.car.model.name,
                    "departure": format_datetime(s.departure),
                }
                for s in self.sessions.values()
            ],
            "pending_callbacks": len(self._callbacks),
            "sent": len(self.sent),
            "faults": self.faults.config.model_dump(),
        }
