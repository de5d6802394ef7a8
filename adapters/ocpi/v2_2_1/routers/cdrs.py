"""Inbound CDRs receiver: the CPO POSTs final CDRs (we answer with their Location); GET reads one back."""

from __future__ import annotations

from fastapi import BackgroundTasks, Request, Response
from sqlalchemy.orm import Session as DbSession

from adapters.ocpi.v2_2_1 import mapping
from adapters.ocpi.v2_2_1.routers.common import (
    ModuleCaller,
    context_of,
    envelope,
    in_transaction,
    ocpi_router,
    require_party,
)
from adapters.ocpi.v2_2_1.schemas import Cdr
from adapters.ocpi.v2_2_1.transport import OCPI_VERSION, join_url
from vpp.api.deps import SessionDep
from vpp.cdrs import service as cdrs
from vpp.jobs import outbox

RECOMPUTE_TASK = "settlement.recompute_for_cdr"

router = ocpi_router(f"/{OCPI_VERSION}/cdrs", "cdrs")


@router.post("", operation_id="ocpi_post_cdr")
async def post_cdr(request: Request, body: Cdr, caller: ModuleCaller, background: BackgroundTasks) -> Response:
    """Store a CDR (credit CDRs are linked to the CDR they reverse); answers with its Location.

    A new CDR may change an already settled day: its recompute is recorded in the task outbox with the CDR (so a
    broker that loses its queue loses nothing) and enqueued after the commit. The write is one transaction on one
    worker thread (``in_transaction``), committed there: a SQLite writer then holds the write lock only while it
    writes, not across the hops of a request-scoped session.
    """
    require_party(caller, body.country_code, body.party_id, in_url=False)
    record = mapping.cdr_to_record(body)

    def write(db: DbSession) -> tuple[str, str | None]:
        row, created = cdrs.receive(db, caller.connection_id, record)
        return row.id, outbox.add(db, RECOMPUTE_TASK, cdr_id=row.id) if created else None

    cdr_id, outbox_id = await in_transaction(request, write)
    if outbox_id is not None:
        background.add_task(context_of(request).enqueue, RECOMPUTE_TASK, cdr_id=cdr_id, outbox_id=outbox_id)
    location = join_url(context_of(request).module_url("cdrs"), cdr_id)
    return envelope(http_status=201 if outbox_id is not None else 200, headers={"Location": location})


@router.get("/{cdr_id}", operation_id="ocpi_get_cdr")
def get_cdr(cdr_id: str, caller: ModuleCaller, db: SessionDep) -> Response:
    """A CDR this connection sent, by the id in its Location."""
    row = cdrs.get_for_connection(db, caller.connection_id, cdr_id)
    return envelope(mapping.cdr_to_wire(row), wrap_list=caller.auth.flags.list_wrapped_data)
