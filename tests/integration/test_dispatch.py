"""The dispatcher on a real database: cycles, CPO faults, takeover after a crash (in process and on Redis)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from vpp.activations import service as activations
from vpp.activations.tables import DispatchAllocation, DispatchSend, PoolResponse
from vpp.commitments import service as commitments
from vpp.config import Settings
from vpp.db import unit_of_work
from vpp.dispatch.service import StaleOwner, limits_in_force
from vpp.dispatch.sim import FakeNetwork, FleetSource, SimulatedFleet
from vpp.domain.commitments import CommitmentKind, CommitmentValue
from vpp.domain.isp import floor_to_isp
from vpp.ports import ActivationEvent
from vpp.tables import metadata
from workers.bus import InProcessActivationBus, InProcessLease, LeaseTable, PoolLease, RedisPoolLease
from workers.dispatcher import Dispatcher

POOL = "zone:NL"


@pytest.fixture(autouse=True)
def _tables(engine: Engine) -> None:
    """Until the migration of these tables lands, create the missing ones (a no-op afterwards)."""
    metadata.create_all(engine)


def _fleet(n: int = 40) -> SimulatedFleet:
    return SimulatedFleet.build(n, non_followers=0.0, cpos=2, seed=5)


def _dispatcher(settings: Settings, factory: sessionmaker[Session], fleet: SimulatedFleet, network: FakeNetwork,
                lease: PoolLease, bus: InProcessActivationBus | None = None, timeout_s: float = 2.0) -> Dispatcher:
    tuned = settings.model_copy(update={"dispatch_send_timeout_seconds": timeout_s, "dispatch_lease_ttl_seconds": 0.6})
    return Dispatcher(settings=tuned, session_factory=factory, source=FleetSource({fleet.pool: fleet}),
                      network=network, receiver=bus or InProcessActivationBus(), lease=lease)


def _award_and_setpoint(factory: sessionmaker[Session], seq: int, mw: float) -> None:
    now = datetime.now(UTC)
    with unit_of_work(factory) as session:
        commitments.record(session, [CommitmentValue(pool=POOL, isp_start=floor_to_isp(now),
                                                     kind=CommitmentKind.AFRR_CAPACITY_UP, power_kw=5000.0,
                                                     source="test", reference="award")])
        activations.receive_setpoint(session, pool=POOL, seq=seq, timestamp=now, setpoint_mw=mw)


def test_a_setpoint_doorbell_runs_a_cycle_that_is_recorded_for_settlement(
    settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    fleet = _fleet()
    network = FakeNetwork(fleet, latency_s=0.001)
    bus = InProcessActivationBus()
    dispatcher = _dispatcher(settings, session_factory, fleet, network, InProcessLease(5.0), bus)

    async def scenario() -> None:
        await dispatcher.manage_leases()
        await dispatcher.tick()  # first cycle: every session gets its limit
        await dispatcher.drain()
        _award_and_setpoint(session_factory, 1, 0.05)
        bus.publish(ActivationEvent("setpoint", POOL, 1))
        started = time.monotonic()
        plans = await dispatcher.tick()
        assert time.monotonic() - started < 1.0, "the doorbell must not wait for the period"
        assert plans and plans[0].setpoint.seq == 1
        assert plans[0].total_kw == pytest.approx(fleet.schedule_kw - 50.0)
        await dispatcher.drain()
        await dispatcher.shutdown()

    asyncio.run(scenario())
    with unit_of_work(session_factory) as session:
        allocations = session.scalars(select(DispatchAllocation).order_by(DispatchAllocation.at)).all()
        sends = session.scalars(select(DispatchSend)).all()
        responses = session.scalars(select(PoolResponse)).all()
        in_force = limits_in_force(session, POOL)
    assert [a.full for a in allocations] == [True, False]
    assert allocations[1].setpoint_seq == 1 and allocations[1].changed == len(allocations[1].items["s"])
    assert {s for send in sends for s in send.items["status"]} == {"accepted"}
    assert responses and responses[-1].baseline_kw == pytest.approx(fleet.schedule_kw)
    assert len(in_force) == 40


@pytest.mark.parametrize("mode", ["raise", "hang"])
def test_a_cpo_that_is_down_does_not_block_the_loop_and_others_take_over(
    settings: Settings, session_factory: sessionmaker[Session], mode: str
) -> None:
    fleet = _fleet()
    network = FakeNetwork(fleet, latency_s=0.001)
    network.down["cpo:NL-C01"] = mode
    dispatcher = _dispatcher(settings, session_factory, fleet, network, InProcessLease(5.0), timeout_s=0.3)
    down = {sid for sid, cpo in zip(fleet.session_ids, fleet.cpo_of, strict=True) if cpo == "cpo:NL-C01"}

    async def scenario() -> None:
        await dispatcher.manage_leases()
        started = time.monotonic()
        await dispatcher.run_cycle(POOL)
        assert time.monotonic() - started < 0.3, "sends run in the background"
        await dispatcher.drain(2.0)
        _award_and_setpoint(session_factory, 1, 0.04)
        plan = await dispatcher.run_cycle(POOL)
        assert plan is not None
        assert plan.flags["unavailable"] == len(down)
        assert not down & set(plan.send_ids)
        assert plan.total_kw == pytest.approx(plan.target_kw)
        await dispatcher.drain(2.0)
        await dispatcher.shutdown()

    asyncio.run(scenario())
    with unit_of_work(session_factory) as session:
        statuses = {s: st for send in session.scalars(select(DispatchSend))
                    for s, st in zip(send.items["s"], send.items["status"], strict=True)}
    assert {statuses[s] for s in down} == {"failed"}


def _takeover(settings: Settings, factory: sessionmaker[Session], first: PoolLease, second: PoolLease) -> None:
    fleet = _fleet()
    network = FakeNetwork(fleet, latency_s=0.001)
    crashed = _dispatcher(settings, factory, fleet, network, first)
    successor = _dispatcher(settings, factory, fleet, network, second)

    async def scenario() -> None:
        await crashed.manage_leases()
        assert POOL in crashed.owned
        await crashed.run_cycle(POOL)
        await crashed.drain()
        left = crashed.owned[POOL].state.in_force()
        # Killed right after renewing its lease (so a slow cycle above cannot have let it lapse already): no release.
        # The successor waits for the lease to expire, meanwhile a setpoint arrives.
        await crashed.manage_leases()
        assert POOL in crashed.owned
        await successor.manage_leases()
        assert POOL not in successor.owned
        _award_and_setpoint(factory, 5, 0.03)
        await asyncio.sleep(0.7)
        await successor.manage_leases()
        assert POOL in successor.owned
        assert successor.owned[POOL].fence > crashed.owned[POOL].fence
        assert successor.owned[POOL].state.in_force() == pytest.approx(left)
        plan = await successor.run_cycle(POOL)
        assert plan is not None and plan.setpoint.seq == 5
        assert plan.total_kw == pytest.approx(fleet.schedule_kw - 30.0)
        assert len(plan.send_ids) < len(fleet.session_ids), "resumed: only changed limits are sent"
        await successor.drain()
        # The stale owner wakes up: the fence keeps it from writing or sending.
        sent_before = len(network.sent)
        assert await crashed.run_cycle(POOL) is None
        assert POOL not in crashed.owned and len(network.sent) == sent_before
        await successor.shutdown()

    asyncio.run(scenario())


def test_a_crashed_dispatcher_is_replaced_after_lease_expiry_in_process(
    settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    table = LeaseTable()
    _takeover(settings, session_factory, InProcessLease(0.6, table), InProcessLease(0.6, table))


@pytest.mark.redis
def test_a_crashed_dispatcher_is_replaced_after_lease_expiry_on_redis(
    settings: Settings, session_factory: sessionmaker[Session], redis_url: str
) -> None:
    import redis

    redis.Redis.from_url(redis_url).delete(f"vpp:dispatch:lease:{POOL}")
    _takeover(settings, session_factory, RedisPoolLease(redis_url, 0.6), RedisPoolLease(redis_url, 0.6))


def test_a_stale_fence_cannot_write(session_factory: sessionmaker[Session]) -> None:
    from vpp.dispatch.service import check_fence

    with unit_of_work(session_factory) as session:
        check_fence(session, POOL, 3, "new")
    with pytest.raises(StaleOwner), unit_of_work(session_factory) as session:
        check_fence(session, POOL, 2, "old")


def test_an_equal_fence_writes_only_for_the_owner_that_holds_it(session_factory: sessionmaker[Session]) -> None:
    from vpp.dispatch.service import check_fence

    with unit_of_work(session_factory) as session:
        check_fence(session, POOL, 3, "first")
    with pytest.raises(StaleOwner), unit_of_work(session_factory) as session:
        check_fence(session, POOL, 3, "second")
    with unit_of_work(session_factory) as session:
        check_fence(session, POOL, 3, "first")


def _owner_after_the_lease_store_forgot(settings: Settings, factory: sessionmaker[Session], lease: PoolLease) -> None:
    """The database remembers fence 7 of a dispatcher that died with the lease store (Redis restarted empty): the
    next owner gets fence 1 from the store, raises it past 7 on takeover and dispatches at once."""
    from vpp.dispatch.service import check_fence

    with unit_of_work(factory) as session:
        check_fence(session, POOL, 7, "died-with-redis")
    fleet = _fleet()
    dispatcher = _dispatcher(settings, factory, fleet, FakeNetwork(fleet, latency_s=0.001), lease)

    async def scenario() -> None:
        await dispatcher.manage_leases()
        assert dispatcher.owned[POOL].fence == 8
        assert await dispatcher.run_cycle(POOL) is not None, "not fenced out by the forgotten counter"
        assert POOL in dispatcher.owned
        await dispatcher.shutdown()

    asyncio.run(scenario())
    with unit_of_work(factory) as session:
        assert {a.fence for a in session.scalars(select(DispatchAllocation))} == {8}


def test_a_new_owner_raises_the_fence_past_the_database_after_the_lease_store_forgot_it_in_process(
    settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    _owner_after_the_lease_store_forgot(settings, session_factory, InProcessLease(5.0, LeaseTable()))


@pytest.mark.redis
def test_a_new_owner_raises_the_fence_past_the_database_after_redis_forgot_it(
    settings: Settings, session_factory: sessionmaker[Session], redis_url: str
) -> None:
    import redis

    redis.Redis.from_url(redis_url).delete(f"vpp:dispatch:lease:{POOL}", f"vpp:dispatch:fence:{POOL}")
    _owner_after_the_lease_store_forgot(settings, session_factory, RedisPoolLease(redis_url, 5.0))


def test_a_limits_changed_doorbell_recomputes_within_the_new_congestion_cap(
    settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    fleet = _fleet()
    bus = InProcessActivationBus()
    dispatcher = _dispatcher(settings, session_factory, fleet, FakeNetwork(fleet, latency_s=0.001),
                             InProcessLease(5.0), bus)
    members = [i for i, cpo in enumerate(fleet.cpo_of) if cpo == "cpo:NL-C00"]

    async def scenario() -> list[float]:
        await dispatcher.manage_leases()
        await dispatcher.tick()
        with unit_of_work(session_factory) as session:
            commitments.record(session, [CommitmentValue(
                pool="cpo:NL-C00", isp_start=floor_to_isp(datetime.now(UTC)),
                kind=CommitmentKind.CONGESTION_LIMIT, power_kw=20.0, source="dso", reference="dso-limit:t")])
        bus.publish(ActivationEvent("limits_changed"))
        plans = await dispatcher.tick()
        await dispatcher.shutdown()
        return plans[0].setpoints_kw

    setpoints = asyncio.run(scenario())
    assert sum(setpoints[i] for i in members) <= 20.0 + 1e-6


def test_a_pool_lost_to_a_long_cycle_and_taken_back_before_anyone_wrote_keeps_its_loop_state(
    settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    fleet = _fleet()
    network = FakeNetwork(fleet, latency_s=0.001)
    table = LeaseTable()
    dispatcher = _dispatcher(settings, session_factory, fleet, network, InProcessLease(0.3, table=table))
    other = _dispatcher(settings, session_factory, fleet, network, InProcessLease(0.3, table=table))

    async def scenario() -> None:
        await dispatcher.manage_leases()
        await dispatcher.run_cycle(POOL)
        await dispatcher.drain()
        state = dispatcher.owned[POOL].state
        await asyncio.sleep(0.4)  # the lease expires while "a cycle runs long"
        await dispatcher.manage_leases()
        assert dispatcher.owned[POOL].state is state
        # Lost again, and this time another dispatcher writes for the pool before it is taken back.
        await asyncio.sleep(0.4)
        await other.manage_leases()
        await other.run_cycle(POOL)
        await other.drain()
        await other.lease.release(POOL)
        other.owned.clear()
        await dispatcher.manage_leases()
        assert dispatcher.owned[POOL].state is not state
        await dispatcher.shutdown()

    asyncio.run(scenario())


def test_the_source_hears_of_a_cycle_once_its_limits_are_recorded(
    settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    # A re-planning source starts the re-plan its snapshot found due then (``DispatchPools.cycle_recorded``), so
    # the plan always sees the limits of the cycle that asked for it.
    fleet = _fleet()
    heard: list[tuple[str, datetime, int]] = []

    class RecordedSource(FleetSource):
        def cycle_recorded(self, pool: str, at: datetime) -> None:
            with unit_of_work(session_factory) as session:
                recorded = session.scalars(select(DispatchAllocation).where(DispatchAllocation.at == at)).all()
            heard.append((pool, at, len(recorded)))

    tuned = settings.model_copy(update={"dispatch_send_timeout_seconds": 2.0, "dispatch_lease_ttl_seconds": 0.6})
    dispatcher = Dispatcher(settings=tuned, session_factory=session_factory,
                            source=RecordedSource({fleet.pool: fleet}), network=FakeNetwork(fleet, latency_s=0.001),
                            receiver=InProcessActivationBus(), lease=InProcessLease(5.0))

    async def scenario() -> None:
        await dispatcher.manage_leases()
        await dispatcher.tick()
        await dispatcher.drain()
        await dispatcher.shutdown()

    asyncio.run(scenario())
    assert [(pool, count) for pool, _, count in heard] == [(POOL, 1)]
