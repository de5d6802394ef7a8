"""HTTP routes of OCPI connections (admin only): invite CPOs, list connections, set compatibility flags."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from vpp.api.deps import AdminDep, SessionDep, SettingsDep
from vpp.api.errors import error_responses
from vpp.apikeys.service import Principal
from vpp.audit import service as audit
from vpp.db import unit_of_work
from vpp.domain.errors import DomainError
from vpp.ocpi import service
from vpp.ocpi.schemas import ConnectionRead, ConnectionUpdate, InviteCreate, InviteCreated
from vpp.ocpi.tables import OcpiConnection
from vpp.ports import CredentialsRotation

router = APIRouter(prefix="/api/v1/ocpi/connections", tags=["ocpi-connections"], responses=error_responses(401, 403))


def versions_url(public_url: str) -> str:
    """Our OCPI versions URL."""
    return public_url.rstrip("/") + "/ocpi/versions"


def _read(row: OcpiConnection) -> ConnectionRead:
    return ConnectionRead.model_validate(
        {
            **{name: getattr(row, name) for name in ConnectionRead.model_fields if name not in ("roles", "flags")},
            "roles": [
                {"role": r.role, "country_code": r.country_code, "party_id": r.party_id, "name": r.name}
                for r in service.roles_of(row)
            ],
            "flags": service.flags_of(row),
        }
    )


@router.get("", operation_id="list_ocpi_connections")
def list_connections(session: SessionDep, _admin: AdminDep) -> list[ConnectionRead]:
    """All CPO connections (never their tokens)."""
    return [_read(row) for row in service.list_connections(session)]


@router.post("", status_code=201, operation_id="invite_ocpi_connection", responses=error_responses(422))
def invite(body: InviteCreate, session: SessionDep, settings: SettingsDep, admin: AdminDep) -> InviteCreated:
    """Create a connection for a CPO that will register with us: its token A is shown only here."""
    row, token_a = service.invite(session, name=body.name, pepper=settings.secret, flags=body.flags)
    audit.record(session, admin, "ocpi.invite", target=row.id, detail={"name": row.name})
    return InviteCreated(connection_id=row.id, token_a=token_a, versions_url=versions_url(settings.public_url))


@router.get("/{connection_id}", operation_id="get_ocpi_connection", responses=error_responses(404))
def get_connection(connection_id: str, session: SessionDep, _admin: AdminDep) -> ConnectionRead:
    """One connection by id or name."""
    return _read(service.get_or_raise(session, connection_id))


@router.patch("/{connection_id}", operation_id="update_ocpi_connection", responses=error_responses(404, 422))
def update_connection(
    connection_id: str, body: ConnectionUpdate, request: Request, session: SessionDep, admin: AdminDep
) -> ConnectionRead:
    """Rename a connection or replace its compatibility flags."""
    row = service.update(session, connection_id, name=body.name, flags=body.flags)
    audit.record(session, admin, "ocpi.update", target=row.id, detail=body.model_dump(mode="json", exclude_none=True))
    ocpi_app = getattr(request.app.state, "ocpi_app", None)
    if ocpi_app is not None:
        ocpi_app.state.ocpi_authenticator.forget()
    return _read(row)


@router.post("/{connection_id}/pull", status_code=202, operation_id="pull_ocpi_connection",
             responses=error_responses(404))
def pull(connection_id: str, request: Request, session: SessionDep, admin: AdminDep) -> dict[str, str]:
    """Resync sessions, locations and CDRs from the CPO in the background."""
    row = service.get_or_raise(session, connection_id)
    audit.record(session, admin, "ocpi.pull", target=row.id)
    request.app.state.task_queue.enqueue("ocpi.pull_sessions", connection_id=row.id)
    return {"connection_id": row.id, "task": "ocpi.pull_sessions"}


@router.post("/{connection_id}/credentials/rotate", operation_id="rotate_ocpi_credentials",
             responses=error_responses(404, 409, 503))
async def rotate_credentials(connection_id: str, request: Request, admin: AdminDep) -> ConnectionRead:
    """Rotate the tokens both ways: issue the CPO a new token and send it with a credentials PUT; the CPO answers
    with the token we use from then on. The old token stops working for the CPO at once."""

    def resolve() -> str:
        with unit_of_work(request.app.state.session_factory) as session:
            return service.get_or_raise(session, connection_id).id

    resolved = await run_in_threadpool(resolve)
    rotation: CredentialsRotation = request.app.state.ocpi_credentials_rotation
    try:
        await rotation(resolved)
    except DomainError as exc:
        await run_in_threadpool(_record_failure, request, admin, resolved, exc)
        raise

    def record() -> ConnectionRead:
        with unit_of_work(request.app.state.session_factory) as session:
            audit.record(session, admin, "ocpi.rotate_credentials", target=resolved)
            return _read(service.get_or_raise(session, resolved))

    return await run_in_threadpool(record)


def _record_failure(request: Request, admin: Principal, connection_id: str, exc: DomainError) -> None:
    with unit_of_work(request.app.state.session_factory) as session:
        audit.record(session, admin, "ocpi.rotate_credentials", target=connection_id,
                     detail={"outcome": "failed", "error": exc.message[:500]})
