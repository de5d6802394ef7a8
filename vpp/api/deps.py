"""Annotated dependencies of the HTTP edge: settings, the per-request transaction, the caller's role."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session, sessionmaker

from vpp.api.auth import ApiKeyAuthenticator
from vpp.apikeys.service import Principal
from vpp.config import Settings
from vpp.domain.errors import Forbidden, Unauthorized
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
    principal = authenticator.authenticate(credentials.credentials)
    if principal is None:
        raise Unauthorized("unknown or revoked API key")
    request.state.principal = principal
    return principal


def require_roles(*roles: Role) -> Callable[..., Principal]:
    """A dependency that admits the given roles (and admin, who may call everything), else 403."""
    allowed = frozenset(roles) | {Role.ADMIN}

    def dependency(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
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
