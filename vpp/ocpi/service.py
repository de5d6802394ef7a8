"""Use cases of OCPI connections: invite, register both ways, rotate, unregister, authenticate."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy.orm import Session

from vpp.apikeys.service import hash_secret
from vpp.db import utcnow
from vpp.domain.errors import Conflict, InvalidInput, NotFound
from vpp.keyring import Keyring
from vpp.ocpi import repository
from vpp.ocpi.schemas import ConnectionAuth, ConnectionFlags, EndpointRef, PartyRole
from vpp.ocpi.tables import OcpiConnection

PullKind = Literal["sessions", "cdrs", "locations"]


@dataclass(frozen=True, slots=True)
class PeerAccess:
    """What an outbound call to the peer needs: where, with which token, and its quirks."""

    connection_id: str
    name: str
    status: str
    outgoing_token: str
    versions_url: str | None
    version: str | None
    endpoints: tuple[EndpointRef, ...]
    roles: tuple[PartyRole, ...]
    flags: ConnectionFlags
    sessions_pulled_at: datetime | None
    cdrs_pulled_at: datetime | None
    locations_pulled_at: datetime | None

    def endpoint(self, module: str, role: str | None = None) -> str | None:
        """URL of the peer's module endpoint, preferring ``role`` and falling back to any role."""
        matches = [e for e in self.endpoints if e.module.casefold() == module.casefold()]
        preferred = [e for e in matches if role is None or e.role == role]
        chosen = preferred or matches
        return chosen[0].url if chosen else None


def new_token() -> str:
    """A fresh credentials token: 256 random bits, printable ASCII, 43 characters."""
    return secrets.token_urlsafe(32)


def outgoing_token_of(row: OcpiConnection, keyring: Keyring) -> str | None:
    """The token we present to the peer, unsealed (None when there is none)."""
    return None if row.outgoing_token_sealed is None else keyring.open(row.outgoing_token_sealed)


def set_outgoing_token(row: OcpiConnection, token: str | None, keyring: Keyring) -> None:
    """Store the token we present to the peer, sealed with the current key."""
    row.outgoing_token_sealed = None if token is None else keyring.seal(token)


def reseal_outgoing_tokens(session: Session, keyring: Keyring) -> tuple[int, int]:
    """Re-encrypt every stored outgoing token with the current key; (re-sealed, already current)."""
    resealed = current = 0
    for row in repository.with_outgoing_token(session):
        sealed = row.outgoing_token_sealed
        assert sealed is not None
        if keyring.is_current(sealed):
            current += 1
            continue
        row.outgoing_token_sealed = keyring.seal(keyring.open(sealed))
        resealed += 1
    session.flush()
    return resealed, current


def flags_of(row: OcpiConnection) -> ConnectionFlags:
    """The connection's compatibility flags."""
    return ConnectionFlags.model_validate(row.flags or {})


def roles_of(row: OcpiConnection) -> tuple[PartyRole, ...]:
    """The connection's roles."""
    return tuple(
        PartyRole(r["role"], r["country_code"], r["party_id"], r.get("name", "")) for r in row.roles or []
    )


def endpoints_of(row: OcpiConnection) -> tuple[EndpointRef, ...]:
    """The connection's endpoints."""
    return tuple(EndpointRef(e["module"], e["role"], e["url"]) for e in row.endpoints or [])


def _roles_json(roles: Sequence[PartyRole]) -> list[dict[str, str]]:
    return [
        {"role": r.role, "country_code": r.country_code, "party_id": r.party_id, "name": r.name} for r in roles
    ]


def _endpoints_json(endpoints: Sequence[EndpointRef]) -> list[dict[str, str]]:
    return [{"module": e.module, "role": e.role, "url": e.url} for e in endpoints]


def _check_roles(roles: Sequence[PartyRole]) -> None:
    if not roles:
        raise InvalidInput("a connection needs at least one role")
    seen = {(r.role.upper(), r.country_code.casefold(), r.party_id.casefold()) for r in roles}
    if len(seen) != len(roles):
        raise InvalidInput("each (role, country_code, party_id) of a connection must be unique")


