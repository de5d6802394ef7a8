"""OCPI 2.2.1 wire models: lenient on input where real peers are sloppy, strict where the spec is."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    field_validator,
    model_validator,
)

from adapters.ocpi.v2_2_1.transport import format_datetime, parse_datetime


def _lenient_datetime(value: Any) -> Any:
    if isinstance(value, str | datetime):
        return parse_datetime(value)
    return value


DateTime = Annotated[
    datetime,
    BeforeValidator(_lenient_datetime),
    PlainSerializer(format_datetime, return_type=str, when_used="json"),
]
CountryCode = Annotated[str, StringConstraints(min_length=2, max_length=2)]
PartyId = Annotated[str, StringConstraints(min_length=3, max_length=3)]
CiString36 = Annotated[str, StringConstraints(max_length=36)]
CiString39 = Annotated[str, StringConstraints(max_length=39)]
CiString48 = Annotated[str, StringConstraints(max_length=48)]
CiString64 = Annotated[str, StringConstraints(max_length=64)]
String3 = Annotated[str, StringConstraints(min_length=3, max_length=3)]
String255 = Annotated[str, StringConstraints(max_length=255)]
Url = Annotated[str, StringConstraints(min_length=1, max_length=255)]
# Credentials token: printable, non-whitespace ASCII (U+0021..U+007E).
CredentialsToken = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[!-~]+$")]


class OcpiModel(BaseModel):
    """Base of every wire model: unknown fields are ignored (OCPI 2.3.0 makes that mandatory)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    def to_json_dict(self) -> dict[str, Any]:
        """JSON-ready dict with None fields left out."""
        return self.model_dump(mode="json", exclude_none=True)


# ----------------------------------------------------------------------------------------- envelope


class OcpiResponse(OcpiModel):
    """Response envelope; ``data`` stays untyped here because peers send object, list or nothing."""

    data: Any = None
    status_code: int
    status_message: str | None = None
    # Required by the spec, but some peers leave it out of error answers.
    timestamp: DateTime | None = None


# ----------------------------------------------------------------------------- versions, credentials


class VersionNumber(StrEnum):
    """Known OCPI versions."""

    V2_0 = "2.0"
    V2_1 = "2.1"
    V2_1_1 = "2.1.1"
    V2_2 = "2.2"
    V2_2_1 = "2.2.1"
    V2_3_0 = "2.3.0"


class ModuleID(StrEnum):
    """Module identifiers of version details endpoints."""

    CDRS = "cdrs"
    CHARGING_PROFILES = "chargingprofiles"
    COMMANDS = "commands"
    CREDENTIALS = "credentials"
    HUB_CLIENT_INFO = "hubclientinfo"
    LOCATIONS = "locations"
    SESSIONS = "sessions"
    TARIFFS = "tariffs"
    TOKENS = "tokens"


class InterfaceRole(StrEnum):
    """SENDER = the data owner's interface; RECEIVER = the interface data is pushed to."""

    SENDER = "SENDER"
    RECEIVER = "RECEIVER"


class Role(StrEnum):
    """Platform roles of OCPI 2.2.1 (SCSP is first-class in 2.2.1)."""

    CPO = "CPO"
    EMSP = "EMSP"
    HUB = "HUB"
    NAP = "NAP"
    NSP = "NSP"
    OTHER = "OTHER"
    SCSP = "SCSP"


class Version(OcpiModel):
    """One entry of the version information endpoint."""

    # Free string: peers still announce "2.2" in details (a spec example erratum).
    version: str
    url: Url


class Endpoint(OcpiModel):
    """One module endpoint of a version's details."""

    # Custom modules are allowed by agreement, so any string is accepted.
    identifier: ModuleID | str
    role: InterfaceRole
    url: Url


class VersionDetails(OcpiModel):
    """Version details: the endpoints a party offers for one version."""

    version: str
    endpoints: list[Endpoint]

    def endpoint_url(self, identifier: str, role: InterfaceRole | None = None) -> str | None:
        """URL of the module endpoint with this id (and role when given), else None."""
        for endpoint in self.endpoints:
            if str(endpoint.identifier).casefold() != identifier.casefold():
                continue
            if role is None or endpoint.role == role:
                return endpoint.url
        return None


