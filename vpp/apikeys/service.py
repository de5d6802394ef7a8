"""Use cases of API keys: create, verify, list, revoke."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from vpp.apikeys.tables import ApiKey
from vpp.db import utcnow
from vpp.domain.errors import Conflict, InvalidInput, NotFound
from vpp.domain.roles import Role

KEY_PREFIX = "vpp"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the key's id, name and role."""

    key_id: str
    name: str
    role: Role
    expires_at: datetime | None = None
    rate_limit_per_minute: int | None = None

    def expired(self, now: datetime) -> bool:
        """Whether the key has expired at ``now``."""
        return self.expires_at is not None and now >= self.expires_at


@dataclass(frozen=True, slots=True)
class Rejected:
    """Why a key was refused (said in the 401 answer; never contains the key)."""

    reason: str


def hash_secret(secret: str, pepper: str) -> str:
    """The stored form of a secret: HMAC-SHA256 with the service's pepper (keys carry 256 random bits)."""
    return hmac.new(pepper.encode(), secret.encode(), hashlib.sha256).hexdigest()


def split_key(key: str) -> tuple[str, str] | None:
    """Split ``vpp_<prefix>_<secret>`` into prefix and secret; None when malformed."""
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]


def create(
    session: Session,
    *,
    name: str,
    role: Role | str,
    pepper: str,
    expires_at: datetime | None = None,
    rate_limit_per_minute: int | None = None,
) -> tuple[ApiKey, str]:
    """Create a key (optionally expiring, optionally with its own rate limit); returns the row and the full key,
    which is never stored."""
    try:
        role = Role(role)
    except ValueError as exc:
        raise InvalidInput(f"unknown role {role!r}; one of {[r.value for r in Role]}") from exc
    if not name.strip():
        raise InvalidInput("name must not be empty")
    if expires_at is not None:
        if expires_at.tzinfo is None:
            raise InvalidInput("expires_at needs a time zone")
        if expires_at <= utcnow():
            raise InvalidInput("expires_at must be in the future")
    if rate_limit_per_minute is not None and rate_limit_per_minute < 1:
        raise InvalidInput("rate_limit_per_minute must be at least 1")
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    row = ApiKey(prefix=prefix, name=name.strip(), role=role.value, secret_hash=hash_secret(secret, pepper),
                 expires_at=expires_at, rate_limit_per_minute=rate_limit_per_minute)
    session.add(row)
    session.flush()
    return row, f"{KEY_PREFIX}_{prefix}_{secret}"


def check(session: Session, key: str, *, pepper: str) -> Principal | Rejected:
    """The principal of a known, unrevoked key (expiry is the caller's to check against its clock), or why not."""
    parts = split_key(key)
    if parts is None:
        return Rejected("malformed API key: expected vpp_<prefix>_<secret>")
    prefix, secret = parts
    row = session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
    if row is None or not hmac.compare_digest(row.secret_hash, hash_secret(secret, pepper)):
        return Rejected("unknown API key")
    if row.revoked_at is not None:
        return Rejected("revoked API key")
    return Principal(key_id=row.id, name=row.name, role=Role(row.role), expires_at=row.expires_at,
                     rate_limit_per_minute=row.rate_limit_per_minute)


def verify(session: Session, key: str, *, pepper: str) -> Principal | None:
    """The principal of a valid, unrevoked, unexpired key, else None."""
    verdict = check(session, key, pepper=pepper)
    if isinstance(verdict, Rejected) or verdict.expired(utcnow()):
        return None
    return verdict


def touch(session: Session, key_id: str) -> None:
    """Record that a key was used now."""
    row = session.get(ApiKey, key_id)
    if row is not None:
        row.last_used_at = utcnow()
        session.flush()


def list_keys(session: Session) -> list[ApiKey]:
    """All keys, newest first."""
    return list(session.scalars(select(ApiKey).order_by(ApiKey.created_at.desc(), ApiKey.id)))


def get_or_raise(session: Session, key_id_or_prefix: str) -> ApiKey:
    """A key by id or prefix, or NotFound."""
    row = session.get(ApiKey, key_id_or_prefix) or session.scalar(
        select(ApiKey).where(ApiKey.prefix == key_id_or_prefix)
    )
    if row is None:
        raise NotFound(f"API key {key_id_or_prefix!r} does not exist")
    return row


def revoke(session: Session, key_id_or_prefix: str) -> ApiKey:
    """Revoke a key by id or prefix; revoking twice is a conflict."""
    row = get_or_raise(session, key_id_or_prefix)
    if row.revoked_at is not None:
        raise Conflict(f"API key {key_id_or_prefix!r} is already revoked")
    row.revoked_at = utcnow()
    session.flush()
    return row
