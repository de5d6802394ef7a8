"""UFTP background work: drain the outbox (retries with back-off) and send the daily D-Prognoses."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from celery import shared_task

from adapters.markets.uftp.agr_service import deliver_due, send_d_prognoses
from vpp.db import utcnow
from vpp.observability import TASKS
from workers.runtime import get_runtime


@shared_task(name="uftp.deliver_outbox")  # type: ignore[untyped-decorator]
def deliver_outbox() -> dict[str, int]:
    """Deliver every due outgoing message once; safe to run concurrently (rows are claimed)."""
    runtime = get_runtime()
    with httpx.Client(timeout=30) as http:
        counts = deliver_due(runtime.settings, runtime.session_factory, http, now=utcnow())
    TASKS.labels("uftp.deliver_outbox", "ok").inc()
    return counts


@shared_task(name="uftp.send_d_prognoses")  # type: ignore[untyped-decorator]
def send_day_ahead_prognoses(days_ahead: int = 1) -> dict[str, Any]:
    """Send tomorrow's D-Prognosis per congestion point; a rerun sends only what changed."""
    runtime = get_runtime()
    now = utcnow()
    period = now.astimezone(ZoneInfo(runtime.settings.market_timezone)).date() + timedelta(days=days_ahead)
    counts = send_d_prognoses(runtime.settings, runtime.session_factory, period=period, now=now)
    TASKS.labels("uftp.send_d_prognoses", "ok").inc()
    return {"period": period.isoformat(), **counts}