class ImageCategory(StrEnum):
    """What an image shows."""

    CHARGER = "CHARGER"
    ENTRANCE = "ENTRANCE"
    LOCATION = "LOCATION"
    NETWORK = "NETWORK"
    OPERATOR = "OPERATOR"
    OTHER = "OTHER"
    OWNER = "OWNER"


class Image(OcpiModel):
    """Reference to an image (logos, photos)."""

    url: Url
    thumbnail: Url | None = None
    category: ImageCategory | str
    type: Annotated[str, StringConstraints(max_length=4)]
    width: int | None = None
    height: int | None = None


class BusinessDetails(OcpiModel):
    """Name, website and logo of a party."""

    name: Annotated[str, StringConstraints(max_length=100)]
    website: Url | None = None
    logo: Image | None = None


class CredentialsRole(OcpiModel):
    """One role a platform plays, with its party identity."""

    role: Role
    business_details: BusinessDetails
    party_id: PartyId
    country_code: CountryCode


class Credentials(OcpiModel):
    """Credentials object exchanged in the registration handshake (token is raw, not Base64)."""

    token: CredentialsToken
    url: Url
    roles: Annotated[list[CredentialsRole], Field(min_length=1)]


# --------------------------------------------------------------------------------------- shared types


class Price(OcpiModel):
    """Amount in the session/CDR currency (2.2.1 shape)."""

    excl_vat: float
    incl_vat: float | None = None


class TokenType(StrEnum):
    """How the token was presented."""

    AD_HOC_USER = "AD_HOC_USER"
    APP_USER = "APP_USER"
    OTHER = "OTHER"
    RFID = "RFID"


class AuthMethod(StrEnum):
    """How a session was authorised."""

    AUTH_REQUEST = "AUTH_REQUEST"
    COMMAND = "COMMAND"
    WHITELIST = "WHITELIST"


class CdrToken(OcpiModel):
    """The token that started a session, as referenced by the CPO."""

    country_code: CountryCode
    party_id: PartyId
    uid: CiString36
    type: TokenType
    contract_id: CiString36


class CdrDimensionType(StrEnum):
    """Dimension types; POWER/CURRENT/STATE_OF_CHARGE/ENERGY_IMPORT/EXPORT are session-only."""

    CURRENT = "CURRENT"
    ENERGY = "ENERGY"
    ENERGY_EXPORT = "ENERGY_EXPORT"
    ENERGY_IMPORT = "ENERGY_IMPORT"
    MAX_CURRENT = "MAX_CURRENT"
    MIN_CURRENT = "MIN_CURRENT"
    MAX_POWER = "MAX_POWER"
    MIN_POWER = "MIN_POWER"
    PARKING_TIME = "PARKING_TIME"
    POWER = "POWER"
    RESERVATION_TIME = "RESERVATION_TIME"
    STATE_OF_CHARGE = "STATE_OF_CHARGE"
    TIME = "TIME"


SESSION_ONLY_DIMENSIONS = frozenset(
    {
        CdrDimensionType.CURRENT,
        CdrDimensionType.ENERGY_EXPORT,
        CdrDimensionType.ENERGY_IMPORT,
        CdrDimensionType.POWER,
        CdrDimensionType.STATE_OF_CHARGE,
    }
)


class CdrDimension(OcpiModel):
    """One measured quantity of a charging period (units: kWh, kW, A, %, hours)."""

    # Unknown types are kept as plain strings so one odd dimension doesn't drop a whole session.
    type: CdrDimensionType | str
    volume: float


class ChargingPeriod(OcpiModel):
    """A period of a session or CDR; it ends where the next one starts."""

    start_date_time: DateTime
    dimensions: Annotated[list[CdrDimension], Field(min_length=1)]
    tariff_id: CiString36 | None = None

    def volume(self, dimension: CdrDimensionType) -> float | None:
        """Volume of the first dimension of this type, or None."""
        for item in self.dimensions:
            if item.type == dimension:
                return item.volume
        return None


