"""UFTP 3.1.0 (Shapeshifter) for the aggregator (AGR) role: messages, XML, CS1 signing, HTTP in and out."""

from adapters.markets.uftp.client import UftpClient
from adapters.markets.uftp.codec import from_xml, to_xml, validate_uftp_xml
from adapters.markets.uftp.errors import (
    UftpDeliveryError,
    UftpFunctionalError,
    UftpSchemaError,
    UftpSignatureError,
)
from adapters.markets.uftp.responses import accept, reject, response_to
from adapters.markets.uftp.signing import (
    KeyLookup,
    SigningKeyPair,
    StaticKeyLookup,
    VerifiedMessage,
    generate_signing_keypair,
    open_signed_message,
    seal,
    sign_message,
    unseal,
)

__all__ = [
    "KeyLookup",
    "SigningKeyPair",
    "StaticKeyLookup",
    "UftpClient",
    "UftpDeliveryError",
    "UftpFunctionalError",
    "UftpSchemaError",
    "UftpSignatureError",
    "VerifiedMessage",
    "accept",
    "from_xml",
    "generate_signing_keypair",
    "open_signed_message",
    "reject",
    "response_to",
    "seal",
    "sign_message",
    "to_xml",
    "unseal",
    "validate_uftp_xml",
]
