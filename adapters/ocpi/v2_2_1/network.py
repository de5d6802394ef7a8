"""ChargePointNetwork over OCPI 2.2.1: limits become ChargingProfiles PUT (or DELETE) on each session's CPO.

Every request is stored before it is sent (charging_profile_requests) with a response URL carrying its id;
the synchronous answer and the asynchronous result are recorded against it, and an accepted request whose
result has not arrived by its deadline counts as lost. One request per session is outstanding at a time:
a newer one supersedes the older. Requests to one CPO run with bounded concurrency.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import httpx
from starlette.concurrency import run_in_threadpool

from adapters.ocpi.v2_2_1 import mapping
from adapters.ocpi.v2_2_1.client import OcpiClient
from adapters.ocpi.v2_2_1.context import OcpiContext
from adapters.ocpi.v2_2_1.schemas import ChargingProfileResponse, ChargingProfileResponseType
from adapters.ocpi.v2_2_1.transport import OCPI_VERSION, OcpiError, PartyRef, join_url
from vpp.db import new_id, unit_of_work
from vpp.observability import OCPI_ERRORS, PROFILE_OUTCOMES, PROFILE_REQUESTS
from vpp.ocpi import service as connections
from vpp.ocpi.service import PeerAccess
from vpp.ports import Clock, LimitOutcome, LimitStatus, SessionLimit, SystemClock
from vpp.sessions import limits

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Job:
    """One request to send: which session at which CPO, with what body."""

    index: int
    request_id: str
    session_id: str
    external_id: str
    peer: PeerAccess
    kind: str
    body: dict[str, Any] | None
    limit_kw: float | None
    clipped: bool
    message: str


@dataclass(frozen=True, slots=True)
class _Answer:
    job: _Job
    response: ChargingProfileResponse | None
    error: str | None


class OcpiChargePointNetwork:
    """Sets and clears session limits at CPOs with OCPI ChargingProfiles."""

    def __init__(
        self, context: OcpiContext, *, http: httpx.AsyncClient | None = None, clock: Clock | None = None
    ) -> None:
        self._context = context
        self._http = http
        self._clock: Clock = clock or SystemClock()
        self._semaphores: dict[str, asyncio.Semaphore] = {}
        # Batches store their requests one at a time: concurrent writers only wait on each other (SQLite's
        # busy handler sleeps) and share one GIL.
        self._db_lock = threading.Lock()
        # Long-lived keep-alive clients, one per CPO connection, owned by the event loop that made them.
        self._clients: dict[str, httpx.AsyncClient] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    async def set_limits(self, limits_: Sequence[SessionLimit]) -> list[LimitOutcome]:
        """Cap each session's power; one outcome per limit, in order (``accepted`` awaits the CPO's result)."""
        now = self._clock.now()
        outcomes, jobs = await run_in_threadpool(self._plan, list(limits_), "set", now)
        return await self._run(outcomes, jobs, now)

    async def clear_limits(self, session_ids: Sequence[str]) -> list[LimitOutcome]:
        """Remove our caps from these sessions; one outcome per session, in order."""
        now = self._clock.now()
        requests = [SessionLimit(session_id=sid, limit_kw=0.0) for sid in session_ids]
        outcomes, jobs = await run_in_threadpool(self._plan, requests, "clear", now)
        return await self._run(outcomes, jobs, now)

    # ----------------------------------------------------------------------------------- planning

    def _response_url(self, request_id: str) -> str:
        return join_url(self._context.module_url("chargingprofiles"), "results", request_id)

    def _plan(
        self, requested: list[SessionLimit], kind: str, now: datetime
    ) -> tuple[list[LimitOutcome | None], list[_Job]]:
        outcomes: list[LimitOutcome | None] = [None] * len(requested)
        jobs: list[_Job] = []
        rows: list[dict[str, Any]] = []
        last_index = {limit.session_id: index for index, limit in enumerate(requested)}
        with self._db_lock, unit_of_work(self._context.session_factory) as session:
            limits.expire_lost(session, now=now)
            ids = [limit.session_id for limit in requested]
            targets = limits.targets(session, ids)
            waiting = limits.backing_off(session, [sid for sid in ids if sid in targets], now)
            peers: dict[str, PeerAccess | str] = {}
            for index, limit in enumerate(requested):
                sid = limit.session_id
                if last_index[sid] != index:
                    outcomes[index] = LimitOutcome(sid, LimitStatus.SUPERSEDED, message="a later limit in the batch")
                    continue
                target = targets.get(sid)
                if target is None:
                    outcomes[index] = LimitOutcome(sid, LimitStatus.UNKNOWN_SESSION, message="no such session")
                    continue
                if target.connection_id not in peers:
                    try:
                        peers[target.connection_id] = connections.peer_access(session, target.connection_id)
                    except Exception as exc:  # a closed or failed connection: nothing can be sent to it
                        peers[target.connection_id] = str(exc)
                decided = self._decide(rows, index, limit, kind, target, peers[target.connection_id],
                                       waiting.get(sid), now)
                if isinstance(decided, _Job):
                    jobs.append(decided)
                else:
                    outcomes[index] = decided
            # Every request is stored (in bulk) before any is sent.
            limits.open_requests(session, rows)
        return outcomes, jobs

    def _decide(
        self, rows: list[dict[str, Any]], index: int, limit: SessionLimit, kind: str,
        target: limits.SteeringTarget, peer: PeerAccess | str, previous: Any, now: datetime,
    ) -> LimitOutcome | _Job:
        def skip(status: LimitStatus, message: str, **retry: Any) -> LimitOutcome:
            return self._skip(rows, limit, kind, target.connection_id, status, message, now, **retry)

        if kind == "set" and limit.limit_kw == math.inf:
            # An infinite cap is no cap: clear ours.
            kind = "clear"
        elif not math.isfinite(limit.limit_kw):
            return skip(LimitStatus.FAILED, f"limit {limit.limit_kw} kW is not a number")
        if isinstance(peer, str):
            return skip(LimitStatus.FAILED, f"connection unusable: {peer}")
        if target.status not in ("active", "pending"):
            return skip(LimitStatus.SKIPPED, f"session is {target.status}")
        if kind == "set" and target.connector is not None and not target.connector.charging_profile_capable:
            return skip(LimitStatus.NOT_SUPPORTED, "the EVSE does not list CHARGING_PROFILE_CAPABLE")
        if previous is not None:
            return skip(LimitStatus.TOO_OFTEN, "backing off after TOO_OFTEN", retry_at=previous.retry_at,
                        backoff_s=previous.backoff_s)
        return self._job(rows, index, limit, kind, target.external_id, target.connector, peer, now)

    @staticmethod
    def _skip(
        rows: list[dict[str, Any]], limit: SessionLimit, kind: str, connection_id: str, status: LimitStatus,
        message: str, now: datetime, *, retry_at: datetime | None = None, backoff_s: float | None = None,
    ) -> LimitOutcome:
        request_id = new_id()
        rows.append({
            "id": request_id, "session_id": limit.session_id, "connection_id": connection_id, "kind": kind,
            "created_at": now, "requested_limit_kw": limit.limit_kw if kind == "set" else None,
            "status": status.value, "message": message, "retry_at": retry_at, "backoff_s": backoff_s,
        })
        retry = (retry_at - now).total_seconds() if retry_at is not None else None
        PROFILE_REQUESTS.labels(kind, status.value).inc()
        return LimitOutcome(limit.session_id, status, request_id, retry_after_s=retry, message=message)

    def _job(
        self, rows: list[dict[str, Any]], index: int, limit: SessionLimit, kind: str, external_id: str,
        connector: Any, peer: PeerAccess, now: datetime,
    ) -> _Job:
        request_id = new_id()
        row: dict[str, Any] = {"id": request_id, "session_id": limit.session_id,
                               "connection_id": peer.connection_id, "kind": kind, "created_at": now}
        rows.append(row)
        if kind == "clear":
            return _Job(index, request_id, limit.session_id, external_id, peer, kind, None, None, False, "")
        limit_kw, clipped, message = limit.limit_kw, False, ""
        if limit_kw < 0 and not peer.flags.discharge_profiles:
            limit_kw, clipped = 0.0, True
            message = "negative limit clipped to 0: the connection has no discharge_profiles flag"
        profile, rate, unit = mapping.limit_profile(
            limit_kw, connector=connector, flags=peer.flags, now=now, valid_until=limit.valid_until
        )
        row.update(requested_limit_kw=limit.limit_kw, limit_kw=round(limit_kw, 3), clipped=clipped,
                   valid_until=limit.valid_until, sent_limit=rate, sent_unit=unit.value, message=message or None)
        body = mapping.set_profile_body(profile, self._response_url(request_id), peer.flags)
        return _Job(index, request_id, limit.session_id, external_id, peer, kind, body, limit_kw, clipped, message)

    # ------------------------------------------------------------------------------------ sending

    def _http_for(self, connection_id: str) -> httpx.AsyncClient:
        """The injected client, else this CPO's keep-alive pool (as many connections as requests in flight)."""
        if self._http is not None:
            return self._http
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            # Clients of another (finished) loop cannot be used here; they are left to the collector.
            self._clients, self._semaphores, self._loop = {}, {}, loop
        client = self._clients.get(connection_id)
        if client is None:
            settings = self._context.settings
            if self._context.http_factory is None:
                size = settings.profile_concurrency_per_cpo
                client = httpx.AsyncClient(timeout=settings.http_timeout_seconds, limits=httpx.Limits(
                    max_connections=size, max_keepalive_connections=size))
            else:
                client = self._context.http()
            self._clients[connection_id] = client
        return client

    async def aclose(self) -> None:
        """Close the keep-alive clients this network opened."""
        clients, self._clients = self._clients, {}
        for client in clients.values():
            await client.aclose()

    def _semaphore(self, connection_id: str) -> asyncio.Semaphore:
        if connection_id not in self._semaphores:
            self._semaphores[connection_id] = asyncio.Semaphore(self._context.settings.profile_concurrency_per_cpo)
        return self._semaphores[connection_id]

    def _client(self, http: httpx.AsyncClient, peer: PeerAccess) -> OcpiClient:
        peer_party = next((PartyRef(r.country_code, r.party_id) for r in peer.roles if r.role == "CPO"), None)
        return OcpiClient(
            http, versions_url=peer.versions_url or "", token=peer.outgoing_token, raw_token=peer.flags.raw_token,
            own_party=self._context.party, peer_party=peer_party,
            details=mapping.details_from_endpoints(peer.version or OCPI_VERSION, peer.endpoints),
        )

    async def _send(self, client: OcpiClient, job: _Job) -> _Answer:
        try:
            async with self._semaphore(job.peer.connection_id):
                if job.kind == "clear":
                    response = await client.clear_charging_profile(job.external_id, self._response_url(job.request_id))
                else:
                    assert job.body is not None
                    # The body is prebuilt (rounded limit, per-peer shape), so it goes out as is.
                    response = await client._profile_call("PUT", job.external_id, json=job.body)
        except OcpiError as exc:
            OCPI_ERRORS.labels(job.peer.connection_id, f"charging_profile_{job.kind}").inc()
            return _Answer(job, None, exc.message)
        return _Answer(job, response, None)

    async def _run(
        self, outcomes: list[LimitOutcome | None], jobs: list[_Job], now: datetime
    ) -> list[LimitOutcome]:
        if jobs:
            clients: dict[str, OcpiClient] = {}
            for job in jobs:
                if job.peer.connection_id not in clients:
                    clients[job.peer.connection_id] = self._client(self._http_for(job.peer.connection_id), job.peer)
            answers = await asyncio.gather(*(self._send(clients[job.peer.connection_id], job) for job in jobs))
            recorded = await run_in_threadpool(self._record, answers, self._clock.now())
            for outcome in recorded:
                outcomes[outcome[0]] = outcome[1]
        return [outcome for outcome in outcomes if outcome is not None]

    def _record(self, answers: list[_Answer], now: datetime) -> list[tuple[int, LimitOutcome]]:
        settings = self._context.settings
        recorded: list[tuple[int, LimitOutcome]] = []
        rows: list[limits.Answer] = []
        with self._db_lock, unit_of_work(self._context.session_factory) as session:
            for answer in answers:
                job = answer.job
                base = LimitOutcome(job.session_id, LimitStatus.FAILED, job.request_id, job.limit_kw, job.clipped,
                                    message=job.message)
                if answer.response is None:
                    rows.append(limits.Answer(job.request_id, "failed", message=answer.error))
                    outcome = replace(base, message="; ".join(m for m in (job.message, answer.error or "") if m))
                else:
                    row, outcome = self._answer(session, job, answer.response, base, now, settings)
                    rows.append(row)
                PROFILE_REQUESTS.labels(job.kind, outcome.status.value).inc()
                PROFILE_OUTCOMES.labels(job.peer.connection_id, job.kind, outcome.status.value).inc()
                recorded.append((job.index, outcome))
            limits.record_answers(session, rows, now=now)
        return recorded

    @staticmethod
    def _answer(
        session: Any, job: _Job, response: ChargingProfileResponse, base: LimitOutcome, now: datetime,
        settings: Any,
    ) -> tuple[limits.Answer, LimitOutcome]:
        status = mapping.response_status(response.result)
        deadline = backoff = retry_at = None
        if response.result == ChargingProfileResponseType.ACCEPTED:
            wait = response.timeout or settings.profile_deadline_seconds
            deadline = now + timedelta(seconds=min(wait, settings.profile_max_deadline_seconds))
        elif response.result == ChargingProfileResponseType.TOO_OFTEN:
            earlier = [
                r.backoff_s for r in limits.requests_of(session, job.session_id)[-3:]
                if r.id != job.request_id and r.status == "too_often" and r.backoff_s
            ]
            backoff = min(settings.too_often_max_backoff_seconds,
                          2 * earlier[-1] if earlier else settings.too_often_backoff_seconds)
            retry_at = now + timedelta(seconds=backoff)
        row = limits.Answer(
            job.request_id, status.value, answer=response.result.value, timeout_s=response.timeout,
            deadline_at=deadline, backoff_s=backoff, retry_at=retry_at, message=job.message or None,
        )
        return row, replace(base, status=status, retry_after_s=backoff)
