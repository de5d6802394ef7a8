from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from adapters.markets.uftp import SigningKeyPair, StaticKeyLookup, generate_signing_keypair, sign_message, to_xml
from adapters.markets.uftp.messages import FlexOffer, FlexOfferOption, FlexRequest, FlexRequestIsp, PowerIsp, UsefRole
from adapters.markets.uftp.router import DEFAULT_PATH, ReceivedMessage, create_uftp_router

AGR, DSO = "agr.example.com", "dso.example.com"
XML = {"Content-Type": "text/xml; charset=utf-8"}


class Recorder:
    def __init__(self) -> None:
        self.handled: list[ReceivedMessage] = []
        self.rejected: list[tuple[ReceivedMessage, str]] = []

    def handle(self, received: ReceivedMessage) -> None:
        self.handled.append(received)

    def reject(self, received: ReceivedMessage, reason: str) -> None:
        self.rejected.append((received, reason))


@pytest.fixture
def dso_keys() -> SigningKeyPair:
    return generate_signing_keypair()


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def client(recorder: Recorder, dso_keys: SigningKeyPair) -> TestClient:
    app = FastAPI()
    keys = StaticKeyLookup({(DSO, UsefRole.DSO): dso_keys.public_key_b64})
    app.include_router(create_uftp_router(recorder, key_lookup=keys, own_domain=AGR))
    return TestClient(app)


def _request(sender: str = DSO, recipient: str = AGR) -> FlexRequest:
    return FlexRequest(
        sender_domain=sender,
        recipient_domain=recipient,
        period=date(2026, 6, 1),
        congestion_point="ean.871685900012636543",
        expiration_date_time=datetime(2026, 5, 31, 12, tzinfo=UTC),
        isps=(FlexRequestIsp(start=1, min_power_w=-10_000, max_power_w=0),),
    )


def test_signed_flex_request_is_acknowledged_with_200_and_dispatched(
    client: TestClient, recorder: Recorder, dso_keys: SigningKeyPair
) -> None:
    message = _request()

    response = client.post(
        DEFAULT_PATH, content=sign_message(message, UsefRole.DSO, dso_keys.private_key_b64), headers=XML
    )

    assert response.status_code == 200
    assert response.content == b""
    assert [r.message for r in recorder.handled] == [message]
    assert recorder.handled[0].sender_role is UsefRole.DSO


def test_tampered_signature_is_refused_with_401_and_a_reason(
    client: TestClient, recorder: Recorder, dso_keys: SigningKeyPair
) -> None:
    envelope = sign_message(_request(), UsefRole.DSO, generate_signing_keypair().private_key_b64)

    response = client.post(DEFAULT_PATH, content=envelope, headers=XML)

    assert response.status_code == 401
    assert "does not verify" in response.text
    assert recorder.handled == []


def test_unsigned_message_is_refused_with_401(client: TestClient, recorder: Recorder) -> None:
    response = client.post(DEFAULT_PATH, content=to_xml(_request()), headers=XML)

    assert response.status_code == 401
    assert "not signed" in response.text
    assert recorder.handled == []
    assert recorder.rejected == []


def test_non_xml_and_schema_invalid_bodies_are_refused_with_400(client: TestClient) -> None:
    assert client.post(DEFAULT_PATH, content=b"{}", headers={"Content-Type": "application/json"}).status_code == 400
    response = client.post(DEFAULT_PATH, content=b"<SignedMessage SenderDomain='x'/>", headers=XML)
    assert response.status_code == 400
    assert "UFTP 3.1.0" in response.text


def test_authentic_but_misaddressed_messages_are_rejected_functionally(
    client: TestClient, recorder: Recorder, dso_keys: SigningKeyPair
) -> None:
    wrong_recipient = _request(recipient="someone-else.example.com")
    offer = FlexOffer(
        sender_domain=DSO,
        recipient_domain=AGR,
        period=date(2026, 6, 1),
        congestion_point="ean.871685900012636543",
        expiration_date_time=datetime(2026, 5, 31, 12, tzinfo=UTC),
        offer_options=(
            FlexOfferOption(option_reference="o", price_eur=Decimal(1), isps=(PowerIsp(start=1, power_w=0),)),
        ),
    )

    for message in (wrong_recipient, offer):
        envelope = sign_message(message, UsefRole.DSO, dso_keys.private_key_b64)
        assert client.post(DEFAULT_PATH, content=envelope, headers=XML).status_code == 200

    reasons = [reason for _, reason in recorder.rejected]
    assert reasons[0].startswith("Unknown Recipient")
    assert reasons[1].startswith("Invalid Message: FlexOffer")
    assert recorder.handled == []
