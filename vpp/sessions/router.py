"""HTTP routes of charging sessions (traders)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from vpp.api.deps import Limit, Offset, SessionDep, TraderDep
from vpp.api.errors import error_responses
from vpp.api.types import Text, UtcDatetime
from vpp.locations import service as locations
from vpp.sessions import limits, service
from vpp.sessions.schemas import LimitRequestRead, ReadingRead, SessionDetail, SessionPage, SessionRead

SessionStatus = Literal["active", "completed", "invalid", "pending", "reservation"]  # vpp.sessions.values

router = APIRouter(prefix="/api/v1/sessions", tags=["sessions"], responses=error_responses(401, 403))


@router.get("", operation_id="list_sessions", responses=error_responses(422))
def list_sessions(
    session: SessionDep,
    _trader: TraderDep,
    cpo: Annotated[Text | None, Query(description="connection id or name, or a CPO party as CC/PID")] = None,
    status: Annotated[SessionStatus | None, Query(description="the OCPI session status")] = None,
    location: Annotated[Text | None, Query(description="the CPO's location id (case-insensitive)")] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> SessionPage:
    """Sessions, newest first, with the total matching the filters."""
    rows, total = service.list_sessions(session, cpo=cpo, status=status, location=location, limit=limit, offset=offset)
    items = [SessionRead.model_validate({**_columns(row), "cpo": name}) for row, name in rows]
    return SessionPage(items=items, total=total, limit=limit, offset=offset)


@router.get("/{session_id}", operation_id="get_session", responses=error_responses(404))
def get_session(
    session_id: str,
    session: SessionDep,
    _trader: TraderDep,
    start: Annotated[UtcDatetime | None, Query(description="readings from (inclusive)")] = None,
    end: Annotated[UtcDatetime | None, Query(description="readings until (exclusive)")] = None,
) -> SessionDetail:
    """A session with its readings, connector, limit in force and limit requests."""
    row = service.get_or_raise(session, session_id)
    name = service.connection_name(session, row.connection_id)
    connector = locations.connector_info(session, row.connection_id, row.location_id, row.evse_uid, row.connector_id)
    return SessionDetail.model_validate(
        {
            **_columns(row),
            "cpo": name,
            "connector": connector.as_dict() if connector else None,
            "active_limit": row.active_limit,
            "active_limit_at": row.active_limit_at,
            "readings": [ReadingRead.model_validate(r) for r in service.readings_of(session, row.id, start=start,
                                                                                      end=end)],
            "limit_requests": [LimitRequestRead.model_validate(r) for r in limits.requests_of(session, row.id)],
        }
    )


def _columns(row: object) -> dict[str, object]:
    return {name: getattr(row, name) for name in SessionRead.model_fields if name != "cpo"}
