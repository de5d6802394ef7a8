"""UFTP transport security (CS1): libsodium ``crypto_sign`` sealed messages inside a SignedMessage envelope.

Body = base64(Ed25519 signature (64 bytes) ‖ inner XML). Keys travel base64-encoded: the private key is
libsodium's 64-byte secret key (seed ‖ public key), the public key its 32 bytes, as in shapeshifter-uftp.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from lxml import etree
from nacl.bindings import crypto_sign, crypto_sign_keypair, crypto_sign_open
from nacl.exceptions import BadSignatureError, CryptoError

from adapters.markets.uftp.codec import element_to_message, to_xml, validate_uftp_xml
from adapters.markets.uftp.errors import UftpSchemaError, UftpSignatureError
from adapters.markets.uftp.messages import PayloadMessage, UsefRole

SIGNATURE_BYTES = 64

KeyLookup = Callable[[str, UsefRole], str | None]
"""Returns the base64 public signing key of (sender domain, role), or None when unknown."""


@dataclass(frozen=True)
class SigningKeyPair:
    """A base64-encoded Ed25519 key pair."""

    private_key_b64: str
    public_key_b64: str


@dataclass(frozen=True)
class VerifiedMessage:
    """An inbound message whose signature checked out against the sender's registered key."""

    sender_domain: str
    sender_role: UsefRole
    message: PayloadMessage
    payload_xml: bytes


class StaticKeyLookup:
    """Public keys configured per (domain, role), e.g. from settings or the GOPACS participant API."""

    def __init__(self, keys: Mapping[tuple[str, UsefRole], str]) -> None:
        self._keys = dict(keys)

    def __call__(self, domain: str, role: UsefRole) -> str | None:
        """Return the key registered for ``domain`` acting as ``role``."""
        return self._keys.get((domain, role))


def generate_signing_keypair() -> SigningKeyPair:
    """Create a fresh Ed25519 key pair."""
    public_key, secret_key = crypto_sign_keypair()
    return SigningKeyPair(_b64(secret_key), _b64(public_key))


def seal(payload_xml: bytes, private_key_b64: str) -> bytes:
    """Return signature ‖ payload (libsodium combined mode)."""
    return crypto_sign(payload_xml, _decode_key(private_key_b64, 64, "private"))


def unseal(sealed: bytes, public_key_b64: str) -> bytes:
    """Verify a sealed body and return the inner XML, or raise UftpSignatureError."""
    if len(sealed) <= SIGNATURE_BYTES:
        raise UftpSignatureError("body is too short to carry an Ed25519 signature: message is not signed")
    try:
        return crypto_sign_open(sealed, _decode_key(public_key_b64, 32, "public"))
    except (BadSignatureError, CryptoError, ValueError) as exc:
        raise UftpSignatureError("signature does not verify with the sender's public key") from exc


def sign_message(message: PayloadMessage, sender_role: UsefRole, private_key_b64: str) -> bytes:
    """Serialise, seal and wrap ``message`` in a SignedMessage envelope (UTF-8 XML)."""
    envelope = etree.Element("SignedMessage")
    envelope.set("SenderDomain", message.sender_domain)
    envelope.set("SenderRole", sender_role.value)
    envelope.set("Body", _b64(seal(to_xml(message), private_key_b64)))
    xml = etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")
    validate_uftp_xml(xml)
    return xml


def open_signed_message(xml: bytes, key_lookup: KeyLookup) -> VerifiedMessage:
    """Check envelope, signature and inner schema of an inbound SignedMessage."""
    envelope = validate_uftp_xml(xml)
    if envelope.tag != "SignedMessage":
        raise UftpSignatureError(f"message is not signed: expected a SignedMessage envelope, got {envelope.tag}")
    sender_domain = envelope.get("SenderDomain", "")
    sender_role = UsefRole(envelope.get("SenderRole", ""))
    public_key = key_lookup(sender_domain, sender_role)
    if public_key is None:
        raise UftpSignatureError(f"no public key registered for {sender_domain} as {sender_role.value}")
    try:
        sealed = base64.b64decode(envelope.get("Body", ""), validate=True)
    except binascii.Error as exc:
        raise UftpSchemaError("SignedMessage Body is not base64") from exc
    payload_xml = unseal(sealed, public_key)
    message = element_to_message(validate_uftp_xml(payload_xml))
    return VerifiedMessage(sender_domain, sender_role, message, payload_xml)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _decode_key(key_b64: str, length: int, what: str) -> bytes:
    try:
        key = base64.b64decode(key_b64, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"{what} key is not base64") from exc
    if len(key) != length:
        raise ValueError(f"{what} key must be {length} bytes, got {len(key)}")
    return key
