"""The real-time dispatcher: a long-running asyncio loop that owns pools through leases and runs their cycles.

A pool's cycle runs on its setpoint doorbell, on a limits-changed doorbell and at least every
``dispatch_interval_seconds``. The blocking parts of a cycle (snapshot, database, allocation) run in a worker
thread; limits go out as time-boxed tasks so that a slow CPO never holds the next cycle back.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from vpp import aio
from vpp.config import Settings
from vpp.db import unit_of_work
from vpp.dispatch import service
from vpp.dispatch.cycle import CyclePlan, DispatchParams, PoolDispatch
from vpp.domain.dispatch import DispatchSnapshot
from vpp.observability import (
    AFRR_REQUESTED_MW,
    AFRR_SUPPLIED_MW,
    DISPATCH_ALLOCATION,
    DISPATCH_CYCLE,
    DISPATCH_LIMIT_OUTCOMES,
    DISPATCH_LIMITS,
    DISPATCH_POOLS_KNOWN,
    DISPATCH_POOLS_OWNED,
    DISPATCH_SEND,
)
from vpp.ports import (
    ActivationBus,
    ChargePointNetwork,
    Clock,
    LimitOutcome,
    LimitStatus,
    PoolSnapshotSource,
    SessionLimit,
    SystemClock,
)
from workers.bus import (
    BusReceiver,
    InProcessActivationBus,
    InProcessLease,
    PoolLease,
    RedisActivationBus,
    RedisPoolLease,
)

log = logging.getLogger(__name__)

BATCH_SIZE = 2500
GC_GEN0_ALLOCATIONS = 50_000
# The network is OCPI: a session's power arrives as charging-period averages, up to 15 minutes long.
OCPI_TELEMETRY_PERIOD_S = 900.0


def params_from(settings: Settings) -> DispatchParams:
    """The cycle's knobs from the settings."""
    return DispatchParams(
        deadband_kw=settings.dispatch_deadband_kw,
        deadband_pct=settings.dispatch_deadband_pct,
        unavailable_s=settings.dispatch_unavailable_seconds,
        too_often_backoff_s=settings.dispatch_too_often_backoff_seconds,
        follow_cycles=settings.dispatch_follow_cycles,
        follow_tolerance_kw=settings.dispatch_follow_tolerance_kw,
        setpoint_max_age_s=settings.afrr_setpoint_max_age_seconds,
        settle_s=OCPI_TELEMETRY_PERIOD_S,
        plan_floors=settings.dispatch_plan_floors,
    )


@dataclass
class OwnedPool:
    """A pool this dispatcher holds the lease of."""

    state: PoolDispatch
    fence: int
    next_due: float


