"""Reports of stored settlements: summaries and row tables (JSON records or CSV)."""

from __future__ import annotations

import csv
import io
import json
from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from vpp.db import Base
from vpp.settlement import service
from vpp.settlement.tables import (
    SettlementActivationResult,
    SettlementIspResult,
    SettlementOrderResult,
    SettlementRun,
    SettlementSessionResult,
)

TABLES: dict[str, type[Base]] = {
    "isps": SettlementIspResult,
    "activations": SettlementActivationResult,
    "orders": SettlementOrderResult,
    "sessions": SettlementSessionResult,
}
_ORDER = {
    "isps": ("isp_start",), "activations": ("seq",), "orders": ("reference", "isp_start"), "sessions": ("session_id",),
}


def columns(kind: str) -> list[str]:
    """Column names of a report, without the run id."""
    return [c.name for c in TABLES[kind].__table__.columns if c.name != "run_id"]


def summary(run: SettlementRun) -> dict[str, Any]:
    """A run's summary with its identity and when it was computed."""
    return {"run_id": run.id, "status": run.status, "computed_at": run.computed_at.isoformat(),
            "baseline_method": run.baseline_method, **run.summary}


def day_summary(db: Session, day: date, pool: str | None) -> list[dict[str, Any]]:
    """Summaries of one pool's day, or of every pool settled on the day (NotFound when there is none)."""
    if pool is not None:
        return [summary(service.get_run(db, day, pool))]
    runs = service.list_runs(db, day)
    if not runs:
        from vpp.domain.errors import NotFound

        raise NotFound(f"nothing settled for {day.isoformat()}: run `vpp settle --day {day.isoformat()}` first",
                       details={"day": day.isoformat()})
    return [summary(run) for run in runs]


def rows(db: Session, kind: str, day: date, pool: str | None) -> list[dict[str, Any]]:
    """The rows of one report for a pool's day (or every pool's), each with its pool."""
    runs = [service.get_run(db, day, pool)] if pool is not None else service.list_runs(db, day)
    table = TABLES[kind]
    names = columns(kind)
    found: list[dict[str, Any]] = []
    for run in runs:
        order = [getattr(table, name) for name in _ORDER[kind]]
        for row in db.scalars(select(table).where(table.run_id == run.id).order_by(*order)):  # type: ignore[attr-defined]
            found.append({"pool": run.pool, **{name: getattr(row, name) for name in names}})
    return found


def to_csv(kind: str, records: list[dict[str, Any]]) -> str:
    """Rows as CSV with a header; lists are joined with ';' and missing values left empty."""
    out = io.StringIO()
    writer = csv.writer(out)
    header = ["pool", *columns(kind)]
    writer.writerow(header)
    for record in records:
        writer.writerow([_cell(record.get(name)) for name in header])
    return out.getvalue()


def to_json(records: list[dict[str, Any]]) -> str:
    """Rows as a JSON array, times in ISO 8601 like everywhere else in the API."""
    return json.dumps(records, default=_iso)


def _iso(value: Any) -> str:
    return str(value.isoformat()) if hasattr(value, "isoformat") else str(value)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ";".join(_cell(v) for v in value)
    return _iso(value)