# ------------------------------------------------------------------------------------------ sessions


class SessionStatus(StrEnum):
    """Session lifecycle states."""

    ACTIVE = "ACTIVE"
    COMPLETED = "COMPLETED"
    INVALID = "INVALID"
    PENDING = "PENDING"
    RESERVATION = "RESERVATION"


def _session_status(value: Any) -> Any:
    # The spec text says RESERVED while the enum says RESERVATION; peers send both.
    if isinstance(value, str) and value.upper() == "RESERVED":
        return SessionStatus.RESERVATION
    return value


LenientSessionStatus = Annotated[SessionStatus, BeforeValidator(_session_status)]


class Session(OcpiModel):
    """A charging session as owned and pushed by the CPO."""

    country_code: CountryCode
    party_id: PartyId
    id: CiString36
    start_date_time: DateTime
    end_date_time: DateTime | None = None
    kwh: float
    cdr_token: CdrToken
    auth_method: AuthMethod
    authorization_reference: CiString36 | None = None
    location_id: CiString36
    evse_uid: CiString36
    connector_id: CiString36
    meter_id: String255 | None = None
    currency: String3
    charging_periods: list[ChargingPeriod] | None = None
    total_cost: Price | None = None
    status: LenientSessionStatus
    last_updated: DateTime


class SessionPatch(OcpiModel):
    """Session PATCH body: any subset of fields; the receiver decides if no last_updated is fatal."""

    country_code: CountryCode | None = None
    party_id: PartyId | None = None
    id: CiString36 | None = None
    start_date_time: DateTime | None = None
    end_date_time: DateTime | None = None
    kwh: float | None = None
    cdr_token: CdrToken | None = None
    auth_method: AuthMethod | None = None
    authorization_reference: CiString36 | None = None
    location_id: CiString36 | None = None
    evse_uid: CiString36 | None = None
    connector_id: CiString36 | None = None
    meter_id: String255 | None = None
    currency: String3 | None = None
    charging_periods: list[ChargingPeriod] | None = None
    total_cost: Price | None = None
    status: LenientSessionStatus | None = None
    last_updated: DateTime | None = None


# ---------------------------------------------------------------------------------------- locations


class PowerType(StrEnum):
    """Connector power type; AC voltages are line-to-neutral."""

    AC_1_PHASE = "AC_1_PHASE"
    AC_2_PHASE = "AC_2_PHASE"
    AC_2_PHASE_SPLIT = "AC_2_PHASE_SPLIT"
    AC_3_PHASE = "AC_3_PHASE"
    DC = "DC"


PHASES: dict[PowerType, int] = {
    PowerType.AC_1_PHASE: 1,
    PowerType.AC_2_PHASE: 2,
    PowerType.AC_2_PHASE_SPLIT: 2,
    PowerType.AC_3_PHASE: 3,
    PowerType.DC: 1,
}


class ConnectorFormat(StrEnum):
    """Socket (bring a cable) or attached cable."""

    SOCKET = "SOCKET"
    CABLE = "CABLE"


class ConnectorType(StrEnum):
    """Common plug standards (the full list is long; unknown values are kept as strings)."""

    CHADEMO = "CHADEMO"
    DOMESTIC_F = "DOMESTIC_F"
    IEC_62196_T1 = "IEC_62196_T1"
    IEC_62196_T1_COMBO = "IEC_62196_T1_COMBO"
    IEC_62196_T2 = "IEC_62196_T2"
    IEC_62196_T2_COMBO = "IEC_62196_T2_COMBO"
    IEC_62196_T3C = "IEC_62196_T3C"
    TESLA_S = "TESLA_S"


