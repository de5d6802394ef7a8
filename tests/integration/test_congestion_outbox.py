"""The UFTP outbox: retries with exponential back-off, delivery exactly once, giving up with an alert; the
daily D-Prognosis task. SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path

import httpx
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from adapters.markets.uftp import generate_signing_keypair, open_signed_message, to_xml
from adapters.markets.uftp.agr_service import deliver_due
from adapters.markets.uftp.messages import DPrognosis, UsefRole
from adapters.markets.uftp.messages import TestMessage as UftpTestMessage
from adapters.markets.uftp.signing import StaticKeyLookup
from tests.integration import test_congestion_support as support
from tests.integration.test_congestion_support import AGR_DOMAIN, DSO_DOMAIN, POINT, make_settings
from vpp.config import Settings
from vpp.congestion import outbox, participants
from vpp.congestion.flexsource import StaticFlexSource
from vpp.congestion.tables import UftpMessage, UftpOutbox
from vpp.db import unit_of_work
from vpp.observability import UFTP_OUTBOX_GIVEN_UP
from workers.celery_app import get_celery_app
from workers.runtime import Runtime, set_runtime

congestion_engine, factory, flex = support.congestion_engine, support.factory, support.flex
URL = "http://dso.flaky.test/shapeshifter/api/v3/message"
T0 = datetime(2030, 6, 2, 12, 0, tzinfo=UTC)


class FlakyDso:
    """Answers 503 for the first ``failures`` posts, then 200; remembers the MessageIDs it accepted."""

    def __init__(self, agr_public_key: str, failures: int) -> None:
        self.failures = failures
        self.posts = 0
        self.accepted: list[str] = []
        self.keys = StaticKeyLookup({(AGR_DOMAIN, UsefRole.AGR): agr_public_key})
        self.during_send: list[object] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.posts += 1
        for hook in self.during_send:
            assert callable(hook)
            hook()
        if self.posts <= self.failures:
            return httpx.Response(503, text="maintenance")
        self.accepted.append(open_signed_message(request.content, self.keys).message.message_id)
        return httpx.Response(200)


def _queue_test_message(factory: sessionmaker[Session], settings: Settings, now: datetime) -> str:
    message = UftpTestMessage(sender_domain=AGR_DOMAIN, recipient_domain=DSO_DOMAIN)
    with unit_of_work(factory) as session:
        participants.upsert(session, domain=DSO_DOMAIN, public_key_b64=generate_signing_keypair().public_key_b64,
                            endpoint_url=URL, congestion_points=[POINT])
        outbox.enqueue(session, message_type=message.xml_tag, message_id=message.message_id,
                       conversation_id=message.conversation_id, sender_domain=AGR_DOMAIN, recipient_domain=DSO_DOMAIN,
                       xml=to_xml(message).decode(), now=now)
    return message.message_id


def _outbox_row(factory: sessionmaker[Session]) -> UftpOutbox:
    with unit_of_work(factory) as session:
        return session.scalars(select(UftpOutbox)).one()


def test_outbox_retries_a_failing_endpoint_with_growing_delays_and_delivers_once_it_comes_back_never_twice(
    tmp_path: Path, congestion_engine: Engine, factory: sessionmaker[Session]
) -> None:
    settings = make_settings(tmp_path, congestion_engine)
    message_id = _queue_test_message(factory, settings, T0)
    dso = FlakyDso(settings.uftp_public_key_b64, failures=3)
    now, attempts_at = T0, []
    with httpx.Client(transport=httpx.MockTransport(dso)) as http:
        for _ in range(6):
            attempts_at.append(now)
            deliver_due(settings, factory, http, now=now)
            row = _outbox_row(factory)
            if row.status == "delivered":
                break
            assert deliver_due(settings, factory, http, now=row.next_attempt_at - timedelta(seconds=1))["skipped"] == 0
            now = row.next_attempt_at
        posts_when_delivered = dso.posts
        deliver_due(settings, factory, http, now=now + timedelta(hours=2))

    delays = [(b - a).total_seconds() for a, b in pairwise(attempts_at)]
    assert delays == [10.0, 20.0, 40.0]
    assert dso.accepted == [message_id]
    assert dso.posts == posts_when_delivered == 4
    row = _outbox_row(factory)
    assert (row.status, row.attempts, row.delivered_at) == ("delivered", 4, now)
    assert row.last_error is not None and "503" in row.last_error
    with unit_of_work(factory) as session:
        assert session.scalars(select(UftpMessage.status)).one() == "delivered"


def test_a_worker_running_while_another_sends_finds_the_message_claimed_and_sends_nothing(
    tmp_path: Path, congestion_engine: Engine, factory: sessionmaker[Session]
) -> None:
    settings = make_settings(tmp_path, congestion_engine)
    _queue_test_message(factory, settings, T0)
    dso = FlakyDso(settings.uftp_public_key_b64, failures=0)
    concurrent: list[dict[str, int]] = []
    with httpx.Client(transport=httpx.MockTransport(dso)) as http:
        dso.during_send.append(lambda: concurrent.append(deliver_due(settings, factory, http, now=T0)))
        first = deliver_due(settings, factory, http, now=T0)

    assert first["delivered"] == 1
    assert concurrent == [{"delivered": 0, "retrying": 0, "failed": 0, "skipped": 0}]
    assert dso.posts == 1


def test_the_outbox_gives_up_after_retrying_for_an_hour_and_counts_it_for_alerting(
    tmp_path: Path, congestion_engine: Engine, factory: sessionmaker[Session]
) -> None:
    settings = make_settings(tmp_path, congestion_engine)
    _queue_test_message(factory, settings, T0)
    dso = FlakyDso(settings.uftp_public_key_b64, failures=1000)
    before = UFTP_OUTBOX_GIVEN_UP.labels("TestMessage")._value.get()
    now, delays = T0, []
    with httpx.Client(transport=httpx.MockTransport(dso)) as http:
        while _outbox_row(factory).status == "pending":
            deliver_due(settings, factory, http, now=now)
            row = _outbox_row(factory)
            delays.append((row.next_attempt_at - now).total_seconds())
            now = row.next_attempt_at

    row = _outbox_row(factory)
    assert row.status == "failed"
    assert now - T0 >= timedelta(hours=1)
    assert delays[:7] == [10, 20, 40, 80, 160, 320, 640] and max(delays) == 900
    assert row.attempts == dso.posts == len(delays)
    assert UFTP_OUTBOX_GIVEN_UP.labels("TestMessage")._value.get() == before + 1


def test_the_daily_d_prognosis_task_sends_one_per_congestion_point_and_nothing_when_unchanged(
    tmp_path: Path, congestion_engine: Engine, factory: sessionmaker[Session], flex: StaticFlexSource
) -> None:
    settings = make_settings(tmp_path, congestion_engine)
    set_runtime(Runtime(settings=settings, session_factory=factory))
    with unit_of_work(factory) as session:
        participants.upsert(session, domain=DSO_DOMAIN, public_key_b64=generate_signing_keypair().public_key_b64,
                            endpoint_url=URL, congestion_points=[POINT])
    task = get_celery_app(settings).tasks["uftp.send_d_prognoses"]

    first = task.apply().get()
    second = task.apply().get()

    assert (first["sent"], second["sent"], second["unchanged"]) == (1, 0, 1)
    with unit_of_work(factory) as session:
        (row,) = session.scalars(select(UftpMessage)).all()
    assert (row.direction, row.message_type, row.status) == ("out", DPrognosis.xml_tag, "queued")