def invite(
    session: Session, *, name: str, pepper: str, flags: ConnectionFlags | None = None
) -> tuple[OcpiConnection, str]:
    """Create a connection awaiting registration; returns it and token A (shown once, stored hashed)."""
    if not name.strip():
        raise InvalidInput("name must not be empty")
    token_a = new_token()
    row = OcpiConnection(
        name=name.strip(),
        status="invited",
        initiated_by="peer",
        token_a_hash=hash_secret(token_a, pepper),
        flags=(flags or ConnectionFlags()).model_dump(exclude_none=True),
    )
    session.add(row)
    session.flush()
    return row, token_a


def start_outbound(
    session: Session,
    *,
    name: str,
    versions_url: str,
    token_a: str,
    pepper: str,
    keyring: Keyring,
    flags: ConnectionFlags | None = None,
) -> tuple[OcpiConnection, str]:
    """Begin registering with a CPO that gave us token A; returns the row and our token B for it.

    The caller commits before POSTing: the CPO calls our versions endpoint with token B before it answers.
    """
    if not name.strip():
        raise InvalidInput("name must not be empty")
    token_b = new_token()
    row = OcpiConnection(
        name=name.strip(),
        status="registering",
        initiated_by="us",
        incoming_token_hash=hash_secret(token_b, pepper),
        outgoing_token_sealed=keyring.seal(token_a),
        versions_url=versions_url,
        flags=(flags or ConnectionFlags()).model_dump(exclude_none=True),
    )
    session.add(row)
    session.flush()
    return row, token_b


def get_or_raise(session: Session, connection_id: str) -> OcpiConnection:
    """A connection by id or name, or NotFound."""
    row = repository.by_name_or_id(session, connection_id)
    if row is None:
        raise NotFound(f"OCPI connection {connection_id!r} does not exist")
    return row


def list_connections(session: Session, *, status: str | None = None) -> list[OcpiConnection]:
    """All connections, oldest first."""
    return repository.all_connections(session, status=status)


def record_registration(
    session: Session,
    connection_id: str,
    *,
    outgoing_token: str,
    keyring: Keyring,
    versions_url: str,
    version: str,
    endpoints: Sequence[EndpointRef],
    roles: Sequence[PartyRole],
) -> OcpiConnection:
    """Store the outcome of a handshake we initiated (their token C, endpoints, roles): now connected."""
    _check_roles(roles)
    row = get_or_raise(session, connection_id)
    set_outgoing_token(row, outgoing_token, keyring)
    row.versions_url = versions_url
    row.version = version
    row.endpoints = _endpoints_json(endpoints)
    row.roles = _roles_json(roles)
    row.status = "connected"
    row.token_a_hash = None
    row.registered_at = utcnow()
    session.flush()
    return row


# How long after a registration with token A the peer may POST it again, if it has not yet called with token C.
REGISTRATION_RETRY_GRACE = timedelta(minutes=10)


def accept_registration(
    session: Session,
    connection_id: str,
    *,
    pepper: str,
    outgoing_token: str,
    keyring: Keyring,
    versions_url: str,
    version: str,
    endpoints: Sequence[EndpointRef],
    roles: Sequence[PartyRole],
    via_token_a: bool = False,
) -> tuple[OcpiConnection, str]:
    """Store a peer's registration (POST) or update (PUT) and issue a new token for it (token C).

    On an update token A and the previous incoming token stop working. A registration with token A keeps token A
    for a repeated POST until the peer first calls with token C or ``REGISTRATION_RETRY_GRACE`` has passed
    (``authenticate``): a peer whose POST timed out after we registered it never got token C, and without this its
    every retry would be refused. A repeat issues a new token C; the one it never received dies.
    """
    _check_roles(roles)
    row = get_or_raise(session, connection_id)
    repeat = via_token_a and row.status == "connected"
    token_c = new_token()
    row.incoming_token_hash = hash_secret(token_c, pepper)
    if not via_token_a:
        row.token_a_hash = None
    set_outgoing_token(row, outgoing_token, keyring)
    row.versions_url = versions_url
    row.version = version
    row.endpoints = _endpoints_json(endpoints)
    row.roles = _roles_json(roles)
    row.status = "connected"
    if not repeat or row.registered_at is None:
        row.registered_at = utcnow()
    session.flush()
    return row, token_c


