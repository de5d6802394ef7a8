"""Inbound UFTP for the AGR role: one POST endpoint that verifies, parses and dispatches signed messages.

Transport problems are answered with an HTTP status and a plain-text reason (400 schema, 401 unsigned,
unknown signer or bad signature). Authentic messages get HTTP 200 at once; the handler runs after the
response is sent and answers functionally with a separate signed message (``handle`` or ``reject``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from fastapi import APIRouter, BackgroundTasks, Request, Response

from adapters.markets.uftp.errors import UftpFunctionalError, UftpSchemaError, UftpSignatureError
from adapters.markets.uftp.messages import AGR_INBOUND_TYPES, PayloadMessage, UsefRole
from adapters.markets.uftp.signing import KeyLookup, VerifiedMessage, open_signed_message

DEFAULT_PATH = "/shapeshifter/api/v3/message"
_XML_CONTENT_TYPES = ("text/xml", "application/xml")


@dataclass(frozen=True)
class ReceivedMessage:
    """A verified inbound message and who signed it."""

    sender_domain: str
    sender_role: UsefRole
    message: PayloadMessage


class UftpAgrHandler(Protocol):
    """What the AGR service does with verified messages; both run after HTTP 200 was sent."""

    def handle(self, received: ReceivedMessage) -> None:
        """Process an accepted inbound message (and send its functional response)."""

    def reject(self, received: ReceivedMessage, reason: str) -> None:
        """Send a Rejected response for an authentic message that cannot be accepted."""


def create_uftp_router(
    handler: UftpAgrHandler,
    *,
    key_lookup: KeyLookup,
    own_domain: str | None = None,
    path: str = DEFAULT_PATH,
) -> APIRouter:
    """Router with the UFTP message endpoint for the AGR role."""
    router = APIRouter(tags=["uftp"])

    @router.post(
        path,
        operation_id="uftp_receive_message",
        response_class=Response,
        responses={
            400: {"description": "Not UFTP 3.1.0 XML", "content": {"text/plain": {"schema": {"type": "string"}}}},
            401: {"description": "Unsigned or bad signature",
                  "content": {"text/plain": {"schema": {"type": "string"}}}},
        },
        openapi_extra={"requestBody": {"required": True, "description": "A UFTP 3.1.0 SignedMessage",
                                       "content": {"text/xml": {"schema": {"type": "string", "format": "binary"}}}}},
    )
    async def receive_message(request: Request, background: BackgroundTasks) -> Response:
        """Receive one SignedMessage."""
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type not in _XML_CONTENT_TYPES:
            return _refuse(400, f"content type must be text/xml, got {content_type or 'none'}")
        body = await request.body()
        try:
            verified = open_signed_message(body, key_lookup)
        except (UftpSchemaError, UftpSignatureError) as exc:
            return _refuse(exc.http_status, exc.message)
        received = ReceivedMessage(verified.sender_domain, verified.sender_role, verified.message)
        try:
            _check_functional(verified, own_domain)
        except UftpFunctionalError as exc:
            background.add_task(handler.reject, received, exc.message)
        else:
            background.add_task(handler.handle, received)
        return Response(status_code=200)

    return router


def _check_functional(verified: VerifiedMessage, own_domain: str | None) -> None:
    message = verified.message
    if message.sender_domain != verified.sender_domain:
        raise UftpFunctionalError("Invalid Sender: envelope and message sender domains differ")
    if own_domain is not None and message.recipient_domain != own_domain:
        raise UftpFunctionalError(f"Unknown Recipient: {message.recipient_domain}")
    if verified.sender_role is not UsefRole.DSO or type(message) not in AGR_INBOUND_TYPES:
        raise UftpFunctionalError(f"Invalid Message: {type(message).__name__} from {verified.sender_role.value}")


def _refuse(status_code: int, reason: str) -> Response:
    return Response(content=reason, status_code=status_code, media_type="text/plain")
