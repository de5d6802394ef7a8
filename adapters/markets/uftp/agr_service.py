"""The AGR side of UFTP wired to the congestion feature: inbound messages in, functional answers via the outbox.

``UftpAgrService`` is the router's handler. Each inbound message is logged once per (sender, MessageID) and
processed in one transaction; every answer is logged and queued in the outbox in that same transaction, and
delivery (``deliver_due``, run by the ``uftp.deliver_outbox`` task) signs and POSTs it afterwards. Wire words
(W, runs of ISPs, MessageIDs) meet domain words (kW, ISP numbers, pools) only here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
from fastapi import APIRouter
from sqlalchemy.orm import Session, sessionmaker

from adapters.markets.uftp.client import UftpClient
from adapters.markets.uftp.codec import from_xml, to_xml
from adapters.markets.uftp.errors import UftpDeliveryError
from adapters.markets.uftp.messages import (
    AcceptedDisputed,
    AcceptedRejected,
    Disposition,
    DPrognosis,
    FlexOffer,
    FlexOfferOption,
    FlexOrder,
    FlexOrderSettlementStatus,
    FlexRequest,
    FlexSettlement,
    FlexSettlementResponse,
    PayloadMessage,
    PowerIsp,
    UsefRole,
)
from adapters.markets.uftp.responses import accept, reject
from adapters.markets.uftp.router import ReceivedMessage, create_uftp_router
from vpp.config import Settings
from vpp.congestion import outbox, participants
from vpp.congestion import service as congestion
from vpp.congestion.flexsource import FlexSourceFactory, flex_source_for
from vpp.congestion.tables import UftpMessage
from vpp.congestion.values import (
    FlexOrderIn,
    FlexRequestIn,
    OrderSettlementIn,
    RequestedIsp,
    SettledIsp,
    congestion_pool,
    day_isp_starts,
)
from vpp.db import unit_of_work
from vpp.domain.errors import InvalidInput, ServiceUnavailable
from vpp.observability import UFTP_MESSAGES, UFTP_OUTBOX_GIVEN_UP
from vpp.ports import Clock, SystemClock, TaskQueue

log = logging.getLogger(__name__)

DELIVER_TASK = "uftp.deliver_outbox"


class DbKeyLookup:
    """Public keys from the participant registry."""

    def __init__(self, session_factory: sessionmaker[Session]) -> None:
        self._session_factory = session_factory

    def __call__(self, domain: str, role: UsefRole) -> str | None:
        """The registered key of ``domain`` acting as ``role``."""
        with self._session_factory() as session:
            return participants.public_key(session, domain, role.value)


def expand(runs: Iterable[Any]) -> list[tuple[int, Any]]:
    """ISP runs (``start``, ``duration``) as (ISP number, run) per ISP."""
    return [(run.start + offset, run) for run in runs for offset in range(run.duration)]


def compress(powers: Sequence[tuple[int, int]]) -> tuple[PowerIsp, ...]:
    """Consecutive ISPs of equal power (W) as runs."""
    runs: list[PowerIsp] = []
    for isp, power_w in sorted(powers):
        last = runs[-1] if runs else None
        if last is not None and last.start + last.duration == isp and last.power_w == power_w:
            runs[-1] = PowerIsp(start=last.start, duration=last.duration + 1, power_w=power_w)
        else:
            runs.append(PowerIsp(start=isp, duration=1, power_w=power_w))
    return tuple(runs)


def watts(kw: float) -> int:
    """kW (domain) to whole W (wire)."""
    return round(kw * 1000)


@dataclass
class _Outgoing:
    """Messages answered within one transaction, queued in the order they were made."""

    session: Session
    now: datetime
    messages: list[PayloadMessage] = field(default_factory=list)

    def send(self, message: PayloadMessage | None) -> None:
        if message is None:
            return
        # Distinct timestamps keep the outbox's delivery order equal to the order of answering.
        at = self.now + timedelta(microseconds=len(self.messages))
        outbox.enqueue(
            self.session,
            message_type=message.xml_tag,
            message_id=message.message_id,
            conversation_id=message.conversation_id,
            sender_domain=message.sender_domain,
            recipient_domain=message.recipient_domain,
            xml=to_xml(message).decode("utf-8"),
            now=at,
        )
        self.messages.append(message)
        UFTP_MESSAGES.labels("out", message.xml_tag, "queued").inc()


class UftpAgrService:
    """Handles verified inbound UFTP messages for the AGR role (the router calls it after HTTP 200)."""

    def __init__(
        self,
        settings: Settings,
        session_factory: sessionmaker[Session],
        *,
        task_queue: Callable[[], TaskQueue | None],
        flex_source: FlexSourceFactory = flex_source_for,
        clock: Clock | None = None,
    ) -> None:
        self._settings = settings
        self._session_factory = session_factory
        self._task_queue = task_queue
        self._flex_source = flex_source
        self._clock = clock or SystemClock()

    def handle(self, received: ReceivedMessage) -> None:
        """Log, process and answer one message; a duplicate MessageID is dropped."""
        message = received.message
        try:
            with unit_of_work(self._session_factory) as session:
                row = self._log_inbound(session, message)
                if row is None:
                    UFTP_MESSAGES.labels("in", message.xml_tag, "duplicate").inc()
                    log.info(
                        "duplicate UFTP %s %s from %s dropped",
                        message.xml_tag,
                        message.message_id,
                        message.sender_domain,
                    )
                    return
                out = _Outgoing(session, self._clock.now())
                self._dispatch(session, row, message, out)
                UFTP_MESSAGES.labels("in", message.xml_tag, row.status).inc()
        except Exception:
            UFTP_MESSAGES.labels("in", message.xml_tag, "error").inc()
            log.exception("UFTP %s %s from %s failed", message.xml_tag, message.message_id, message.sender_domain)
            return
        self._kick()

    def reject(self, received: ReceivedMessage, reason: str) -> None:
        """Log an authentic message we cannot accept and answer it Rejected."""
        message = received.message
        with unit_of_work(self._session_factory) as session:
            row = self._log_inbound(session, message)
            if row is None:
                return
            outbox.set_status(session, row, "rejected", reason)
            _Outgoing(session, self._clock.now()).send(reject(message, reason))
        UFTP_MESSAGES.labels("in", message.xml_tag, "rejected").inc()
        self._kick()

    def _log_inbound(self, session: Session, message: PayloadMessage) -> UftpMessage | None:
        return outbox.record_inbound(
            session,
            message_type=message.xml_tag,
            message_id=message.message_id,
            conversation_id=message.conversation_id,
            sender_domain=message.sender_domain,
            recipient_domain=message.recipient_domain,
            xml=to_xml(message).decode("utf-8"),
        )

    def _kick(self) -> None:
        queue = self._task_queue()
        if queue is None:
            return
        try:
            queue.enqueue(DELIVER_TASK)
        except Exception:
            # The periodic drain delivers it later; an unreachable broker must not lose the answer.
            log.exception("could not enqueue %s", DELIVER_TASK)

    def _dispatch(self, session: Session, row: UftpMessage, message: PayloadMessage, out: _Outgoing) -> None:
        try:
            if isinstance(message, FlexRequest):
                self._on_flex_request(session, message, out)
            elif isinstance(message, FlexOrder):
                self._on_flex_order(session, message, out)
            elif isinstance(message, FlexSettlement):
                self._on_flex_settlement(session, row, message, out)
                return
            else:
                # Responses need no answer; a TestMessage or reservation update is acknowledged.
                out.send(accept(message))
        except (InvalidInput, ServiceUnavailable) as exc:
            outbox.set_status(session, row, "rejected", exc.message)
            out.send(reject(message, exc.message))
            return
        outbox.set_status(session, row, "processed")

    def _on_flex_request(self, session: Session, message: FlexRequest, out: _Outgoing) -> None:
        if message.expiration_date_time < out.now:
            raise InvalidInput(f"FlexRequest expired at {message.expiration_date_time.isoformat()}")
        if message.isp_duration != "PT15M":
            raise InvalidInput(f"ISP-Duration {message.isp_duration} is not supported; only PT15M")
        request = FlexRequestIn(
            dso_domain=message.sender_domain,
            message_id=message.message_id,
            congestion_point=message.congestion_point,
            period=message.period,
            time_zone=message.time_zone,
            requested=tuple(
                RequestedIsp(isp, run.min_power_w / 1000.0, run.max_power_w / 1000.0)
                for isp, run in expand(message.isps)
                if run.disposition in (None, Disposition.REQUESTED)
            ),
            expires_at=message.expiration_date_time,
        )
        settings = self._settings
        plan = congestion.plan_offer(
            session,
            self._flex_source(session),
            request,
            reliability=settings.uftp_offer_reliability,
            price_eur_per_mwh=settings.uftp_offer_price_eur_per_mwh,
            price_eur_per_mw=settings.uftp_offer_price_eur_per_mw,
        )
        out.send(accept(message))
        prognosis_id = queue_d_prognosis(
            out,
            own_domain=message.recipient_domain,
            dso_domain=message.sender_domain,
            congestion_point=message.congestion_point,
            period=message.period,
            time_zone=message.time_zone,
            prognosis_kw=plan.prognosis_kw,
        )
        if not plan.offered_kw:
            return
        option_reference = f"{message.message_id[:8]}-1"
        offer = FlexOffer(
            sender_domain=message.recipient_domain,
            recipient_domain=message.sender_domain,
            conversation_id=message.conversation_id,
            period=message.period,
            congestion_point=message.congestion_point,
            time_zone=message.time_zone,
            expiration_date_time=message.expiration_date_time,
            flex_request_message_id=message.message_id,
            d_prognosis_message_id=prognosis_id,
            contract_id=message.contract_id,
            offer_options=(
                FlexOfferOption(
                    option_reference=option_reference,
                    price_eur=plan.price_eur,
                    min_activation_factor=Decimal("1.00"),
                    isps=compress([(isp, -watts(kw)) for isp, kw in plan.offered_kw]),
                ),
            ),
        )
        congestion.record_offer(
            session,
            message_id=offer.message_id,
            conversation_id=offer.conversation_id,
            request=request,
            plan=plan,
            option_reference=option_reference,
            d_prognosis_message_id=prognosis_id,
        )
        out.send(offer)

    def _on_flex_order(self, session: Session, message: FlexOrder, out: _Outgoing) -> None:
        order = FlexOrderIn(
            dso_domain=message.sender_domain,
            message_id=message.message_id,
            order_reference=message.order_reference,
            flex_offer_message_id=message.flex_offer_message_id,
            option_reference=message.option_reference,
            congestion_point=message.congestion_point,
            period=message.period,
            time_zone=message.time_zone,
            price_eur=message.price_eur,
            activation_factor=message.activation_factor,
            isps=tuple((isp, run.power_w / 1000.0) for isp, run in expand(message.isps)),
        )
        congestion.accept_order(session, order, out.now)
        out.send(accept(message))

    def _on_flex_settlement(self, session: Session, row: UftpMessage, message: FlexSettlement, out: _Outgoing) -> None:
        source = self._flex_source(session)
        verdicts = [
            congestion.check_settlement(
                session,
                source,
                dso_domain=message.sender_domain,
                settlement_message_id=message.message_id,
                item=OrderSettlementIn(
                    order_reference=item.order_reference,
                    congestion_point=item.congestion_point,
                    period=item.period,
                    price_eur=item.price_eur,
                    penalty_eur=item.penalty_eur,
                    net_eur=item.net_settlement_eur,
                    isps=tuple(
                        SettledIsp(
                            isp,
                            run.baseline_power_w / 1000.0,
                            run.ordered_flex_power_w / 1000.0,
                            run.actual_power_w / 1000.0,
                            run.delivered_flex_power_w / 1000.0,
                            run.power_deficiency_w / 1000.0,
                        )
                        for isp, run in expand(item.isps)
                    ),
                ),
                now=out.now,
            )
            for item in message.flex_order_settlements
        ]
        known = [v for v in verdicts if not v.reason.startswith("Unknown Reference")]
        result = AcceptedRejected.ACCEPTED if known or not verdicts else AcceptedRejected.REJECTED
        reason = None if known or not verdicts else "; ".join(v.reason for v in verdicts)
        out.send(
            FlexSettlementResponse(
                sender_domain=message.recipient_domain,
                recipient_domain=message.sender_domain,
                conversation_id=message.conversation_id,
                version=message.version,
                result=result,
                rejection_reason=reason,
                flex_settlement_message_id=message.message_id,
                flex_order_settlement_statuses=tuple(
                    FlexOrderSettlementStatus(
                        order_reference=v.order_reference,
                        disposition=AcceptedDisputed.ACCEPTED if v.accepted else AcceptedDisputed.DISPUTED,
                        dispute_reason=None if v.accepted else v.reason[:1000],
                    )
                    for v in verdicts
                ),
            )
        )
        disputed = [v for v in verdicts if not v.accepted]
        status = "rejected" if result is AcceptedRejected.REJECTED else ("disputed" if disputed else "processed")
        outbox.set_status(session, row, status, "; ".join(v.reason for v in disputed) or None)


def queue_d_prognosis(
    out: _Outgoing,
    *,
    own_domain: str,
    dso_domain: str,
    congestion_point: str,
    period: date,
    time_zone: str,
    prognosis_kw: Sequence[float],
) -> str:
    """Queue a D-Prognosis unless the latest one we sent says the same; returns its MessageID."""
    session = out.session
    power_w = [watts(kw) for kw in prognosis_kw]
    latest = congestion.latest_prognosis(session, congestion_point, period)
    if latest is not None and [watts(kw) for kw in latest.power_kw] == power_w:
        return latest.message_id
    revision = congestion.next_prognosis_revision(session, congestion_point, period)
    message = DPrognosis(
        sender_domain=own_domain,
        recipient_domain=dso_domain,
        period=period,
        congestion_point=congestion_point,
        time_zone=time_zone,
        revision=revision,
        isps=compress(list(enumerate(power_w, start=1))),
    )
    congestion.record_prognosis(
        session,
        message_id=message.message_id,
        dso_domain=dso_domain,
        congestion_point=congestion_point,
        period=period,
        revision=revision,
        power_kw=[w / 1000.0 for w in power_w],
    )
    out.send(message)
    return message.message_id


def send_d_prognoses(
    settings: Settings,
    session_factory: sessionmaker[Session],
    *,
    period: date,
    flex_source: FlexSourceFactory = flex_source_for,
    now: datetime,
) -> dict[str, int]:
    """Send the day's D-Prognosis for every registered congestion point (only where it changed)."""
    counts = {"sent": 0, "unchanged": 0, "unavailable": 0}
    with unit_of_work(session_factory) as session:
        points = participants.congestion_points(session)
    for dso_domain, point in points:
        with unit_of_work(session_factory) as session:
            starts = day_isp_starts(period, settings.market_timezone)
            try:
                flexibility = flex_source(session).flexibility(
                    congestion_pool(point), starts, settings.uftp_offer_reliability
                )
            except ServiceUnavailable as exc:
                log.warning("no D-Prognosis for %s: %s", point, exc.message)
                counts["unavailable"] += 1
                continue
            out = _Outgoing(session, now)
            queue_d_prognosis(
                out,
                own_domain=settings.uftp_domain,
                dso_domain=dso_domain,
                congestion_point=point,
                period=period,
                time_zone=settings.market_timezone,
                prognosis_kw=flexibility.prognosis_kw,
            )
            counts["sent" if out.messages else "unchanged"] += 1
    return counts


