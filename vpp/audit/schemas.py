"""API models of the admin audit."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict


class AuditEntryRead(BaseModel):
    """One recorded administrative action."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    at: datetime
    actor: str
    actor_key_id: str | None
    action: str
    target: str | None
    detail: dict[str, Any]
    request_id: str | None
