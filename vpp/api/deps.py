"""Annotated dependencies of the HTTP edge: settings, the per-request transaction, the caller's role."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Iterator
from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session, sessionmaker

from vpp.api.auth import ApiKeyAuthenticator, KeyRateLimiter
from vpp.apikeys.service import Principal, Rejected
from vpp.config import Settings
from vpp.domain.errors import Forbidden, RateLimited, Unauthorized
from vpp.domain.roles import Role


def get_settings(request: Request) -> Settings:
    """The process settings."""
    settings: Settings = request.app.state.settings
    return settings


def get_session(request: Request) -> Iterator[Session]:
    """One transaction per request, committed before the response is sent, rolled back on any error."""
    factory: sessionmaker[Session] = request.app.state.session_factory
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


# Every page is bounded: an unbounded offset would reach the database as an integer it cannot hold.
MAX_PAGE_SIZE = 1000
MAX_OFFSET = 10_000_000
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="Page size.")]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Rows to skip (narrow the filters to go deeper).")]

SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session, scope="function")]

_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer vpp_...`")


def get_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller behind the bearer key, or 401."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("missing API key: send 'Authorization: Bearer <key>'")
    authenticator: ApiKeyAuthenticator = request.app.state.authenticator
    verdict = authenticator.check(credentials.credentials)
    if isinstance(verdict, Rejected):
        raise Unauthorized(verdict.reason)
    _rate_limit(request, verdict)
    request.state.principal = verdict
    return verdict


def rate_limit_of(settings: Settings, principal: Principal) -> int:
    """Requests a minute this key may make: its own limit, else its role's, else the default."""
    if principal.rate_limit_per_minute is not None:
        return principal.rate_limit_per_minute
    return settings.api_rate_limit_per_role.get(principal.role.value, settings.api_rate_limit_per_minute)


def _rate_limit(request: Request, principal: Principal) -> None:
    limiter: KeyRateLimiter = request.app.state.api_rate_limiter
    per_minute = rate_limit_of(request.app.state.settings, principal)
    wait = limiter.acquire(principal.key_id, per_minute)
    if wait is not None:
        raise RateLimited(f"too many requests: this key may make {per_minute} a minute",
                          retry_after_s=max(1, math.ceil(wait)))


def require_roles(*roles: Role) -> Callable[..., Awaitable[Principal]]:
    """A dependency that admits the given roles (and admin, who may call everything), else 403."""
    allowed = frozenset(roles) | {Role.ADMIN}

    # async: it only compares, so it runs on the event loop instead of taking a worker-thread hop per request.
    async def dependency(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        if principal.role not in allowed:
            raise Forbidden(
                f"role {principal.role.value!r} may not call this; allowed: {sorted(r.value for r in allowed)}"
            )
        return principal

    return dependency


AdminDep = Annotated[Principal, Depends(require_roles(Role.ADMIN))]
TraderDep = Annotated[Principal, Depends(require_roles(Role.TRADER))]
MarketDep = Annotated[Principal, Depends(require_roles(Role.MARKET))]
DsoDep = Annotated[Principal, Depends(require_roles(Role.DSO))]
PartnerDep = Annotated[Principal, Depends(require_roles(Role.PARTNER, Role.TRADER))]
