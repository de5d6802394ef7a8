"""Why a UFTP message was refused: transport errors become HTTP codes, functional ones a Rejected response."""

from __future__ import annotations

from vpp.domain.errors import InvalidInput, Unauthorized


class UftpSchemaError(InvalidInput):
    """The XML is malformed or does not conform to the UFTP 3.1.0 XSD (HTTP 400)."""

    code = "uftp_schema_error"
    http_status = 400

    def __init__(self, message: str, *, errors: list[str] | None = None) -> None:
        super().__init__(message, details={"errors": errors or []})


class UftpSignatureError(Unauthorized):
    """The message is unsigned, its signer is unknown or its signature does not verify (HTTP 401)."""

    code = "uftp_signature_error"
    http_status = 401


class UftpFunctionalError(InvalidInput):
    """The message is authentic but cannot be accepted; the sender gets a Rejected response."""

    code = "uftp_rejected"


class UftpDeliveryError(Exception):
    """The peer did not acknowledge an outgoing message with HTTP 200."""

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
