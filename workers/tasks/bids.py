"""Bid building ahead of the gate closures: day-ahead drafts before 12:00 D-1, aFRR energy drafts per hour.

Both are idempotent: a run builds (or refreshes) the one draft per pool and period, leaves drafts a trader has
edited or submitted alone, and records itself in job_runs.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any

from celery import shared_task

from adapters.markets.documents import market_documents
from vpp.bids import service as bids
from vpp.bids.policy import SYSTEM, BidPolicy, BidStatus, Market
from vpp.config import Settings
from vpp.db import unit_of_work, utcnow
from vpp.domain.errors import DomainError
from vpp.domain.pools import PoolId, PoolKind
from vpp.jobs import service as jobs
from vpp.observability import TASKS
from vpp.ports import PortfolioView
from workers.runtime import get_runtime

PortfolioFactory = Callable[[], PortfolioView | None]
_portfolio_factory: PortfolioFactory = lambda: None  # noqa: E731


def configure_portfolio_view(factory: PortfolioFactory) -> None:
    """Install how this worker process reaches the portfolio (its composition root, a test, a simulation)."""
    global _portfolio_factory
    _portfolio_factory = factory


def _zone_pools(portfolio: PortfolioView) -> list[str]:
    return [p for p in portfolio.pools() if PoolId.parse(p).kind is PoolKind.ZONE]


def _build_all(name: str, requests: list[bids.BuildRequest], now: datetime) -> dict[str, Any]:
    runtime = get_runtime()
    policy = BidPolicy.from_settings(runtime.settings)
    portfolio = _portfolio_factory()
    documents = market_documents()
    detail: dict[str, Any] = {"built": [], "kept": [], "failed": {}}
    status = "ok"
    if portfolio is None:
        detail = {"skipped": "no portfolio view is configured"}
        status = "skipped"
    else:
        for pool in _zone_pools(portfolio):
            for template in requests:
                request = bids.BuildRequest(**{**template.__dict__, "pool": pool})
                try:
                    with unit_of_work(runtime.session_factory) as session:
                        bid = bids.build(session, portfolio, policy, request, documents=documents, actor=SYSTEM,
                                         now=now, keep_edited=True)
                        changed = bid.updated_at == now and bid.status == BidStatus.DRAFT.value
                        detail["built" if changed else "kept"].append(bid.id)
                except DomainError as exc:
                    detail["failed"][pool] = exc.message
                    status = "partial"
    with unit_of_work(runtime.session_factory) as session:
        jobs.record_run(session, name, started_at=now, finished_at=utcnow(), status=status, detail=detail)
    TASKS.labels(name, status).inc()
    return {"status": status, **detail}


def dayahead_window(settings: Settings, now: datetime) -> date | None:
    """The delivery day to build for now: tomorrow, from the build hour until the 12:00 gate; else None."""
    policy = BidPolicy.from_settings(settings)
    today = policy.delivery_day(now)
    tomorrow = today + timedelta(days=1)
    opens = policy.local_at(today, policy.dayahead_gate_local.replace(hour=settings.bids_dayahead_build_from_hour))
    return tomorrow if opens <= now < policy.local_at(today, policy.dayahead_gate_local) else None


@shared_task(name="bids.build_day_ahead")  # type: ignore[untyped-decorator]
def build_day_ahead(delivery_day: str | None = None) -> dict[str, Any]:
    """Build tomorrow's day-ahead drafts of every zone pool before the gate closure (or those of ``delivery_day``)."""
    now = utcnow()
    day = date.fromisoformat(delivery_day) if delivery_day else dayahead_window(get_runtime().settings, now)
    if day is None:
        return {"status": "outside the build window"}
    return _build_all("bids.build_day_ahead", [bids.BuildRequest(Market.DAY_AHEAD, "*", delivery_day=day)], now)


@shared_task(name="bids.build_afrr_energy")  # type: ignore[untyped-decorator]
def build_afrr_energy(start: str | None = None) -> dict[str, Any]:
    """Build aFRR energy drafts for the next hour whose first MTU's gate closure is still ahead."""
    now = utcnow()
    settings = get_runtime().settings
    policy = BidPolicy.from_settings(settings)
    if start:
        first = datetime.fromisoformat(start.replace("Z", "+00:00"))
    else:
        first = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
        while policy.afrr_energy_gate(first) <= now:
            first += timedelta(hours=1)
    end = first + timedelta(hours=settings.bids_afrr_energy_lead_hours)
    request = bids.BuildRequest(Market.AFRR, "*", start=first, end=end, products=("energy",))
    return _build_all("bids.build_afrr_energy", [request], now)