class Capability(StrEnum):
    """EVSE capabilities; CHARGING_PROFILE_CAPABLE is the one that matters for steering."""

    CHARGING_PROFILE_CAPABLE = "CHARGING_PROFILE_CAPABLE"
    CHARGING_PREFERENCES_CAPABLE = "CHARGING_PREFERENCES_CAPABLE"
    CHIP_CARD_SUPPORT = "CHIP_CARD_SUPPORT"
    CONTACTLESS_CARD_SUPPORT = "CONTACTLESS_CARD_SUPPORT"
    CREDIT_CARD_PAYABLE = "CREDIT_CARD_PAYABLE"
    DEBIT_CARD_PAYABLE = "DEBIT_CARD_PAYABLE"
    PED_TERMINAL = "PED_TERMINAL"
    REMOTE_START_STOP_CAPABLE = "REMOTE_START_STOP_CAPABLE"
    RESERVABLE = "RESERVABLE"
    RFID_READER = "RFID_READER"
    START_SESSION_CONNECTOR_REQUIRED = "START_SESSION_CONNECTOR_REQUIRED"
    TOKEN_GROUP_CAPABLE = "TOKEN_GROUP_CAPABLE"  # noqa: S105
    UNLOCK_CAPABLE = "UNLOCK_CAPABLE"


class EvseStatus(StrEnum):
    """EVSE status."""

    AVAILABLE = "AVAILABLE"
    BLOCKED = "BLOCKED"
    CHARGING = "CHARGING"
    INOPERATIVE = "INOPERATIVE"
    OUTOFORDER = "OUTOFORDER"
    PLANNED = "PLANNED"
    REMOVED = "REMOVED"
    RESERVED = "RESERVED"
    UNKNOWN = "UNKNOWN"


class GeoLocation(OcpiModel):
    """WGS84 coordinates as decimal strings."""

    latitude: Annotated[str, StringConstraints(max_length=10)]
    longitude: Annotated[str, StringConstraints(max_length=11)]

    @field_validator("latitude", "longitude", mode="before")
    @classmethod
    def _number_to_text(cls, value: Any) -> Any:
        # Sloppy peers send JSON numbers here.
        if isinstance(value, int | float):
            return f"{value:.6f}"
        return value


class Connector(OcpiModel):
    """A connector of an EVSE; max_electric_power in W, voltage in V (L-N for AC), amperage in A."""

    id: CiString36
    standard: ConnectorType | str
    format: ConnectorFormat
    power_type: PowerType
    max_voltage: int
    max_amperage: int
    max_electric_power: int | None = None
    tariff_ids: list[CiString36] | None = None
    terms_and_conditions: Url | None = None
    last_updated: DateTime

    @field_validator("max_voltage", "max_amperage", "max_electric_power", mode="before")
    @classmethod
    def _round_number(cls, value: Any) -> Any:
        # Peers send 230.0 or 16.5 where the spec says int.
        if isinstance(value, float):
            return round(value)
        return value


class Evse(OcpiModel):
    """An EVSE: charges one EV at a time through one of its connectors."""

    uid: CiString36
    evse_id: CiString48 | None = None
    status: EvseStatus
    status_schedule: list[dict[str, Any]] | None = None
    capabilities: list[Capability | str] | None = None
    connectors: Annotated[list[Connector], Field(min_length=1)]
    floor_level: Annotated[str, StringConstraints(max_length=4)] | None = None
    coordinates: GeoLocation | None = None
    physical_reference: Annotated[str, StringConstraints(max_length=16)] | None = None
    parking_restrictions: list[str] | None = None
    images: list[Image] | None = None
    last_updated: DateTime

    def has_capability(self, capability: Capability | str) -> bool:
        """True if the EVSE lists this capability."""
        return any(str(item) == str(capability) for item in self.capabilities or [])


EVSE = Evse


