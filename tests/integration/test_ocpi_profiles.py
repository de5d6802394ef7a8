import asyncio
from typing import Any

from fastapi import FastAPI
from prometheus_client import REGISTRY
from sqlalchemy import select

from adapters.ocpi.v2_2_1 import sync
from adapters.ocpi.v2_2_1.network import OcpiChargePointNetwork
from tests.conftest import TEST_SECRET
from tests.integration.test_ocpi_support import World, sim_registers_with_us, world
from vpp.ports import ChargePointNetwork, LimitStatus, SessionLimit
from vpp.sessions import limits
from vpp.sessions.tables import ChargingSession, LimitRequest


async def _steerable(w: World, *, cars: int = 1) -> tuple[str, list[str]]:
    """The sim registers with us, we learn its locations, cars plug in; returns connection and our session ids."""
    connection_id = await sim_registers_with_us(w, TEST_SECRET)
    await sync.pull_locations(w.context, connection_id, http=w.http)
    for _ in range(cars):
        w.sim.plug_in(energy_kwh=40)
    await w.sim.flush()
    with w.context.session_factory() as session:
        ids = list(session.scalars(select(ChargingSession.id).order_by(ChargingSession.external_id)))
    return connection_id, ids


def _requests(app: FastAPI) -> list[LimitRequest]:
    with app.state.session_factory() as session:
        rows = list(session.scalars(select(LimitRequest).order_by(LimitRequest.created_at, LimitRequest.id)))
        session.expunge_all()
        return rows


def test_a_limit_set_through_the_port_reaches_the_sim_cpo_and_its_async_result_is_recorded(app: FastAPI) -> None:
    w = world(app, evses=2, callback_delay_s=2)

    async def run() -> dict[str, Any]:
        _connection_id, [session_id] = await _steerable(w)
        network: ChargePointNetwork = OcpiChargePointNetwork(w.context, http=w.http)
        [outcome] = await network.set_limits([SessionLimit(session_id, 3.7)])
        accepted = _requests(app)[-1].status
        await w.sim.step(5)
        sim_session = next(iter(w.sim.sessions.values()))
        result = {"outcome": outcome, "accepted": accepted,
                  "sim_limit_kw": w.sim.effective_limit_kw(sim_session, w.sim.now()), "session_id": session_id}
        await w.close()
        return result

    result = asyncio.run(run())
    outcome = result["outcome"]
    assert outcome.status == LimitStatus.ACCEPTED and outcome.limit_kw == 3.7 and not outcome.clipped
    assert result["accepted"] == "accepted"
    [request] = _requests(app)
    # AC 3-phase 230 V: 3.7 kW = 5.36 A per phase, sent as 5.3 A (never more than planned).
    assert (request.sent_unit, request.sent_limit) == ("A", 5.3)
    assert request.status == "applied" and request.result == "ACCEPTED" and request.deadline_at is not None
    assert abs(result["sim_limit_kw"] - 3.657) < 1e-6
    assert (REGISTRY.get_sample_value("vpp_ocpi_profile_requests_total", {"kind": "set", "outcome": "accepted"})
            or 0) >= 1
    with app.state.session_factory() as session:
        steered = session.get(ChargingSession, result["session_id"])
        assert steered is not None and steered.active_limit is not None
        assert abs(steered.active_limit[0]["limit_kw"] - 3.657) < 1e-3


def test_a_too_often_answer_is_backed_off_without_calling_the_cpo_again(app: FastAPI) -> None:
    w = world(app, evses=1, min_profile_interval_s=3600)

    async def run() -> list[Any]:
        _connection_id, [session_id] = await _steerable(w)
        network = OcpiChargePointNetwork(w.context, http=w.http)
        outcomes = [(await network.set_limits([SessionLimit(session_id, kw)]))[0] for kw in (7.0, 5.0, 4.0)]
        await w.close()
        return outcomes

    first, second, third = asyncio.run(run())
    assert first.status == LimitStatus.ACCEPTED
    assert second.status == LimitStatus.TOO_OFTEN and second.retry_after_s == 30.0
    assert third.status == LimitStatus.TOO_OFTEN and third.message.startswith("backing off")
    assert third.retry_after_s is not None and 0 < third.retry_after_s <= 30.0
    statuses = [r.status for r in _requests(app)]
    assert statuses == ["superseded", "too_often", "too_often"]
    assert _requests(app)[2].answer is None, "the third request was never sent"


def test_a_negative_limit_is_clipped_to_zero_without_the_discharge_flag(app: FastAPI) -> None:
    w = world(app, evses=1)

    async def run() -> Any:
        _connection_id, [session_id] = await _steerable(w)
        [outcome] = await OcpiChargePointNetwork(w.context, http=w.http).set_limits([SessionLimit(session_id, -5.0)])
        await w.close()
        return outcome

    outcome = asyncio.run(run())
    assert outcome.clipped and outcome.limit_kw == 0.0 and "clipped" in outcome.message
    [request] = _requests(app)
    assert request.requested_limit_kw == -5.0 and request.sent_limit == 0.0 and request.clipped


