"""Re-planning ahead of dispatch: every pool's per-car plan each ISP (beat), or one pool on request.

Idempotent: a run replaces the pool's one stored plan with a plan made now; running twice plans twice, nothing
more. The dispatcher's snapshot source also re-plans a pool on events (vpp.portfolio.planning).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from celery import shared_task

from vpp.db import unit_of_work, utcnow
from vpp.jobs import service as jobs
from vpp.observability import TASKS
from vpp.portfolio.end_soc import configure_end_soc
from vpp.portfolio.planning import PlanSettings, replan, zone_pools
from vpp.portfolio.service import PortfolioConfig, PortfolioService
from workers.runtime import get_runtime


def _portfolio() -> tuple[PortfolioService, PlanSettings]:
    runtime = get_runtime()
    settings = runtime.settings
    configure_end_soc(settings)
    portfolio = PortfolioService(runtime.session_factory,
                                 config=PortfolioConfig(market_timezone=settings.market_timezone))
    return portfolio, PlanSettings.from_settings(settings)


def _at(at: str | None) -> datetime:
    return datetime.fromisoformat(at.replace("Z", "+00:00")) if at else utcnow()


@shared_task(name="plan.replan_pool")  # type: ignore[untyped-decorator]
def replan_pool(pool: str, at: str | None = None) -> dict[str, Any]:
    """Plan one pool at ``at`` (default now) and store the plan."""
    portfolio, settings = _portfolio()
    with unit_of_work(get_runtime().session_factory) as session:
        row = replan(session, portfolio, pool, _at(at), settings)
        result = {"status": "skipped", "reason": "no sessions"} if row is None else {
            "status": "ok", "pool": pool, "sessions": len(row.session_ids), "method": row.method,
            "plan_status": row.status, "seconds": round(row.seconds, 3)}
    TASKS.labels("plan.replan_pool", result["status"]).inc()
    return result


@shared_task(name="plan.replan_pools")  # type: ignore[untyped-decorator]
def replan_pools(at: str | None = None) -> dict[str, Any]:
    """Plan every bidding-zone pool with sessions now (beat, every ISP)."""
    runtime = get_runtime()
    portfolio, settings = _portfolio()
    moment = _at(at)
    started = utcnow()
    detail: dict[str, Any] = {"planned": {}, "failed": {}}
    with unit_of_work(runtime.session_factory) as session:
        pools = zone_pools(portfolio.fleet(session, moment).pools())
    for pool in pools:
        try:
            with unit_of_work(runtime.session_factory) as session:
                row = replan(session, portfolio, pool, moment, settings)
                if row is not None:
                    detail["planned"][pool] = {"sessions": len(row.session_ids), "method": row.method,
                                               "status": row.status, "seconds": round(row.seconds, 3)}
        except Exception as exc:  # one pool's failure must not stop the others' plans
            detail["failed"][pool] = str(exc)[:300]
    status = "partial" if detail["failed"] else "ok"
    with unit_of_work(runtime.session_factory) as session:
        jobs.record_run(session, "plan.replan_pools", started_at=started, finished_at=utcnow(), status=status,
                        detail=detail)
    TASKS.labels("plan.replan_pools", status).inc()
    return {"status": status, **detail}