class Location(OcpiModel):
    """A charging location with its EVSEs."""

    country_code: CountryCode
    party_id: PartyId
    id: CiString36
    publish: bool
    publish_allowed_to: list[dict[str, Any]] | None = None
    name: String255 | None = None
    address: Annotated[str, StringConstraints(max_length=45)]
    city: Annotated[str, StringConstraints(max_length=45)]
    postal_code: Annotated[str, StringConstraints(max_length=10)] | None = None
    state: Annotated[str, StringConstraints(max_length=20)] | None = None
    country: String3
    coordinates: GeoLocation
    related_locations: list[dict[str, Any]] | None = None
    parking_type: str | None = None
    evses: list[Evse] | None = None
    directions: list[dict[str, Any]] | None = None
    operator: BusinessDetails | None = None
    suboperator: BusinessDetails | None = None
    owner: BusinessDetails | None = None
    facilities: list[str] | None = None
    time_zone: String255
    opening_times: dict[str, Any] | None = None
    charging_when_closed: bool | None = None
    images: list[Image] | None = None
    energy_mix: dict[str, Any] | None = None
    last_updated: DateTime


def connector_max_power_w(connector: Connector) -> float:
    """Max power in W: max_electric_power if given, else V x A x phases (V is line-to-neutral for AC)."""
    if connector.max_electric_power is not None and connector.max_electric_power > 0:
        return float(connector.max_electric_power)
    return float(connector.max_voltage * connector.max_amperage * PHASES[connector.power_type])


# ---------------------------------------------------------------------------------------------- CDRs


class CdrLocation(OcpiModel):
    """The location, EVSE and connector a CDR was charged at (copied at charging time)."""

    id: CiString36
    name: String255 | None = None
    address: Annotated[str, StringConstraints(max_length=45)]
    city: Annotated[str, StringConstraints(max_length=45)]
    postal_code: Annotated[str, StringConstraints(max_length=10)] | None = None
    state: Annotated[str, StringConstraints(max_length=20)] | None = None
    country: String3
    coordinates: GeoLocation
    evse_uid: CiString36
    evse_id: CiString48
    connector_id: CiString36
    connector_standard: ConnectorType | str
    connector_format: ConnectorFormat
    connector_power_type: PowerType


class SignedValue(OcpiModel):
    """One signed meter value (Eichrecht)."""

    nature: Annotated[str, StringConstraints(max_length=32)]
    plain_data: Annotated[str, StringConstraints(max_length=5000)]
    signed_data: Annotated[str, StringConstraints(max_length=5000)]


class SignedData(OcpiModel):
    """Signed metering data of a CDR."""

    encoding_method: Annotated[str, StringConstraints(max_length=36)]
    encoding_method_version: int | None = None
    public_key: Annotated[str, StringConstraints(max_length=512)] | None = None
    signed_values: list[SignedValue]
    url: Annotated[str, StringConstraints(max_length=512)] | None = None


class Cdr(OcpiModel):
    """Charge detail record; immutable, corrected by a credit CDR (negative total_cost) and a new CDR."""

    country_code: CountryCode
    party_id: PartyId
    id: CiString39
    start_date_time: DateTime
    end_date_time: DateTime
    session_id: CiString36 | None = None
    cdr_token: CdrToken
    auth_method: AuthMethod
    authorization_reference: CiString36 | None = None
    cdr_location: CdrLocation
    meter_id: String255 | None = None
    currency: String3
    tariffs: list[dict[str, Any]] | None = None
    charging_periods: Annotated[list[ChargingPeriod], Field(min_length=1)]
    signed_data: SignedData | None = None
    total_cost: Price
    total_fixed_cost: Price | None = None
    total_energy: float
    total_energy_cost: Price | None = None
    total_time: float
    total_time_cost: Price | None = None
    total_parking_time: float | None = None
    total_parking_cost: Price | None = None
    total_reservation_cost: Price | None = None
    remark: Annotated[str, StringConstraints(max_length=255)] | None = None
    invoice_reference_id: CiString39 | None = None
    credit: bool | None = None
    credit_reference_id: CiString39 | None = None
    home_charging_compensation: bool | None = None
    last_updated: DateTime

    @model_validator(mode="after")
    def _credit_needs_reference(self) -> Cdr:
        if self.credit and not self.credit_reference_id:
            raise ValueError("a credit CDR must carry credit_reference_id")
        return self

    @property
    def is_credit(self) -> bool:
        """True for a credit CDR (reverses an earlier CDR)."""
        return bool(self.credit)


