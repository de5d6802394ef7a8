"""A simulated DSO that speaks UFTP 3.1.0 over HTTP to the aggregator (the AGR), built from adapters/markets/uftp.

It is driven step by step: ``request_flex`` sends a FlexRequest, answers arrive on its own endpoint (``app``,
served with ``serve``), ``order`` accepts offers up to what it needs and sends FlexOrders, and ``settle``
sends a FlexSettlement computed from measured load it is given, with the USEF formula (markets.md 5.3).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import TypeVar

import httpx
import uvicorn
from fastapi import FastAPI, Request, Response

from adapters.markets.uftp.client import UftpClient
from adapters.markets.uftp.errors import UftpSchemaError, UftpSignatureError
from adapters.markets.uftp.messages import (
    AcceptedRejected,
    ContractSettlement,
    ContractSettlementIsp,
    ContractSettlementPeriod,
    DPrognosis,
    FlexOffer,
    FlexOfferOption,
    FlexOfferResponse,
    FlexOrder,
    FlexOrderSettlement,
    FlexOrderSettlementIsp,
    FlexRequest,
    FlexRequestIsp,
    FlexSettlement,
    PayloadMessage,
    UsefRole,
)
from adapters.markets.uftp.router import DEFAULT_PATH
from adapters.markets.uftp.signing import SigningKeyPair, StaticKeyLookup, generate_signing_keypair, open_signed_message
from vpp.algorithms.settlement import settle_flex_order

M = TypeVar("M", bound=PayloadMessage)


class SimulatedDso:
    """A DSO with its own key pair, its own UFTP endpoint and a record of everything the AGR sent it."""

    def __init__(
        self,
        *,
        domain: str,
        agr_domain: str,
        agr_url: str,
        agr_public_key_b64: str,
        http: httpx.Client,
        keys: SigningKeyPair | None = None,
        time_zone: str = "Europe/Amsterdam",
        penalty_eur_per_mw: float = 0.0,
    ) -> None:
        self.domain = domain
        self.agr_domain = agr_domain
        self.keys = keys or generate_signing_keypair()
        self.time_zone = time_zone
        self.penalty_eur_per_mw = penalty_eur_per_mw
        self.received: list[PayloadMessage] = []
        self.refused: list[str] = []
        self._arrived = threading.Condition()
        self._key_lookup = StaticKeyLookup({(agr_domain, UsefRole.AGR): agr_public_key_b64})
        self._client = UftpClient(
            http,
            private_key_b64=self.keys.private_key_b64,
            endpoint_lookup=lambda _d, _r: agr_url,
            sender_role=UsefRole.DSO,
        )
        self.app = self._build_app()

    @property
    def public_key_b64(self) -> str:
        """The key the AGR registers for this DSO."""
        return self.keys.public_key_b64

    def _build_app(self) -> FastAPI:
        app = FastAPI(title=f"simulated DSO {self.domain}")

        @app.post(DEFAULT_PATH)
        async def receive(request: Request) -> Response:
            try:
                verified = open_signed_message(await request.body(), self._key_lookup)
            except (UftpSchemaError, UftpSignatureError) as exc:
                self.refused.append(exc.message)
                return Response(exc.message, status_code=exc.http_status, media_type="text/plain")
            with self._arrived:
                self.received.append(verified.message)
                self._arrived.notify_all()
            return Response(status_code=200)

        return app

    def send(self, message: PayloadMessage) -> None:
        """Sign and POST a message to the AGR."""
        self._client.send(message, recipient_role=UsefRole.AGR)

    def request_flex(
        self,
        congestion_point: str,
        period: date,
        isps: Sequence[tuple[int, int, float, float]],
        *,
        expires_at: datetime | None = None,
    ) -> FlexRequest:
        """Ask for flexibility: ``isps`` are (start, duration, min_kw, max_kw), negative = less consumption."""
        message = FlexRequest(
            sender_domain=self.domain,
            recipient_domain=self.agr_domain,
            period=period,
            congestion_point=congestion_point,
            time_zone=self.time_zone,
            expiration_date_time=expires_at or datetime.now(UTC) + timedelta(hours=2),
            isps=tuple(
                FlexRequestIsp(
                    start=start, duration=duration, min_power_w=round(min_kw * 1000), max_power_w=round(max_kw * 1000)
                )
                for start, duration, min_kw, max_kw in isps
            ),
        )
        self.send(message)
        return message

    def messages(self, kind: type[M], where: Callable[[M], bool] = lambda _m: True) -> list[M]:
        """What the AGR sent of one kind, oldest first."""
        with self._arrived:
            return [m for m in self.received if isinstance(m, kind) and where(m)]

    def wait_for(self, kind: type[M], where: Callable[[M], bool] = lambda _m: True, timeout: float = 10.0) -> M:
        """Block until a matching message arrived (deliveries may run on another thread)."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while True:
                found = [m for m in self.received if isinstance(m, kind) and where(m)]
                if found:
                    return found[-1]
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no {kind.__name__} from {self.agr_domain} within {timeout} s")
                self._arrived.wait(remaining)

    def offers_for(self, request: FlexRequest) -> list[FlexOffer]:
        """The offers answering ``request``."""
        return self.messages(FlexOffer, lambda m: m.flex_request_message_id == request.message_id)

    def order(self, request: FlexRequest, needed_kw: float, *, reference_prefix: str = "ORD") -> list[FlexOrder]:
        """Accept offers, cheapest per MW first, until every requested ISP got ``needed_kw`` of reduction."""
        needed = {isp.start + k: needed_kw for isp in request.isps for k in range(isp.duration)}
        orders: list[FlexOrder] = []
        options = [(offer, option) for offer in self.offers_for(request) for option in offer.offer_options]

        for offer, option in sorted(options, key=lambda item: _price_per_mw(item[1])):
            self.send(
                FlexOfferResponse(
                    sender_domain=self.domain,
                    recipient_domain=self.agr_domain,
                    conversation_id=offer.conversation_id,
                    flex_offer_message_id=offer.message_id,
                )
            )
            runs = [(i.start + k, -i.power_w / 1000.0) for i in option.isps for k in range(i.duration)]
            if not any(needed.get(isp, 0.0) > 0 for isp, _ in runs):
                continue
            for isp, kw in runs:
                needed[isp] = needed.get(isp, 0.0) - kw
            order = FlexOrder(
                sender_domain=self.domain,
                recipient_domain=self.agr_domain,
                conversation_id=offer.conversation_id,
                period=offer.period,
                congestion_point=offer.congestion_point,
                time_zone=offer.time_zone,
                flex_offer_message_id=offer.message_id,
                option_reference=option.option_reference,
                price_eur=option.price_eur,
                order_reference=f"{reference_prefix}-{len(orders) + 1}-{offer.message_id[:8]}",
                d_prognosis_message_id=offer.d_prognosis_message_id,
                isps=option.isps,
            )
            self.send(order)
            orders.append(order)
        return orders

    def settlement_for(
        self,
        order: FlexOrder,
        measured_kw: Mapping[int, float],
        *,
        misreport_delivered_kw: Mapping[int, float] | None = None,
    ) -> FlexOrderSettlement:
        """Settle one order from the D-Prognosis it references and the measured load per ISP number."""
        prognosis = self.messages(DPrognosis, lambda m: m.message_id == order.d_prognosis_message_id)
        if not prognosis:
            raise LookupError(f"no D-Prognosis {order.d_prognosis_message_id} received for {order.order_reference}")
        baseline_w = {i.start + k: i.power_w for i in prognosis[-1].isps for k in range(i.duration)}
        ordered = [(i.start + k, -i.power_w) for i in order.isps for k in range(i.duration)]
        isps = [isp for isp, _ in ordered]
        ordered_mw = [w / 1e6 for _, w in ordered]
        rate = float(order.price_eur) / sum(ordered_mw) if sum(ordered_mw) else 0.0
        result = settle_flex_order(
            [baseline_w[i] / 1e6 for i in isps],
            ordered_mw,
            [measured_kw[i] / 1000.0 for i in isps],
            rate,
            self.penalty_eur_per_mw,
        )
        delivered_mw = [float(d) for d in result.delivered_mw]
        for index, isp in enumerate(isps):
            if misreport_delivered_kw and isp in misreport_delivered_kw:
                delivered_mw[index] = misreport_delivered_kw[isp] / 1000.0
        price = sum(delivered_mw) * rate
        penalty = float(result.deficiency_mw.sum()) * self.penalty_eur_per_mw
        return FlexOrderSettlement(
            order_reference=order.order_reference,
            period=order.period,
            congestion_point=order.congestion_point,
            price_eur=_eur(price),
            penalty_eur=_eur(penalty),
            net_settlement_eur=_eur(price - penalty),
            d_prognosis_message_id=order.d_prognosis_message_id,
            isps=tuple(
                FlexOrderSettlementIsp(
                    start=isp,
                    baseline_power_w=baseline_w[isp],
                    ordered_flex_power_w=-round(ordered_mw[k] * 1e6),
                    actual_power_w=round(measured_kw[isp] * 1000),
                    delivered_flex_power_w=-round(delivered_mw[k] * 1e6),
                    power_deficiency_w=round(float(result.deficiency_mw[k]) * 1e6),
                )
                for k, isp in enumerate(isps)
            ),
        )

    def settle(self, settlements: Sequence[FlexOrderSettlement]) -> FlexSettlement:
        """Send one FlexSettlement for these order settlements (with the contract settlement 3.1.0 requires)."""
        periods = [s.period for s in settlements]
        message = FlexSettlement(
            sender_domain=self.domain,
            recipient_domain=self.agr_domain,
            result=AcceptedRejected.ACCEPTED,
            period_start=min(periods),
            period_end=max(periods),
            flex_order_settlements=tuple(settlements),
            contract_settlements=(
                ContractSettlement(
                    periods=(
                        ContractSettlementPeriod(
                            period=min(periods), isps=(ContractSettlementIsp(start=1, reserved_power_w=0),)
                        ),
                    )
                ),
            ),
        )
        self.send(message)
        return message


def _price_per_mw(option: FlexOfferOption) -> float:
    mw = sum(abs(i.power_w) * i.duration for i in option.isps) / 1e6
    return float(option.price_eur) / mw if mw else float("inf")


def ordered_reduction_kw(order: FlexOrder) -> dict[int, float]:
    """The reduction an order asks for per ISP number (kW)."""
    return {i.start + k: -i.power_w / 1000.0 for i in order.isps for k in range(i.duration)}


def _eur(value: float) -> Decimal:
    return Decimal(str(round(value, 4)))


def free_port() -> int:
    """A free TCP port on localhost."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def serve(app: FastAPI, port: int | None = None) -> Iterator[str]:
    """Serve ``app`` with uvicorn on 127.0.0.1 in a thread; yields its UFTP message URL."""
    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}{DEFAULT_PATH}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
