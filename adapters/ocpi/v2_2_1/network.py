"""ChargePointNetwork over OCPI 2.2.1: limits become ChargingProfiles PUT (or DELETE) on each session's CPO.

Every request is stored before it is sent (charging_profile_requests) with a response URL carrying its id;
the synchronous answer and the asynchronous result are recorded against it, and an accepted request whose
result has not arrived by its deadline counts as lost. One request per session is outstanding at a time:
a newer one supersedes the older. Requests to one CPO run with bounded concurrency.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import httpx
from starlette.concurrency import run_in_threadpool

from adapters.ocpi.v2_2_1 import mapping
from adapters.ocpi.v2_2_1.client import OcpiClient, profile_answer
from adapters.ocpi.v2_2_1.context import OcpiContext
from adapters.ocpi.v2_2_1.http1 import Http1Error, Http1Pool, Origin, RequestTemplate
from adapters.ocpi.v2_2_1.schemas import ChargingProfileResponse, ChargingProfileResponseType, ModuleID
from adapters.ocpi.v2_2_1.transport import (
    OCPI_VERSION,
    X_CORRELATION_ID,
    X_REQUEST_ID,
    OcpiError,
    OcpiHttpError,
    PartyRef,
    join_url,
)
from vpp.db import new_id, unit_of_work
from vpp.observability import OCPI_ERRORS, PROFILE_OUTCOMES, PROFILE_REQUESTS
from vpp.ocpi import service as connections
from vpp.ocpi.service import PeerAccess
from vpp.ports import Clock, LimitOutcome, LimitStatus, SessionLimit, SystemClock
from vpp.sessions import limits

log = logging.getLogger(__name__)
_JSON = json.JSONEncoder(separators=(",", ":"))
# Where a session charges (CPO, EVSE, connector) is read again after about this long (each entry +-20 %, so
# that the re-reads spread over many cycles), or when the cache is this big.
TARGET_CACHE_S = 600.0
TARGET_CACHE_SIZE = 200_000


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
class _Route:
    """A CPO's ChargingProfiles receiver on the wire: its keep-alive pool and the request template."""

    pool: Http1Pool
    template: RequestTemplate
    base_url: str


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
        # Batches store their requests one at a time: concurrent writers only wait on each other (SQLite's
        # busy handler sleeps) and share one GIL.
        self._db_lock = threading.Lock()
        # Long-lived keep-alive connections, one pool per CPO connection, owned by the event loop that made them:
        # lean HTTP/1.1 pools on the wire (no client injected), else httpx clients.
        self._clients: dict[str, httpx.AsyncClient] = {}
        self._pools: dict[str, Http1Pool] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._results_url: str | None = None
        self._target_cache: dict[str, tuple[float, limits.SteeringTarget]] = {}

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
        if self._results_url is None:
            base = join_url(self._context.module_url("chargingprofiles"), "results")
            self._results_url = base + "/" if not urlsplit(base).query else ""
        if not self._results_url:
            return join_url(self._context.module_url("chargingprofiles"), "results", request_id)
        return self._results_url + request_id

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
            targets = self._targets(session, ids)
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
                        peers[target.connection_id] = connections.peer_access(
                            session, target.connection_id, self._context.token_keyring)
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

    def _targets(self, session: Any, ids: list[str]) -> dict[str, limits.SteeringTarget]:
        """Each session's steering target: where it charges is kept for a while (it does not move), its status
        is read every time."""
        moment = time.monotonic()
        if len(self._target_cache) > TARGET_CACHE_SIZE:
            self._target_cache.clear()
        cached = {sid: hit[1] for sid in ids
                  if (hit := self._target_cache.get(sid)) is not None and moment < hit[0]}
        found = limits.targets(session, [sid for sid in ids if sid not in cached])
        for sid, target in found.items():
            self._target_cache[sid] = (moment + TARGET_CACHE_S * random.uniform(0.8, 1.2), target)
        if cached:
            status = limits.statuses(session, list(cached))
            for sid, target in cached.items():
                if sid in status:
                    found[sid] = limits.SteeringTarget(target.session_id, target.external_id, target.connection_id,
                                                       status[sid], target.connector)
        return found

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
        body, rate, unit = mapping.limit_profile_body(
            limit_kw, connector=connector, flags=peer.flags, now=now, valid_until=limit.valid_until,
            response_url=self._response_url(request_id),
        )
        row.update(requested_limit_kw=limit.limit_kw, limit_kw=round(limit_kw, 3), clipped=clipped,
                   valid_until=limit.valid_until, sent_limit=rate, sent_unit=unit.value, message=message or None)
        return _Job(index, request_id, limit.session_id, external_id, peer, kind, body, limit_kw, clipped, message)

    # ------------------------------------------------------------------------------------ sending

    def _own_loop(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            # Connections of another (finished) loop cannot be used here; they are left to the collector.
            self._clients, self._pools, self._loop = {}, {}, loop

    def _lean(self) -> bool:
        """Whether requests go out on lean HTTP/1.1 pools (nothing injected for tests or quirks)."""
        return self._http is None and self._context.http_factory is None

    def _http_for(self, connection_id: str) -> httpx.AsyncClient:
        """The injected client, else this CPO's httpx client from the context's factory."""
        if self._http is not None:
            return self._http
        self._own_loop()
        client = self._clients.get(connection_id)
        if client is None:
            client = self._clients[connection_id] = self._context.http()
        return client

    def _pool_for(self, connection_id: str, origin: Origin) -> Http1Pool:
        """This CPO's keep-alive pool for ``origin`` (as many connections as requests in flight)."""
        self._own_loop()
        pool = self._pools.get(connection_id)
        if pool is None or pool.origin != origin:
            if pool is not None:
                pool.close()
            settings = self._context.settings
            pool = self._pools[connection_id] = Http1Pool(
                origin, size=settings.profile_concurrency_per_cpo, timeout_s=settings.http_timeout_seconds)
        return pool

    async def aclose(self) -> None:
        """Close the keep-alive connections this network opened."""
        clients, self._clients = self._clients, {}
        pools, self._pools = self._pools, {}
        for pool in pools.values():
            pool.close()
        for client in clients.values():
            await client.aclose()

    def _client(self, http: httpx.AsyncClient | None, peer: PeerAccess) -> OcpiClient:
        peer_party = next((PartyRef(r.country_code, r.party_id) for r in peer.roles if r.role == "CPO"), None)
        return OcpiClient(
            http, versions_url=peer.versions_url or "", token=peer.outgoing_token, raw_token=peer.flags.raw_token,
            own_party=self._context.party, peer_party=peer_party,
            details=mapping.details_from_endpoints(peer.version or OCPI_VERSION, peer.endpoints),
        )

    async def _send(self, client: OcpiClient, route: _Route | None, job: _Job) -> _Answer:
        try:
            if route is not None:
                response = await self._call_lean(route, job)
            elif job.kind == "clear":
                response = await client.clear_charging_profile(job.external_id, self._response_url(job.request_id))
            else:
                assert job.body is not None
                # The body is prebuilt (rounded limit, per-peer shape), so it goes out as is.
                response = await client._profile_call("PUT", job.external_id, json=job.body)
        except OcpiError as exc:
            OCPI_ERRORS.labels(job.peer.connection_id, f"charging_profile_{job.kind}").inc()
            return _Answer(job, None, exc.message)
        return _Answer(job, response, None)

    def _route(self, client: OcpiClient, connection_id: str) -> _Route:
        """How requests to this CPO's ChargingProfiles receiver are written on its keep-alive pool."""
        # join_url appends each session id as a last path segment: the template's base is the URL without it.
        example = client.profile_url("x")
        parts = urlsplit(example)
        base = urlunsplit((parts.scheme, parts.netloc, parts.path[:-1], parts.query, ""))
        headers = client.request_headers(ModuleID.CHARGING_PROFILES, "-", request_id="-")
        fixed = {k: v for k, v in headers.items() if k not in (X_REQUEST_ID, X_CORRELATION_ID)}
        template = RequestTemplate(base, fixed)
        return _Route(self._pool_for(connection_id, template.origin), template, base)

    async def _call_lean(self, route: _Route, job: _Job) -> ChargingProfileResponse:
        """The same call as the client's, written as bytes on this CPO's keep-alive pool."""
        tail = job.external_id.strip("/")
        # Our request id is unique per request and names the whole exchange (the result comes back with it).
        ids = {X_REQUEST_ID: job.request_id, X_CORRELATION_ID: job.request_id}
        if job.kind == "clear":
            method = "DELETE"
            request = route.template.render(method, tail, headers=ids, query=urlencode(
                {"response_url": self._response_url(job.request_id)}))
        else:
            method = "PUT"
            request = route.template.render(method, tail, headers=ids, body=_JSON.encode(job.body).encode())
        try:
            answer = await route.pool.request(request)
        except Http1Error as exc:
            raise OcpiHttpError(f"{method} {route.base_url}{tail} failed: {exc}") from exc
        return profile_answer(f"{method} {route.base_url}{tail}", answer.status, answer.reason, answer.body)

    async def _send_all(self, jobs: list[_Job]) -> list[_Answer]:
        """Every job's answer; each CPO gets as many requests in flight as its concurrency allows."""
        queues: dict[str, list[_Job]] = {}
        for job in reversed(jobs):  # popped from the end: sent in the order given
            queues.setdefault(job.peer.connection_id, []).append(job)
        answers: list[_Answer] = []

        async def worker(client: OcpiClient, route: _Route | None, queue: list[_Job]) -> None:
            while queue:
                answers.append(await self._send(client, route, queue.pop()))

        workers = []
        size = self._context.settings.profile_concurrency_per_cpo
        for connection_id, queue in queues.items():
            peer = queue[0].peer
            client = self._client(None if self._lean() else self._http_for(connection_id), peer)
            route = self._route(client, connection_id) if self._lean() else None
            workers += [worker(client, route, queue) for _ in range(min(size, len(queue)))]
        await asyncio.gather(*workers)
        return answers

    async def _run(
        self, outcomes: list[LimitOutcome | None], jobs: list[_Job], now: datetime
    ) -> list[LimitOutcome]:
        if jobs:
            answers = await self._send_all(jobs)
            recorded = await run_in_threadpool(self._record, answers, self._clock.now())
            for outcome in recorded:
                outcomes[outcome[0]] = outcome[1]
        return [outcome for outcome in outcomes if outcome is not None]

    def _record(self, answers: list[_Answer], now: datetime) -> list[tuple[int, LimitOutcome]]:
        settings = self._context.settings
        recorded: list[tuple[int, LimitOutcome]] = []
        rows: list[limits.Answer] = []
        counts: dict[tuple[str, str, str], int] = {}
        with self._db_lock, unit_of_work(self._context.session_factory) as session:
            for answer in answers:
                job = answer.job
                if answer.response is None:
                    rows.append(limits.Answer(job.request_id, "failed", message=answer.error))
                    message = "; ".join(m for m in (job.message, answer.error or "") if m)
                    outcome = LimitOutcome(job.session_id, LimitStatus.FAILED, job.request_id, job.limit_kw,
                                           job.clipped, message=message)
                else:
                    row, outcome = self._answer(session, job, answer.response, now, settings)
                    rows.append(row)
                key = (job.peer.connection_id, job.kind, outcome.status.value)
                counts[key] = counts.get(key, 0) + 1
                recorded.append((job.index, outcome))
            limits.record_answers(session, rows, now=now)
        for (connection_id, kind, status), count in counts.items():
            PROFILE_REQUESTS.labels(kind, status).inc(count)
            PROFILE_OUTCOMES.labels(connection_id, kind, status).inc(count)
        return recorded

    @staticmethod
    def _answer(
        session: Any, job: _Job, response: ChargingProfileResponse, now: datetime, settings: Any,
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
        return row, LimitOutcome(job.session_id, status, job.request_id, job.limit_kw, job.clipped,
                                 retry_after_s=backoff, message=job.message)