def rotate_outgoing(
    session: Session, connection_id: str, *, pepper: str
) -> tuple[OcpiConnection, str, str | None]:
    """Mint a new token for the peer to use before a credentials PUT; returns row, new token, old hash."""
    row = get_or_raise(session, connection_id)
    if row.status != "connected":
        raise Conflict(f"connection {row.name!r} is {row.status}, not connected")
    token = new_token()
    previous = row.incoming_token_hash
    row.incoming_token_hash = hash_secret(token, pepper)
    session.flush()
    return row, token, previous


def unregister(session: Session, connection_id: str) -> OcpiConnection:
    """Forget the tokens both ways: the peer can no longer call us, nor we it."""
    row = get_or_raise(session, connection_id)
    row.status = "unregistered"
    row.incoming_token_hash = None
    row.token_a_hash = None
    row.outgoing_token_sealed = None
    session.flush()
    return row


def mark_failed(session: Session, connection_id: str) -> None:
    """A handshake we initiated failed: the row stays for inspection, its tokens die."""
    row = session.get(OcpiConnection, connection_id)
    if row is not None:
        row.status = "failed"
        row.incoming_token_hash = None
        row.outgoing_token_sealed = None
        session.flush()


def update(
    session: Session, connection_id: str, *, name: str | None = None, flags: ConnectionFlags | None = None
) -> OcpiConnection:
    """Rename a connection or replace its compatibility flags."""
    row = get_or_raise(session, connection_id)
    if name is not None:
        if not name.strip():
            raise InvalidInput("name must not be empty")
        row.name = name.strip()
    if flags is not None:
        row.flags = flags.model_dump(exclude_none=True)
    session.flush()
    return row


def authenticate(
    session: Session, candidates: Sequence[str], *, pepper: str
) -> tuple[ConnectionAuth, str] | None:
    """The caller behind one of the candidate tokens of an Authorization header, and the token that matched."""
    hashed = {hash_secret(token, pepper): token for token in candidates}
    row = repository.by_token_hashes(session, list(hashed))
    if row is None:
        return None
    via_token_a = row.token_a_hash is not None and row.token_a_hash in hashed
    if row.token_a_hash is not None and row.status == "connected":
        # A peer registered with token A: token A serves a repeated POST only until the peer calls with its token C
        # (then it has it) or the grace has passed (accept_registration).
        if not via_token_a:
            row.token_a_hash = None
            session.flush()
        elif row.registered_at is None or utcnow() - row.registered_at > REGISTRATION_RETRY_GRACE:
            return None
    matched = hashed[row.token_a_hash] if via_token_a and row.token_a_hash else hashed.get(
        row.incoming_token_hash or "", candidates[0]
    )
    auth = ConnectionAuth(
        connection_id=row.id,
        name=row.name,
        status=row.status,
        roles=roles_of(row),
        flags=flags_of(row),
        via_token_a=via_token_a,
    )
    return auth, matched


def peer_access(session: Session, connection_id: str, keyring: Keyring) -> PeerAccess:
    """Everything an outbound call needs (the token unsealed), detached from the session."""
    row = get_or_raise(session, connection_id)
    token = outgoing_token_of(row, keyring)
    if token is None:
        raise Conflict(f"connection {row.name!r} has no token to call the peer with (status {row.status})")
    return PeerAccess(
        connection_id=row.id,
        name=row.name,
        status=row.status,
        outgoing_token=token,
        versions_url=row.versions_url,
        version=row.version,
        endpoints=endpoints_of(row),
        roles=roles_of(row),
        flags=flags_of(row),
        sessions_pulled_at=row.sessions_pulled_at,
        cdrs_pulled_at=row.cdrs_pulled_at,
        locations_pulled_at=row.locations_pulled_at,
    )


def mark_pulled(session: Session, connection_id: str, kind: PullKind, at: datetime) -> None:
    """Remember when a resync of ``kind`` last completed (the next one starts from there)."""
    row = get_or_raise(session, connection_id)
    setattr(row, f"{kind}_pulled_at", at)
    session.flush()
