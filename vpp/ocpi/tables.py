"""Tables of the OCPI connections feature."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, String
from sqlalchemy.orm import Mapped, mapped_column

from vpp.db import ID, Base, new_id, utcnow


class OcpiConnection(Base):
    """One peer platform (a CPO) and the tokens both ways.

    Whoever initiated the handshake, ``outgoing_token`` is what we present to them (token B when they
    registered with us, token C when we registered with them) and ``incoming_token_hash`` verifies what
    they present to us. Tokens we only verify are kept as peppered hashes; the outgoing token must stay
    usable, so it is kept sealed (``vpp.keyring``: SecretBox with ``VPP_TOKEN_KEY``), never in plaintext.
    """

    __tablename__ = "ocpi_connections"

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default="invited")
    initiated_by: Mapped[str] = mapped_column(String(8), default="peer")
    token_a_hash: Mapped[str | None] = mapped_column(String(64), unique=True, default=None)
    incoming_token_hash: Mapped[str | None] = mapped_column(String(64), unique=True, default=None)
    outgoing_token_sealed: Mapped[str | None] = mapped_column(String(255), default=None)
    versions_url: Mapped[str | None] = mapped_column(String(255), default=None)
    version: Mapped[str | None] = mapped_column(String(16), default=None)
    endpoints: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    roles: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    flags: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    sessions_pulled_at: Mapped[datetime | None] = mapped_column(default=None)
    cdrs_pulled_at: Mapped[datetime | None] = mapped_column(default=None)
    locations_pulled_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    registered_at: Mapped[datetime | None] = mapped_column(default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