def deliver_due(
    settings: Settings,
    session_factory: sessionmaker[Session],
    http: httpx.Client,
    *,
    now: datetime,
    limit: int = 100,
) -> dict[str, int]:
    """Sign and POST every due outbox message once; failures are rescheduled with back-off or given up."""
    policy = outbox.RetryPolicy(
        settings.uftp_retry_base_seconds, settings.uftp_retry_max_delay_seconds, settings.uftp_retry_give_up_seconds
    )
    counts = {"delivered": 0, "retrying": 0, "failed": 0, "skipped": 0}
    with unit_of_work(session_factory) as session:
        due = outbox.due(session, now, limit)
    for outbox_id in due:
        with unit_of_work(session_factory) as session:
            item = outbox.claim(session, outbox_id, now)
        if item is None:
            counts["skipped"] += 1
            continue
        try:
            if item.endpoint_url is None:
                raise UftpDeliveryError(f"no endpoint registered for {item.recipient_domain}")
            _send(http, settings.uftp_private_key_b64, item.endpoint_url, item.xml)
        except Exception as exc:
            error = str(exc) if isinstance(exc, UftpDeliveryError) else f"{type(exc).__name__}: {exc}"
            with unit_of_work(session_factory) as session:
                gave_up = outbox.mark_failed(session, outbox_id, error, now, policy)
            if gave_up:
                UFTP_OUTBOX_GIVEN_UP.labels(item.message_type).inc()
                log.error(
                    "gave up delivering UFTP %s %s to %s after %d attempts: %s",
                    item.message_type,
                    item.message_id,
                    item.recipient_domain,
                    item.attempts + 1,
                    error,
                )
            counts["failed" if gave_up else "retrying"] += 1
            UFTP_MESSAGES.labels("out", item.message_type, "failed" if gave_up else "retrying").inc()
            continue
        with unit_of_work(session_factory) as session:
            outbox.mark_delivered(session, outbox_id, now)
        counts["delivered"] += 1
        UFTP_MESSAGES.labels("out", item.message_type, "delivered").inc()
    return counts


def _send(http: httpx.Client, private_key_b64: str, url: str, xml: str) -> None:
    client = UftpClient(http, private_key_b64=private_key_b64, endpoint_lookup=lambda _domain, _role: url)
    client.send(from_xml(xml.encode("utf-8")))


def build_uftp_router(
    settings: Settings,
    session_factory: sessionmaker[Session],
    *,
    task_queue: Callable[[], TaskQueue | None],
    flex_source: FlexSourceFactory = flex_source_for,
) -> APIRouter:
    """The inbound UFTP endpoint, with keys from the registry and our domain from the settings."""
    handler = UftpAgrService(settings, session_factory, task_queue=task_queue, flex_source=flex_source)
    return create_uftp_router(handler, key_lookup=DbKeyLookup(session_factory), own_domain=settings.uftp_domain)
