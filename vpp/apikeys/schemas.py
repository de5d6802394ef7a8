"""API models of the API-key feature."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from vpp.api.types import JSON_INTEGER, Name, UtcDatetime
from vpp.domain.roles import Role


class ApiKeyCreate(BaseModel):
    """A request for a new key."""

    model_config = ConfigDict(extra="forbid")

    name: Name = Field(min_length=1, max_length=200)
    role: Role
    expires_at: UtcDatetime | None = Field(
        None, description="when the key stops working (401 'expired' afterwards); must be in the future")
    rate_limit_per_minute: Annotated[int, Field(ge=1, le=10_000_000), JSON_INTEGER] | None = Field(
        None, description="this key's request limit per minute (default: per role, then global)")


class ApiKeyRead(BaseModel):
    """A key as listed: never its secret."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    prefix: str
    name: str
    role: Role
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    expires_at: datetime | None
    rate_limit_per_minute: int | None


class ApiKeyCreated(ApiKeyRead):
    """A newly created key: the only time its secret is shown."""

    key: str