CDR = Cdr


# ---------------------------------------------------------------------------------- charging profiles


class ChargingRateUnit(StrEnum):
    """W = total power over all phases; A = current per phase."""

    W = "W"
    A = "A"


def _one_decimal(value: float) -> float:
    return round(value, 1)


class ChargingProfilePeriod(OcpiModel):
    """A limit from ``start_period`` seconds after the profile start until the next period."""

    start_period: Annotated[int, Field(ge=0)]
    # The spec allows at most one decimal; some receivers validate it, so round on the way in.
    limit: Annotated[float, PlainSerializer(_one_decimal, return_type=float)]

    @field_validator("limit")
    @classmethod
    def _round_limit(cls, value: float) -> float:
        return round(value, 1)


class ChargingProfile(OcpiModel):
    """A maximum charging schedule (never a target); absolute if start_date_time is set."""

    start_date_time: DateTime | None = None
    duration: Annotated[int, Field(ge=0)] | None = None
    charging_rate_unit: ChargingRateUnit
    # Peers built on one library spell it min_charge_rate.
    min_charging_rate: float | None = Field(
        default=None, validation_alias=AliasChoices("min_charging_rate", "min_charge_rate")
    )
    charging_profile_period: list[ChargingProfilePeriod] = Field(default_factory=list)

    @field_validator("min_charging_rate")
    @classmethod
    def _round_min_rate(cls, value: float | None) -> float | None:
        return None if value is None else round(value, 1)

    @field_validator("charging_profile_period", mode="before")
    @classmethod
    def _single_period_as_list(cls, value: Any) -> Any:
        # A known peer types this as a single object instead of a list.
        if value is None:
            return []
        if isinstance(value, dict):
            return [value]
        return value

    @field_validator("charging_profile_period")
    @classmethod
    def _sorted_periods(cls, value: list[ChargingProfilePeriod]) -> list[ChargingProfilePeriod]:
        starts = [period.start_period for period in value]
        if len(set(starts)) != len(starts):
            raise ValueError("charging_profile_period start_period values must be unique")
        return sorted(value, key=lambda period: period.start_period)


class SetChargingProfile(OcpiModel):
    """Body of PUT {chargingprofiles}/{session_id}."""

    charging_profile: ChargingProfile
    response_url: Url


class ChargingProfileResponseType(StrEnum):
    """Synchronous answer: only says whether the CPO will forward the request."""

    ACCEPTED = "ACCEPTED"
    NOT_SUPPORTED = "NOT_SUPPORTED"
    REJECTED = "REJECTED"
    TOO_OFTEN = "TOO_OFTEN"
    UNKNOWN_SESSION = "UNKNOWN_SESSION"


class ChargingProfileResponse(OcpiModel):
    """Synchronous response to PUT/GET/DELETE on the CPO's chargingprofiles receiver."""

    result: ChargingProfileResponseType
    timeout: Annotated[int, Field(ge=0)]


class ChargingProfileResultType(StrEnum):
    """Asynchronous outcome reported on the response_url."""

    ACCEPTED = "ACCEPTED"
    REJECTED = "REJECTED"
    UNKNOWN = "UNKNOWN"


class ActiveChargingProfile(OcpiModel):
    """The schedule in force on the charge point; offsets count from start_date_time."""

    start_date_time: DateTime
    charging_profile: ChargingProfile


class ActiveChargingProfileResult(OcpiModel):
    """Async result of a GET: the active profile when ACCEPTED."""

    result: ChargingProfileResultType
    profile: ActiveChargingProfile | None = None


class ChargingProfileResult(OcpiModel):
    """Async result of a PUT (set profile)."""

    result: ChargingProfileResultType


class ClearProfileResult(OcpiModel):
    """Async result of a DELETE (clear profile)."""

    result: ChargingProfileResultType