def test_unknown_and_ended_sessions_and_a_later_limit_in_the_batch_get_their_own_outcomes(app: FastAPI) -> None:
    w = world(app, evses=3)

    async def run() -> list[Any]:
        _connection_id, ids = await _steerable(w, cars=2)
        w.sim.unplug(next(iter(w.sim.sessions.values())).id)
        w.sim.sessions.pop(sorted(w.sim.sessions)[1])
        network = OcpiChargePointNetwork(w.context, http=w.http)
        outcomes = await network.set_limits(
            [SessionLimit("nope", 1.0), SessionLimit(ids[1], 2.0), SessionLimit(ids[1], 3.0)]
        )
        await w.sim.flush()
        outcomes += await network.set_limits([SessionLimit(ids[0], 2.0)])
        outcomes += await network.clear_limits(["nope", ids[0]])
        await w.close()
        return outcomes

    unknown, earlier, vanished, ended, clear_unknown, clear_ended = asyncio.run(run())
    assert clear_unknown.status == LimitStatus.UNKNOWN_SESSION and clear_ended.status == LimitStatus.SKIPPED
    assert unknown.status == LimitStatus.UNKNOWN_SESSION
    assert earlier.status == LimitStatus.SUPERSEDED
    assert vanished.status == LimitStatus.UNKNOWN_SESSION and vanished.request_id is not None
    assert ended.status == LimitStatus.SKIPPED and "completed" in ended.message


def test_an_accepted_request_without_result_is_lost_after_its_deadline_and_a_late_result_still_counts(
    app: FastAPI,
) -> None:
    w = world(app, evses=1, profile_timeout_s=1)
    w.sim.faults.config.lost_callback_rate = 1.0

    async def run() -> str:
        _connection_id, [session_id] = await _steerable(w)
        [outcome] = await OcpiChargePointNetwork(w.context, http=w.http).set_limits([SessionLimit(session_id, 6.0)])
        await w.sim.step(5)
        assert outcome.request_id is not None
        return outcome.request_id

    request_id = asyncio.run(run())
    from datetime import timedelta

    from vpp.db import unit_of_work, utcnow

    with unit_of_work(app.state.session_factory) as session:
        assert limits.expire_lost(session, now=utcnow() + timedelta(seconds=5)) == 1
    assert _requests(app)[0].status == "lost"

    async def late() -> int:
        peer_token = next(iter(w.sim.connections.values())).outgoing_token
        from tests.integration.test_ocpi_support import VPP_URL, token_headers

        answer = await w.http.post(f"{VPP_URL}/ocpi/2.2.1/chargingprofiles/results/{request_id}",
                                   json={"result": "ACCEPTED", "profile": None}, headers=token_headers(peer_token))
        await w.close()
        return answer.status_code

    assert asyncio.run(late()) == 200
    [request] = _requests(app)
    assert request.status == "applied" and "after the deadline" in (request.message or "")


def test_clearing_a_limit_or_setting_an_infinite_one_sends_a_delete_and_records_its_result(app: FastAPI) -> None:
    w = world(app, evses=1, callback_delay_s=1)

    async def run() -> list[Any]:
        _connection_id, [session_id] = await _steerable(w)
        network = OcpiChargePointNetwork(w.context, http=w.http)
        set_outcome = (await network.set_limits([SessionLimit(session_id, 4.0)]))[0]
        await w.sim.step(3)
        clear_outcome = (await network.set_limits([SessionLimit(session_id, float("inf"))]))[0]
        await w.sim.step(3)
        await w.close()
        return [set_outcome, clear_outcome]

    set_outcome, clear_outcome = asyncio.run(run())
    assert set_outcome.status == clear_outcome.status == LimitStatus.ACCEPTED
    assert [(r.kind, r.status) for r in _requests(app)] == [("set", "applied"), ("clear", "applied")]
    assert not next(iter(w.sim.sessions.values())).profiles
    assert (w.sim.sent[-1]["kind"], w.sim.sent[-1]["url"].split("/")[-2]) == ("active_profile", "chargingprofiles")


def test_a_result_that_arrives_before_the_synchronous_answer_is_recorded_keeps_its_verdict(app: FastAPI) -> None:
    from datetime import UTC, datetime

    from vpp.db import new_id, unit_of_work

    w = world(app, evses=1)

    async def run() -> tuple[str, str]:
        connection_id, [session_id] = await _steerable(w)
        await w.close()
        return connection_id, session_id

    connection_id, session_id = asyncio.run(run())
    now = datetime.now(UTC)
    first, second = new_id(), new_id()
    with unit_of_work(app.state.session_factory) as session:
        limits.open_requests(session, [{"id": first, "session_id": session_id, "connection_id": connection_id,
                                        "kind": "set", "created_at": now, "limit_kw": 5.0}])
        limits.record_result(session, connection_id, first, "ACCEPTED", now=now)
        limits.record_answers(session, [limits.Answer(first, "accepted", answer="ACCEPTED")], now=now)
        limits.open_requests(session, [{"id": second, "session_id": session_id, "connection_id": connection_id,
                                        "kind": "set", "created_at": now, "limit_kw": 4.0}])
    rows = {r.id: r for r in _requests(app)}
    assert rows[first].status == "applied" and rows[first].answer == "ACCEPTED"
    assert rows[second].status == "sending"


def test_the_sim_cpo_fast_profile_path_gives_the_same_answers(app: FastAPI) -> None:
    w = world(app, evses=2, callback_delay_s=2, fast_profiles=True)

    async def run() -> tuple[list[Any], float | None]:
        _connection_id, [session_id] = await _steerable(w)
        network = OcpiChargePointNetwork(w.context, http=w.http)
        outcomes = await network.set_limits([SessionLimit(session_id, 3.7), SessionLimit("nope", 3.0)])
        await w.sim.step(5)
        limit = w.sim.effective_limit_kw(next(iter(w.sim.sessions.values())), w.sim.now())
        await w.close()
        return outcomes, limit

    outcomes, limit = asyncio.run(run())
    assert [o.status for o in outcomes] == [LimitStatus.ACCEPTED, LimitStatus.UNKNOWN_SESSION]
    assert limit is not None and abs(limit - 3.657) < 1e-6
    assert [r.status for r in _requests(app)] == ["applied"]
