"""Values and API models of the OCPI connections feature."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from vpp.api.types import Name

ConnectionStatus = Literal["invited", "registering", "connected", "unregistered", "failed"]


class ConnectionFlags(BaseModel):
    """Per-peer compatibility switches; the defaults are the spec's behaviour."""

    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)  # JSON booleans and numbers only

    discharge_profiles: bool = Field(
        False, description="opt-in V2G: a negative limit is sent as a discharge setpoint (outside OCPI 2.2.1)"
    )
    raw_token: bool = Field(False, description="send our token un-encoded (2.1.1-era peers)")
    list_wrapped_data: bool = Field(False, description="wrap single objects in a one-element list in our answers")
    lenient_last_updated: bool = Field(False, description="accept a Session PATCH without last_updated")
    profiles_in_watts: bool = Field(False, description="send AC limits in W instead of A per phase")
    legacy_profile_shape: bool = Field(
        False, description="extrawest-ocpi 2025.7: min_charge_rate and a single charging_profile_period object"
    )
    trailing_slash_urls: bool = Field(
        False,
        description="advertise our module URLs with a trailing '/' to peers that append 'CC/PID/id' to an endpoint "
        "URL by string concatenation (extrawest-ocpi 2025.7's push helper); inbound paths work either way",
    )
    ignore_link_header: bool = Field(
        False,
        description="page pulls by offset and X-Total-Count, ignoring a broken Link header (extrawest-ocpi 2025.7 "
        "writes https:// and enum names into its next-page link)",
    )
    require_routing_headers: bool = Field(False, description="refuse functional requests without OCPI-from-*")
    rate_limit_per_s: float | None = Field(None, gt=0, description="inbound requests/s; default from settings")
    rate_limit_burst: float | None = Field(None, gt=0)


@dataclass(frozen=True, slots=True)
class PartyRole:
    """A role the peer plays, with its party (country code and party id as the peer spells them)."""

    role: str
    country_code: str
    party_id: str
    name: str = ""

    def owns(self, country_code: str, party_id: str) -> bool:
        """True if this role's party is ``country_code``/``party_id`` (compared case-insensitively)."""
        return (
            self.country_code.casefold() == country_code.casefold()
            and self.party_id.casefold() == party_id.casefold()
        )


@dataclass(frozen=True, slots=True)
class EndpointRef:
    """A module endpoint of the peer."""

    module: str
    role: str
    url: str


@dataclass(frozen=True, slots=True)
class ConnectionAuth:
    """What an inbound request needs to know about its caller; cached by the authenticator."""

    connection_id: str
    name: str
    status: str
    roles: tuple[PartyRole, ...]
    flags: ConnectionFlags
    via_token_a: bool

    def owns(self, country_code: str, party_id: str) -> bool:
        """True if the caller registered a role for this party."""
        return any(role.owns(country_code, party_id) for role in self.roles)


class InviteCreate(BaseModel):
    """A request for a registration token A for a CPO that will register with us."""

    model_config = ConfigDict(extra="forbid")

    name: Name = Field(min_length=1, max_length=200)
    flags: ConnectionFlags = Field(default_factory=ConnectionFlags)


class InviteCreated(BaseModel):
    """Token A and our versions URL, to hand to the CPO out of band."""

    connection_id: str
    token_a: str
    versions_url: str


class RoleRead(BaseModel):
    """A role of a connection."""

    role: str
    country_code: str
    party_id: str
    name: str


class ConnectionRead(BaseModel):
    """A connection as listed (never its tokens)."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    status: str
    initiated_by: str
    versions_url: str | None
    version: str | None
    roles: list[RoleRead]
    endpoints: list[dict[str, str]]
    flags: ConnectionFlags
    created_at: datetime
    registered_at: datetime | None
    sessions_pulled_at: datetime | None


class ConnectionUpdate(BaseModel):
    """A change of a connection's name or compatibility flags."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = Field(None, min_length=1, max_length=200)
    flags: ConnectionFlags | None = None
