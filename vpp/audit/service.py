"""Use cases of the admin audit: record an action in the caller's transaction, list what was recorded."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from vpp.apikeys.service import Principal
from vpp.audit.tables import AdminAuditEntry
from vpp.observability import request_id_var

CLI_ACTOR = "cli"


def actor_of(principal: Principal | None) -> tuple[str, str | None]:
    """How an actor is written down: the key's name and role (never the key), or ``cli``."""
    if principal is None:
        return CLI_ACTOR, None
    return f"{principal.name} ({principal.role.value})", principal.key_id


def record(
    session: Session,
    principal: Principal | None,
    action: str,
    *,
    target: str | None = None,
    detail: dict[str, Any] | None = None,
) -> AdminAuditEntry:
    """Write one audit entry in the same transaction as the action (both commit, or neither)."""
    actor, key_id = actor_of(principal)
    entry = AdminAuditEntry(actor=actor[:240], actor_key_id=key_id, action=action,
                            target=None if target is None else target[:200], detail=detail or {},
                            request_id=request_id_var.get())
    session.add(entry)
    session.flush()
    return entry


def list_entries(
    session: Session,
    *,
    action: str | None = None,
    actor_key_id: str | None = None,
    since: datetime | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[AdminAuditEntry]:
    """Entries newest first, optionally of one action, one key, or from a moment on."""
    stmt = select(AdminAuditEntry).order_by(AdminAuditEntry.at.desc(), AdminAuditEntry.id.desc())
    if action is not None:
        stmt = stmt.where(AdminAuditEntry.action == action)
    if actor_key_id is not None:
        stmt = stmt.where(AdminAuditEntry.actor_key_id == actor_key_id)
    if since is not None:
        stmt = stmt.where(AdminAuditEntry.at >= since)
    return list(session.scalars(stmt.limit(limit).offset(offset)))
