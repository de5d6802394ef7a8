"""Outbound UFTP: sign a message and POST it to the peer's message endpoint."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from adapters.markets.uftp.errors import UftpDeliveryError
from adapters.markets.uftp.messages import PayloadMessage, UsefRole
from adapters.markets.uftp.signing import sign_message

CONTENT_TYPE = "text/xml; charset=utf-8"

EndpointLookup = Callable[[str, UsefRole], str]
"""Returns the full message URL of (recipient domain, role)."""


class UftpClient:
    """Sends signed messages as one role (AGR by default); HTTP 200 is the peer's only transport ack."""

    def __init__(
        self,
        http: httpx.Client,
        *,
        private_key_b64: str,
        endpoint_lookup: EndpointLookup,
        sender_role: UsefRole = UsefRole.AGR,
    ) -> None:
        self._http = http
        self._private_key_b64 = private_key_b64
        self._endpoint_lookup = endpoint_lookup
        self._sender_role = sender_role

    def send(self, message: PayloadMessage, recipient_role: UsefRole = UsefRole.DSO) -> None:
        """Sign and deliver ``message``; raise UftpDeliveryError unless the peer answers 200."""
        url = self._endpoint_lookup(message.recipient_domain, recipient_role)
        body = sign_message(message, self._sender_role, self._private_key_b64)
        try:
            response = self._http.post(url, content=body, headers={"Content-Type": CONTENT_TYPE})
        except httpx.HTTPError as exc:
            raise UftpDeliveryError(f"{type(message).__name__} to {url} failed: {exc}") from exc
        if response.status_code != httpx.codes.OK:
            reason = response.text[:200]
            raise UftpDeliveryError(
                f"{type(message).__name__} to {url} refused: HTTP {response.status_code} {reason}",
                status_code=response.status_code,
            )
