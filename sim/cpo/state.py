"""In-memory state of the simulated CPO: peer connections, EVSEs, sessions and queued messages."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from adapters.ocpi.v2_2_1.schemas import (
    AuthMethod,
    BusinessDetails,
    Capability,
    CdrToken,
    ChargingPeriod,
    ChargingProfile,
    Connector,
    ConnectorFormat,
    ConnectorType,
    CredentialsRole,
    Evse,
    EvseStatus,
    GeoLocation,
    InterfaceRole,
    Location,
    PowerType,
    Price,
    Session,
    SessionStatus,
    TokenType,
    VersionDetails,
)
from adapters.ocpi.v2_2_1.transport import PartyRef
from sim.cpo.fleet import Car

V2G_CAPABILITY = "V2G_CAPABLE"
EMSP_PARTY = PartyRef("NL", "EMS")
COUNTRY_ALPHA3 = {"NL": "NLD", "BE": "BEL", "DE": "DEU", "FR": "FRA", "GB": "GBR", "AT": "AUT", "DK": "DNK"}


@dataclass
class Connection:
    """A registered peer (an SCSP): the tokens both ways, its endpoints and its roles."""

    incoming_token: str
    outgoing_token: str
    versions_url: str
    details: VersionDetails | None = None
    roles: list[CredentialsRole] = field(default_factory=list)

    @property
    def party(self) -> PartyRef | None:
        """The peer's first party (for routing headers)."""
        if not self.roles:
            return None
        return PartyRef(self.roles[0].country_code, self.roles[0].party_id)

    def endpoint(self, module: str, role: InterfaceRole) -> str | None:
        """URL of the peer's module endpoint with this role (any role as a fallback)."""
        if self.details is None:
            return None
        return self.details.endpoint_url(module, role) or self.details.endpoint_url(module)


@dataclass
class EvseSlot:
    """One EVSE with one connector, and who is plugged in."""

    location_id: str
    evse_uid: str
    evse_id: str
    connector_id: str
    power_type: PowerType
    voltage_v: int
    amperage_a: int
    max_kw: float
    v2g: bool
    profile_capable: bool
    status: EvseStatus
    last_updated: datetime
    session_id: str | None = None
    next_arrival: datetime | None = None

    @property
    def dc(self) -> bool:
        """True for a DC charger."""
        return self.power_type == PowerType.DC

    def connector(self) -> Connector:
        """The wire Connector."""
        return Connector(
            id=self.connector_id,
            standard=ConnectorType.IEC_62196_T2_COMBO if self.dc else ConnectorType.IEC_62196_T2,
            format=ConnectorFormat.CABLE if self.dc else ConnectorFormat.SOCKET,
            power_type=self.power_type,
            max_voltage=self.voltage_v,
            max_amperage=self.amperage_a,
            max_electric_power=round(self.max_kw * 1000),
            last_updated=self.last_updated,
        )

    def evse(self, advertise_v2g: bool) -> Evse:
        """The wire EVSE."""
        capabilities: list[Capability | str] = [Capability.RFID_READER, Capability.REMOTE_START_STOP_CAPABLE]
        if self.profile_capable:
            capabilities.append(Capability.CHARGING_PROFILE_CAPABLE)
        if self.v2g and advertise_v2g:
            capabilities.append(V2G_CAPABILITY)
        return Evse(
            uid=self.evse_uid,
            evse_id=self.evse_id,
            status=self.status,
            capabilities=capabilities,
            connectors=[self.connector()],
            last_updated=self.last_updated,
        )


@dataclass
class SiteLocation:
    """A location and the EVSE slots at it."""

    id: str
    name: str
    address: str
    city: str
    postal_code: str
    country: str
    latitude: float
    longitude: float
    slots: list[EvseSlot]
    last_updated: datetime

    def to_wire(self, party: PartyRef, advertise_v2g: bool, operator: str) -> Location:
        """The wire Location with its EVSEs."""
        return Location(
            country_code=party.country_code,
            party_id=party.party_id,
            id=self.id,
            publish=True,
            name=self.name,
            address=self.address,
            city=self.city,
            postal_code=self.postal_code,
            country=self.country,
            coordinates=GeoLocation(latitude=f"{self.latitude:.6f}", longitude=f"{self.longitude:.6f}"),
            evses=[slot.evse(advertise_v2g) for slot in self.slots],
            operator=BusinessDetails(name=operator),
            time_zone="Europe/Amsterdam",
            last_updated=max([self.last_updated, *(slot.last_updated for slot in self.slots)]),
        )


@dataclass
class SimSession:
    """A session on an EVSE: the car, its profiles per steering peer, and the period being measured."""

    id: str
    slot: EvseSlot
    car: Car
    start: datetime
    departure: datetime
    token_uid: str
    status: SessionStatus = SessionStatus.ACTIVE
    end: datetime | None = None
    kwh: float = 0.0
    power_kw: float = 0.0
    periods: list[ChargingPeriod] = field(default_factory=list)
    period_start: datetime | None = None
    period_energy_kwh: float = 0.0
    period_charging_s: float = 0.0
    parked_s: float = 0.0
    # Profiles keyed by the steering connection's incoming token; the effective limit is their minimum.
    profiles: dict[str, ChargingProfile] = field(default_factory=dict)
    profile_setters: set[str] = field(default_factory=set)
    last_profile_request: dict[str, datetime] = field(default_factory=dict)
    last_updated: datetime | None = None

    def cdr_token(self, party: PartyRef = EMSP_PARTY) -> CdrToken:
        """The (simulated) eMSP token that started the session."""
        return CdrToken(
            country_code=party.country_code,
            party_id=party.party_id,
            uid=self.token_uid,
            type=TokenType.RFID,
            contract_id=f"{party.country_code}-{party.party_id}-C{self.token_uid[-8:]}",
        )

    def to_wire(self, party: PartyRef, tariff_eur_per_kwh: float) -> Session:
        """The full wire Session."""
        return Session(
            country_code=party.country_code,
            party_id=party.party_id,
            id=self.id,
            start_date_time=self.start,
            end_date_time=self.end,
            kwh=round(self.kwh, 4),
            cdr_token=self.cdr_token(),
            auth_method=AuthMethod.WHITELIST,
            location_id=self.slot.location_id,
            evse_uid=self.slot.evse_uid,
            connector_id=self.slot.connector_id,
            currency="EUR",
            charging_periods=list(self.periods),
            total_cost=Price(excl_vat=round(max(self.kwh, 0.0) * tariff_eur_per_kwh, 2)),
            status=self.status,
            last_updated=self.last_updated or self.start,
        )


@dataclass
class Outbound:
    """A request the CPO will send to a peer at the end of the current step."""

    method: str
    url: str
    module: str
    connection: Connection
    body: Any = None
    kind: str = ""
    # Messages of one lane (a session) go out in order; lanes may go out side by side (``push_concurrency``).
    lane: str = ""


@dataclass
class PendingCallback:
    """An async profile result (and its effect) due at a simulated moment."""

    due: datetime
    connection: Connection
    session_id: str
    kind: str
    response_url: str
    profile: ChargingProfile | None = None
    duration_s: int = 0
    lost: bool = False
