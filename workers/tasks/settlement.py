"""Settlement after the day closes, and again when a late CDR arrives (recomputing replaces, never duplicates)."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from celery import shared_task
from sqlalchemy import select

from vpp.cdrs.tables import ChargeDetailRecord
from vpp.db import unit_of_work, utcnow
from vpp.domain.errors import DomainError
from vpp.jobs import outbox, partitions
from vpp.jobs import service as jobs
from vpp.observability import TASKS
from vpp.settlement import service
from vpp.settlement.tables import SettlementRun
from vpp.settlement.values import DayGrid
from workers.runtime import get_runtime

# The previous local day is settled from this local hour on: late telemetry has had two hours to arrive.
SETTLE_FROM_LOCAL = time(2, 0)


def day_to_settle(now: datetime, time_zone: str) -> date | None:
    """Yesterday (local) once the settle hour has passed today, else None."""
    local = now.astimezone(ZoneInfo(time_zone))
    return local.date() - timedelta(days=1) if local.time() >= SETTLE_FROM_LOCAL else None


@shared_task(name="settlement.settle_day")  # type: ignore[untyped-decorator]
def settle_day(day: str | None = None, pool: str | None = None, force: bool = False) -> dict[str, Any]:
    """Settle every pool of ``day`` (default: yesterday after 02:00 local) not settled yet (``force``: all)."""
    runtime = get_runtime()
    now = utcnow()
    zone = runtime.settings.market_timezone
    target = date.fromisoformat(day) if day else day_to_settle(now, zone)
    detail: dict[str, Any] = {"day": target.isoformat() if target else None, "settled": [], "failed": {}}
    status = "ok"
    if target is None:
        detail["skipped"] = "before the settle hour"
        status = "skipped"
    else:
        with unit_of_work(runtime.session_factory) as db:
            grid_pools = [pool] if pool else service.pools_with_data(db, DayGrid.of(target, zone))
            done = set(db.scalars(select(SettlementRun.pool).where(SettlementRun.day == target)))
        for name in grid_pools:
            if name in done and not force and not day:
                continue
            try:
                with unit_of_work(runtime.session_factory) as db:
                    service.settle(db, day=target, pool=name, time_zone=zone, now=now)
                detail["settled"].append(name)
            except DomainError as exc:
                detail["failed"][name] = exc.message
                status = "partial"
    with unit_of_work(runtime.session_factory) as db:
        jobs.record_run(db, "settlement.settle_day", started_at=now, finished_at=utcnow(), status=status,
                        detail=detail)
    TASKS.labels("settlement.settle_day", status).inc()
    return {"status": status, **detail}


@shared_task(name="settlement.recompute_for_cdr")  # type: ignore[untyped-decorator]
def recompute_for_cdr(cdr_id: str, outbox_id: str | None = None) -> dict[str, Any]:
    """Recompute the settled days the CDR's session touches (only runs that exist; the nightly run does the rest);
    then mark its task outbox entry done."""
    runtime = get_runtime()
    now = utcnow()
    zone = ZoneInfo(runtime.settings.market_timezone)
    recomputed: list[str] = []
    with unit_of_work(runtime.session_factory) as db:
        cdr = db.get(ChargeDetailRecord, cdr_id)
        runs: list[tuple[date, str]] = []
        if cdr is not None:
            first, last = cdr.start_at.astimezone(zone).date(), cdr.end_at.astimezone(zone).date()
            runs = [(r.day, r.pool) for r in db.scalars(
                select(SettlementRun).where(SettlementRun.day >= first, SettlementRun.day <= last))]
    # A day whose partitions retention dropped (PostgreSQL) has lost its readings: its settled run stands.
    with unit_of_work(runtime.session_factory) as db:
        gone = {day for day, _pool in runs if partitions.dropped(db.connection(), day, zone.key)}
    too_old = [f"{day.isoformat()}/{pool}" for day, pool in runs if day in gone]
    for day, pool in runs:
        if day in gone:
            continue
        with unit_of_work(runtime.session_factory) as db:
            service.settle(db, day=day, pool=pool, time_zone=runtime.settings.market_timezone, now=now)
        recomputed.append(f"{day.isoformat()}/{pool}")
    status = "ok" if cdr is not None else "skipped"
    # Most CDRs arrive before their day is settled: only a recompute is worth a job-run row.
    with unit_of_work(runtime.session_factory) as db:
        if recomputed or too_old:
            jobs.record_run(db, "settlement.recompute_for_cdr", started_at=now, finished_at=utcnow(), status=status,
                            detail={"cdr_id": cdr_id, "recomputed": recomputed, "past_retention": too_old})
        outbox.done(db, outbox_id)
    TASKS.labels("settlement.recompute_for_cdr", status).inc()
    return {"status": status, "cdr_id": cdr_id, "recomputed": recomputed, "past_retention": too_old}
