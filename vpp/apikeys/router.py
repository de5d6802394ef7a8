"""HTTP routes of API keys (admin only)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from vpp.api.deps import AdminDep, SessionDep, SettingsDep
from vpp.api.errors import error_responses
from vpp.apikeys import service
from vpp.apikeys.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyRead
from vpp.audit import service as audit

router = APIRouter(prefix="/api/v1/apikeys", tags=["apikeys"], responses=error_responses(401, 403))


@router.get("", operation_id="list_api_keys")
def list_api_keys(session: SessionDep, _admin: AdminDep) -> list[ApiKeyRead]:
    """All API keys (never their secrets)."""
    return [ApiKeyRead.model_validate(row) for row in service.list_keys(session)]


@router.post("", status_code=201, operation_id="create_api_key", responses=error_responses(422))
def create_api_key(
    body: ApiKeyCreate, session: SessionDep, settings: SettingsDep, admin: AdminDep
) -> ApiKeyCreated:
    """Create a key (optionally expiring); the response is the only place its secret appears."""
    row, key = service.create(session, name=body.name, role=body.role, pepper=settings.secret,
                              expires_at=body.expires_at, rate_limit_per_minute=body.rate_limit_per_minute)
    audit.record(session, admin, "apikey.create", target=row.id,
                 detail={"prefix": row.prefix, "name": row.name, "role": row.role,
                         "expires_at": row.expires_at.isoformat() if row.expires_at else None,
                         "rate_limit_per_minute": row.rate_limit_per_minute})
    return ApiKeyCreated.model_validate({**ApiKeyRead.model_validate(row).model_dump(), "key": key})


@router.delete("/{key_id}", operation_id="revoke_api_key", responses=error_responses(404, 409))
def revoke_api_key(key_id: str, request: Request, session: SessionDep, admin: AdminDep) -> ApiKeyRead:
    """Revoke a key by id or prefix."""
    row = service.revoke(session, key_id)
    audit.record(session, admin, "apikey.revoke", target=row.id, detail={"prefix": row.prefix, "name": row.name})
    request.app.state.authenticator.forget()
    return ApiKeyRead.model_validate(row)