class Dispatcher:
    """Owns pools, runs their cycles, sends limits, records outcomes."""

    def __init__(
        self,
        *,
        settings: Settings,
        session_factory: sessionmaker[Session],
        source: PoolSnapshotSource,
        network: ChargePointNetwork,
        receiver: BusReceiver,
        lease: PoolLease,
        clock: Clock | None = None,
        params: DispatchParams | None = None,
    ) -> None:
        self.settings = settings
        self.factory = session_factory
        self.source = source
        self.network = network
        self.receiver = receiver
        self.lease = lease
        self.clock: Clock = clock or SystemClock()
        self.params = params or params_from(settings)
        self.interval = settings.dispatch_interval_seconds
        self.send_timeout = settings.dispatch_send_timeout_seconds
        self.owned: dict[str, OwnedPool] = {}
        self._lost: dict[str, OwnedPool] = {}
        self.sends: set[asyncio.Task[None]] = set()
        self._warming: asyncio.Task[None] | None = None
        self._next_lease_check = 0.0

    @property
    def owner(self) -> str:
        """This dispatcher's lease token."""
        return self.lease.owner

    async def run(self, stop: asyncio.Event) -> None:
        """Loop until ``stop`` is set, then hand the pools back."""
        stopping = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set():
                ticking = asyncio.create_task(self.tick())
                await asyncio.wait({ticking, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if not ticking.done():
                    ticking.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await ticking
        finally:
            stopping.cancel()
            await self.shutdown()

    async def tick(self) -> list[CyclePlan]:
        """Manage leases when due, wait for a doorbell or the next due cycle, run the cycles that are due."""
        if time.monotonic() >= self._next_lease_check:
            await self.manage_leases()
        now = time.monotonic()
        wait = min([self.interval, *(p.next_due - now for p in self.owned.values())])
        wait = min(max(wait, 0.0), max(self._next_lease_check - now, 0.0))
        if self.owned and not self.sends and (self._warming is None or self._warming.done()):
            self._warming = asyncio.create_task(self.warm())
        events = await self.receiver.receive(list(self.owned), wait)
        due = {pool for pool, owned in self.owned.items() if owned.next_due <= time.monotonic()}
        for event in events:
            if event.pool is None:
                due |= set(self.owned)
            elif event.pool in self.owned:
                due.add(event.pool)
        plans = []
        for pool in sorted(due):
            plan = await self.run_cycle(pool)
            if plan is not None:
                plans.append(plan)
        return plans

    async def warm(self) -> None:
        """Between cycles: read the pools' state again (if the source caches it), so no cycle waits for the read."""
        prefetch = getattr(self.source, "prefetch", None)
        if prefetch is None:
            return
        try:
            await asyncio.to_thread(prefetch, self.clock.now())
        except Exception:
            log.warning("reading the fleet ahead of a cycle failed", exc_info=True)

    async def manage_leases(self) -> None:
        """Renew the pools we hold, drop the lost ones, and try to take the free ones."""
        self._next_lease_check = time.monotonic() + self.settings.dispatch_lease_ttl_seconds / 3
        for pool in list(self.owned):
            try:
                renewed = await self.lease.renew(pool)
            except Exception:
                log.warning("lease renewal failed", extra={"pool": pool}, exc_info=True)
                renewed = False
            if not renewed:
                log.warning("lost the lease of a pool", extra={"pool": pool})
                lost = self.owned.pop(pool, None)
                if lost is not None:
                    self._lost[pool] = lost
        try:
            pools = await asyncio.to_thread(self.source.pools)
            DISPATCH_POOLS_KNOWN.set(len(pools))
        except Exception:
            log.exception("listing pools failed")
            pools = []
        took = False
        for pool in pools:
            if pool in self.owned:
                continue
            try:
                fence = await self.lease.acquire(pool)
            except Exception:
                log.warning("lease acquisition failed", extra={"pool": pool}, exc_info=True)
                continue
            if fence is not None:
                await self.take_over(pool, fence)
                took = True
        if took:
            # What is alive now (modules, caches, the pools' state) lives on: keep it out of the collector's
            # full passes, which otherwise walk it again for every few thousand limits a cycle sends.
            gc.freeze()
            _collect_less_often()
        DISPATCH_POOLS_OWNED.set(len(self.owned))

    async def take_over(self, pool: str, fence: int) -> None:
        """Start owning ``pool``: resume from the limits its last owner left in force.

        A pool this dispatcher lost (its lease expired while a cycle ran long) and takes back before anyone else
        wrote for it keeps its state: the closed loop's history, correction and learned car limits are still true.
        """
        lost = self._lost.pop(pool, None)

        def load() -> tuple[dict[str, float], tuple[str, int] | None]:
            with unit_of_work(self.factory) as session:
                return service.limits_in_force(session, pool), service.last_writer(session, pool)

        limits, writer = await asyncio.to_thread(load)
        if writer is not None and writer[1] >= fence and writer != (self.owner, fence):
            # The lease store forgot its fence counter (Redis restarted): go past the last writer's fence, or
            # every write of ours would be refused as stale until the counter caught up by takeovers.
            raised = await self.lease.raise_fence(pool, writer[1])
            if raised is None:
                log.warning("lost a pool while taking it over", extra={"pool": pool})
                return
            log.info("raised the fence past the last writer's", extra={"pool": pool, "fence": raised})
            fence = raised
        if lost is not None and writer == (self.owner, lost.fence):
            self.owned[pool] = OwnedPool(state=lost.state, fence=fence, next_due=0.0)
            log.info("took back a pool it had lost", extra={"pool": pool, "fence": fence, "owner": self.owner})
            return
        state = PoolDispatch(pool=pool, params=self.params)
        state.resume(limits)
        self.owned[pool] = OwnedPool(state=state, fence=fence, next_due=0.0)
        log.info("took over a pool", extra={"pool": pool, "fence": fence, "owner": self.owner})

    async def run_cycle(self, pool: str) -> CyclePlan | None:
        """One cycle of ``pool``: plan and persist in a thread, then send the changed limits in the background."""
        owned = self.owned.get(pool)
        if owned is None:
            return None
        owned.next_due = time.monotonic() + self.interval
        at = self.clock.now()
        started = time.perf_counter()
        try:
            prepared = await asyncio.to_thread(self._prepare, owned, pool, at)
        except service.StaleOwner:
            log.warning("fenced out of a pool: another dispatcher owns it", extra={"pool": pool})
            self.owned.pop(pool, None)
            return None
        except Exception:
            log.exception("dispatch cycle failed", extra={"pool": pool})
            return None
        finally:
            DISPATCH_CYCLE.observe(time.perf_counter() - started)
        if prepared is None:
            return None
        plan, allocation_id, batches = prepared
        for name, ids, limits in batches:
            task = asyncio.create_task(self._send(owned.state, pool, allocation_id, name, ids, limits, at))
            self.sends.add(task)
            task.add_done_callback(self.sends.discard)
        return plan

    def _prepare(
        self, owned: OwnedPool, pool: str, at: datetime
    ) -> tuple[CyclePlan, str, list[tuple[str, list[str], list[float]]]] | None:
        snapshot = self.source.snapshot(pool, at)
        if snapshot is None:
            return None
        with unit_of_work(self.factory) as session:
            setpoint = service.latest_setpoint(session, pool)
            limits = service.limits_for(session, pool, at)
        planning = time.perf_counter()
        plan = owned.state.plan(snapshot, setpoint, limits)
        DISPATCH_ALLOCATION.observe(time.perf_counter() - planning)
        with unit_of_work(self.factory) as session:
            allocation_id = service.record_cycle(
                session, plan, fence=owned.fence, owner=self.owner,
                in_force=owned.state.in_force() if plan.full else None,
            )
        # Committed: a re-plan the snapshot found due may start now and see these limits (``DispatchPools``).
        recorded = getattr(self.source, "cycle_recorded", None)
        if recorded is not None:
            recorded(pool, at)
        AFRR_REQUESTED_MW.labels(pool).set(plan.setpoint.setpoint_mw)
        AFRR_SUPPLIED_MW.labels(pool).set((plan.baseline_kw - plan.measured_kw) / 1000.0)
        return plan, allocation_id, _batches(snapshot, plan)

    async def _send(
        self, state: PoolDispatch, pool: str, allocation_id: str, batch: str, ids: list[str],
        limits_kw: list[float], at: datetime,
    ) -> None:
        request = [SessionLimit(session_id=sid, limit_kw=kw) for sid, kw in zip(ids, limits_kw, strict=True)]
        sending = time.perf_counter()
        try:
            outcomes = await asyncio.wait_for(self.network.set_limits(request), timeout=self.send_timeout)
            if len(outcomes) != len(ids):
                raise ValueError(f"network answered {len(outcomes)} outcomes for {len(ids)} limits")
        except TimeoutError:
            outcomes = _failed(ids, f"no answer within {self.send_timeout} s")
        except Exception as exc:
            outcomes = _failed(ids, f"{type(exc).__name__}: {exc}")
        DISPATCH_SEND.labels(batch).observe(time.perf_counter() - sending)
        state.outcomes_arrived(self.clock.now().timestamp(), outcomes, limits_kw)
        for outcome in outcomes:
            DISPATCH_LIMITS.labels(outcome.status.value).inc()
            DISPATCH_LIMIT_OUTCOMES.labels(batch, outcome.status.value).inc()

        def record() -> None:
            with unit_of_work(self.factory) as session:
                service.record_send(session, allocation_id=allocation_id, pool=pool, batch=batch, sent_at=at,
                                    limits_kw=limits_kw, outcomes=outcomes)

        try:
            await asyncio.to_thread(record)
        except Exception:
            log.exception("recording send outcomes failed", extra={"pool": pool})

    async def drain(self, timeout_s: float | None = None) -> None:
        """Wait for the sends in flight (tests and shutdown)."""
        if self.sends:
            await asyncio.wait(set(self.sends), timeout=timeout_s)

    async def shutdown(self) -> None:
        """Finish sends briefly, then release every lease so a successor need not wait for expiry."""
        with contextlib.suppress(Exception):
            await self.drain(self.send_timeout)
        for task in [*self.sends, *([self._warming] if self._warming else [])]:
            task.cancel()
        for pool in list(self.owned):
            try:
                await self.lease.release(pool)
            except Exception:
                log.warning("lease release failed", extra={"pool": pool}, exc_info=True)
        self.owned.clear()
        DISPATCH_POOLS_OWNED.set(0)
        await self.receiver.close()
        close = getattr(self.network, "aclose", None)
        if close is not None:
            with contextlib.suppress(Exception):
                await close()
        # The snapshot source's background re-planning stops with the dispatcher.
        close_source = getattr(self.source, "close", None)
        if close_source is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(close_source)


def _collect_less_often() -> None:
    """Run the cyclic collector's youngest pass after GC_GEN0_ALLOCATIONS allocations instead of CPython's 700.

    A cycle allocates a few objects per limit (requests, rows, bodies) that mostly die with the cycle; with the
    default threshold the collector ran every few hundred limits and took 0.2-0.4 s of a 10,000-limit step
    (``vpp bench dispatch``: ``dispatcher_gc_seconds_to_last_ack``), 0.03 s with this one. Cyclic garbage lives
    a little longer; memory stays bounded by the threshold.
    """
    gen0, gen1, gen2 = gc.get_threshold()
    if gen0 < GC_GEN0_ALLOCATIONS:
        gc.set_threshold(GC_GEN0_ALLOCATIONS, gen1, gen2)


def _failed(ids: Sequence[str], message: str) -> list[LimitOutcome]:
    return [LimitOutcome(session_id=sid, status=LimitStatus.FAILED, message=message) for sid in ids]


def _batches(snapshot: DispatchSnapshot, plan: CyclePlan) -> list[tuple[str, list[str], list[float]]]:
    """Split the limits to send by CPO group (when the snapshot names them) and then by size."""
    if not plan.send_ids:
        return []
    cpo_of: dict[str, str] = {}
    groups = snapshot.groups
    cpo_groups = {g for g, gid in enumerate(groups.group_ids) if gid.startswith("cpo:")}
    if cpo_groups:
        for s, g in zip(groups.member_session.tolist(), groups.member_group.tolist(), strict=True):
            if g in cpo_groups:
                cpo_of[snapshot.session_ids[s]] = groups.group_ids[g]
    by_cpo: dict[str, tuple[list[str], list[float]]] = {}
    for sid, kw in zip(plan.send_ids, plan.send_kw, strict=True):
        ids, kws = by_cpo.setdefault(cpo_of.get(sid, "cpo:?"), ([], []))
        ids.append(sid)
        kws.append(kw)
    batches = []
    for cpo, (ids, kws) in sorted(by_cpo.items()):
        for start in range(0, len(ids), BATCH_SIZE):
            batches.append((cpo, ids[start:start + BATCH_SIZE], kws[start:start + BATCH_SIZE]))
    return batches


def default_components(
    settings: Settings, session_factory: sessionmaker[Session], clock: Clock | None = None
) -> tuple[PoolSnapshotSource, ChargePointNetwork]:
    """The snapshot source and network of this process: the portfolio, and the CPOs over OCPI."""
    from adapters.ocpi.v2_2_1.context import OcpiContext
    from adapters.ocpi.v2_2_1.network import OcpiChargePointNetwork
    from vpp.ocpi.settings import OcpiSettings
    from vpp.portfolio.end_soc import configure_end_soc
    from vpp.portfolio.planning import BackgroundReplanner, PlanSettings
    from vpp.portfolio.service import DispatchPools, PortfolioConfig, PortfolioService

    configure_end_soc(settings)
    portfolio = PortfolioService(session_factory, clock=clock,
                                 config=PortfolioConfig(market_timezone=settings.market_timezone))
    planner = BackgroundReplanner(session_factory, portfolio, PlanSettings.from_settings(settings))
    context = OcpiContext(session_factory=session_factory, public_url=settings.public_url, pepper=settings.secret,
                          settings=OcpiSettings(), keyring=settings.token_keyring)
    pools = DispatchPools(portfolio, max_age_s=settings.dispatch_snapshot_max_age_seconds,
                          refresh_after_s=settings.dispatch_interval_seconds, planner=planner,
                          replan_after_cycle=True)
    return pools, OcpiChargePointNetwork(context, clock=clock)


def build_dispatcher(
    settings: Settings,
    session_factory: sessionmaker[Session],
    *,
    bus: ActivationBus | None = None,
    source: PoolSnapshotSource | None = None,
    network: ChargePointNetwork | None = None,
    clock: Clock | None = None,
) -> Dispatcher:
    """A dispatcher for the settings' mode: Redis streams and leases, or the in-process bus and lease."""
    if source is None or network is None:
        default_source, default_network = default_components(settings, session_factory, clock)
        source, network = source or default_source, network or default_network
    receiver: BusReceiver
    lease: PoolLease
    if settings.redis_url:
        receiver = bus if isinstance(bus, RedisActivationBus) else RedisActivationBus(settings.redis_url)
        lease = RedisPoolLease(settings.redis_url, settings.dispatch_lease_ttl_seconds)
    else:
        receiver = bus if isinstance(bus, InProcessActivationBus) else InProcessActivationBus()
        lease = InProcessLease(settings.dispatch_lease_ttl_seconds)
    return Dispatcher(settings=settings, session_factory=session_factory, source=source, network=network,
                      receiver=receiver, lease=lease, clock=clock)


class EmbeddedDispatcher:
    """Runs a dispatcher's loop on its own thread and event loop inside ``vpp serve`` (embedded mode)."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self._dispatcher = dispatcher
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._main, name="vpp-dispatcher", daemon=True)

    def start(self) -> EmbeddedDispatcher:
        """Start the thread."""
        self._thread.start()
        self._started.wait(timeout=5)
        return self

    def _main(self) -> None:
        loop = aio.new_event_loop()
        self._loop = loop
        self._stop = asyncio.Event()
        loop.call_soon(self._started.set)
        try:
            loop.run_until_complete(self._dispatcher.run(self._stop))
        except Exception:
            log.exception("embedded dispatcher stopped with an error")
        finally:
            loop.close()

    def stop(self) -> None:
        """Stop the loop gracefully and wait for the thread."""
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop.set)
        self._thread.join(timeout=10)


