"""Secrets we must be able to read back (tokens we present to CPOs), sealed at rest with libsodium SecretBox.

A sealed value is ``sb1:<key id>:<base64url(nonce + ciphertext)>``. The key id (a short keyed hash of the key) says
which key sealed it, so a keyring holding the current key and the previous ones opens values sealed before a
rotation, and ``vpp secrets rotate-key`` knows which rows still need re-sealing.

The current key is ``VPP_TOKEN_KEY`` (base64 of 32 random bytes, ``vpp secrets generate-key``). Without it the key is
derived from ``VPP_SECRET_KEY`` (itself required outside embedded mode, generated under the data directory in
embedded mode), never from a value in the code; that derived key stays readable after ``VPP_TOKEN_KEY`` is set.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from nacl.exceptions import CryptoError
from nacl.secret import SecretBox
from nacl.utils import random as random_bytes

PREFIX = "sb1"
KEY_BYTES = SecretBox.KEY_SIZE


class KeyringError(ValueError):
    """A key is malformed, or a sealed value cannot be opened with any key we hold."""


def generate_key() -> str:
    """A new token key, base64 encoded (what ``VPP_TOKEN_KEY`` holds)."""
    return base64.b64encode(random_bytes(KEY_BYTES)).decode("ascii")


def parse_key(text: str) -> bytes:
    """The 32 key bytes of a base64 (standard or url-safe) key."""
    cleaned = text.strip()
    try:
        raw = base64.urlsafe_b64decode(cleaned.replace("+", "-").replace("/", "_") + "=" * (-len(cleaned) % 4))
    except ValueError as exc:
        raise KeyringError("a token key must be base64") from exc
    if len(raw) != KEY_BYTES:
        raise KeyringError(f"a token key must be {KEY_BYTES} bytes (base64 of 32 random bytes), not {len(raw)}")
    return raw


def derive_key(secret: str) -> bytes:
    """A token key derived from the service secret (domain-separated, so it is not the pepper itself)."""
    return hashlib.blake2b(secret.encode(), digest_size=KEY_BYTES, person=b"vpp-token-key").digest()


def key_id(key: bytes) -> str:
    """A short public name of a key (8 hex digits), stored beside what it sealed."""
    return hashlib.blake2b(key, digest_size=4, person=b"vpp-token-kid").hexdigest()


@dataclass(frozen=True)
class Keyring:
    """The current key (seals) and older ones (open only, during a rotation)."""

    current: bytes
    previous: tuple[bytes, ...] = ()
    _boxes: dict[str, SecretBox] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for key in (self.current, *self.previous):
            if len(key) != KEY_BYTES:
                raise KeyringError(f"a token key must be {KEY_BYTES} bytes")
            self._boxes.setdefault(key_id(key), SecretBox(key))

    @classmethod
    def of(cls, current: bytes, previous: Iterable[bytes] = ()) -> Keyring:
        """A keyring; duplicates of the current key among the previous ones are dropped."""
        return cls(current, tuple(k for k in dict.fromkeys(previous) if k != current))

    @property
    def current_id(self) -> str:
        """The key id new values are sealed with."""
        return key_id(self.current)

    def seal(self, plaintext: str) -> str:
        """Encrypt ``plaintext`` with the current key (a fresh random nonce each time)."""
        sealed = self._boxes[self.current_id].encrypt(plaintext.encode("utf-8"))
        return f"{PREFIX}:{self.current_id}:{base64.urlsafe_b64encode(bytes(sealed)).decode('ascii')}"

    def open(self, sealed: str) -> str:
        """Decrypt a value sealed with any key of the ring; KeyringError (naming no secret) otherwise."""
        prefix, kid, body = _split(sealed)
        if prefix != PREFIX:
            raise KeyringError("not a sealed value")
        box = self._boxes.get(kid)
        if box is None:
            raise KeyringError(f"sealed with key {kid}, which is neither VPP_TOKEN_KEY nor a previous key")
        try:
            return box.decrypt(base64.urlsafe_b64decode(body)).decode("utf-8")
        except (CryptoError, ValueError) as exc:
            raise KeyringError(f"a value sealed with key {kid} does not decrypt (altered or truncated)") from exc

    def is_current(self, sealed: str) -> bool:
        """Whether ``sealed`` is already sealed with the current key."""
        prefix, kid, _body = _split(sealed)
        return prefix == PREFIX and kid == self.current_id


def is_sealed(value: str) -> bool:
    """Whether a stored value has the sealed form (as opposed to a legacy plaintext token)."""
    return value.startswith(PREFIX + ":") and value.count(":") >= 2


def _split(sealed: str) -> tuple[str, str, str]:
    parts = sealed.split(":", 2)
    if len(parts) != 3:
        return "", "", ""
    return parts[0], parts[1], parts[2]
