"""HTTP routes of the admin audit (admin only, read only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from vpp.api.deps import AdminDep, SessionDep
from vpp.api.errors import error_responses
from vpp.api.types import UtcDatetime
from vpp.audit import service
from vpp.audit.schemas import AuditEntryRead

router = APIRouter(prefix="/api/v1/audit", tags=["audit"], responses=error_responses(401, 403))


@router.get("", operation_id="list_audit_entries", responses=error_responses(422))
def list_audit_entries(
    session: SessionDep,
    _admin: AdminDep,
    action: Annotated[str | None, Query(max_length=64, pattern=r"^[a-z_]+(\.[a-z_-]+)+$",
                                        description="only this action, e.g. apikey.create")] = None,
    actor_key_id: Annotated[str | None, Query(max_length=36, pattern=r"^[0-9a-fA-F-]{1,36}$",
                                              description="only actions of this API key")] = None,
    since: Annotated[UtcDatetime | None, Query(description="actions from this moment on (with a zone)")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[AuditEntryRead]:
    """Administrative actions, newest first: who (key name and role), what, on which object, when."""
    rows = service.list_entries(session, action=action, actor_key_id=actor_key_id, since=since, limit=limit,
                                offset=offset)
    return [AuditEntryRead.model_validate(row) for row in rows]
