"""What the OCPI adapter needs at run time, built once per process by its composition root."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
from sqlalchemy.orm import Session, sessionmaker

from adapters.ocpi.v2_2_1.schemas import BusinessDetails, Credentials, CredentialsRole, Role
from adapters.ocpi.v2_2_1.transport import OCPI_VERSION, PartyRef, join_url
from vpp.keyring import Keyring, derive_key
from vpp.ocpi.settings import OcpiSettings
from vpp.ports import TaskQueue

HttpFactory = Callable[[], httpx.AsyncClient]


def default_http_factory(timeout_s: float) -> HttpFactory:
    """A factory of plain outbound clients with a timeout."""

    def build() -> httpx.AsyncClient:
        return httpx.AsyncClient(timeout=timeout_s)

    return build


@dataclass
class OcpiContext:
    """Settings, database, outbound HTTP and task queue of the OCPI adapter."""

    session_factory: sessionmaker[Session]
    public_url: str
    pepper: str
    settings: OcpiSettings = field(default_factory=OcpiSettings)
    http_factory: HttpFactory | None = None
    task_queue: TaskQueue | None = None
    keyring: Keyring | None = None

    @property
    def token_keyring(self) -> Keyring:
        """The keys sealing the tokens we present to peers (``Settings.token_keyring``; else derived from the pepper,
        as the settings derive it when VPP_TOKEN_KEY is unset)."""
        return self.keyring or Keyring.of(derive_key(self.pepper))

    def http(self) -> httpx.AsyncClient:
        """A new outbound client (the caller closes it)."""
        factory = self.http_factory or default_http_factory(self.settings.http_timeout_seconds)
        return factory()

    @property
    def versions_url(self) -> str:
        """Our version information endpoint."""
        return join_url(self.public_url, "ocpi/versions")

    @property
    def details_url(self) -> str:
        """Our 2.2.1 version details endpoint."""
        return join_url(self.public_url, "ocpi", OCPI_VERSION)

    def module_url(self, module: str) -> str:
        """Base URL of one of our 2.2.1 modules."""
        return join_url(self.public_url, "ocpi", OCPI_VERSION, module)

    @property
    def party(self) -> PartyRef:
        """Our party."""
        return PartyRef(self.settings.country_code, self.settings.party_id)

    def own_credentials(self, token: str) -> Credentials:
        """Our credentials object carrying the token the peer is to use with us."""
        role = CredentialsRole(
            role=Role.SCSP,
            business_details=BusinessDetails(name=self.settings.business_name, website=self.settings.website),
            party_id=self.settings.party_id,
            country_code=self.settings.country_code,
        )
        return Credentials(token=token, url=self.versions_url, roles=[role])

    def enqueue(self, task_name: str, **kwargs: object) -> None:
        """Enqueue a background task if a queue is wired (call after commit)."""
        if self.task_queue is not None:
            self.task_queue.enqueue(task_name, **kwargs)
