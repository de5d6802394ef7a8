"""Pools: the groups a session belongs to at once, named ``<kind>:<key>``.

A session is in one pool of each kind: its bidding zone (``zone:NL``), its DSO congestion point
(``congestion_point:<EAN>``), its CPO (``cpo:NL-CPA``) and its site (``site:<id>``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from vpp.domain.errors import InvalidInput


class PoolKind(StrEnum):
    """What a pool groups sessions by."""

    ZONE = "zone"
    CONGESTION_POINT = "congestion_point"
    CPO = "cpo"
    SITE = "site"


@dataclass(frozen=True, slots=True, order=True)
class PoolId:
    """A pool's identity: its kind and key."""

    kind: PoolKind
    key: str

    def __str__(self) -> str:
        return f"{self.kind.value}:{self.key}"

    @classmethod
    def parse(cls, text: str) -> PoolId:
        """Parse ``kind:key``; InvalidInput names the allowed kinds otherwise."""
        kind, sep, key = text.partition(":")
        if not sep or not key:
            raise InvalidInput(f"pool {text!r} is not of the form <kind>:<key>")
        try:
            return cls(PoolKind(kind), key)
        except ValueError as exc:
            raise InvalidInput(f"pool kind {kind!r} is unknown; one of {[k.value for k in PoolKind]}") from exc


def cpo_pool(country_code: str, party_id: str) -> PoolId:
    """The pool of a CPO party."""
    return PoolId(PoolKind.CPO, f"{country_code.upper()}-{party_id.upper()}")
