"""Outbound OCPI 2.2.1 client of the SCSP: handshake, paginated pulls and ChargingProfiles on a CPO."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

import httpx
from pydantic import ValidationError

from adapters.ocpi.v2_2_1.schemas import (
    Cdr,
    ChargingProfile,
    ChargingProfileResponse,
    ChargingProfileResponseType,
    Credentials,
    InterfaceRole,
    Location,
    ModuleID,
    OcpiModel,
    OcpiResponse,
    Session,
    SetChargingProfile,
    Version,
    VersionDetails,
)
from adapters.ocpi.v2_2_1.transport import (
    AUTHORIZATION,
    OCPI_VERSION,
    UNROUTED_MODULES,
    OcpiAuthError,
    OcpiError,
    OcpiHttpError,
    OcpiMethodNotAllowed,
    OcpiNotFound,
    OcpiProtocolError,
    OcpiStatus,
    PageInfo,
    PartyRef,
    authorization_header,
    ensure_list,
    error_for_status,
    format_datetime,
    is_success,
    join_url,
    message_id_headers,
    new_request_id,
    routing_headers,
    unwrap_single,
)

__all__ = [
    "OcpiAuthError",
    "OcpiClient",
    "OcpiError",
    "OcpiHttpError",
    "OcpiMethodNotAllowed",
    "OcpiNotFound",
    "OcpiProtocolError",
    "Page",
]

logger = logging.getLogger(__name__)

ModelT = TypeVar("ModelT", bound=OcpiModel)

# Guards against peers whose Link header points back at the same page forever.
MAX_PAGES = 10_000


@dataclass(frozen=True)
class Page(Generic[ModelT]):
    """One page of a paginated pull: the valid items, the raw count and the pagination headers."""

    items: list[ModelT]
    received: int
    info: PageInfo
    url: str


def _page_size(requested: int | None, server_max: int | None) -> int | None:
    """Effective page size: the smaller of our limit and the server's X-Limit."""
    sizes = [size for size in (requested, server_max) if size]
    return min(sizes) if sizes else None


def envelope_of(body: bytes) -> OcpiResponse | None:
    """The OCPI envelope in an answer's body, or None when there is none."""
    try:
        return OcpiResponse.model_validate_json(body)
    except (ValueError, ValidationError):
        return None


def raise_for_answer(where: str, http_status: int, reason: str, envelope: OcpiResponse | None) -> None:
    """Raise the OcpiError an answer stands for (HTTP status first, then the envelope's status code)."""
    code = envelope.status_code if envelope else None
    message = (envelope.status_message if envelope else None) or reason or ""
    data = envelope.data if envelope else None
    if http_status in (401, 403):
        raise OcpiAuthError(f"{where}: {message}", status_code=code, http_status=http_status)
    if http_status == 404:
        raise OcpiNotFound(f"{where}: {message}", status_code=code, http_status=http_status, data=data)
    if http_status == 405:
        raise OcpiMethodNotAllowed(f"{where}: {message}", status_code=code, http_status=http_status)
    if http_status >= 300:
        raise OcpiHttpError(f"{where}: {message}", status_code=code, http_status=http_status, data=data)
    if envelope is None:
        raise OcpiProtocolError(f"{where}: answer is not an OCPI envelope", http_status=http_status)
    if not is_success(envelope.status_code):
        raise error_for_status(envelope.status_code, f"{where}: {message}", http_status=http_status, data=data)


_PROFILE_RESULTS = {member.value: member for member in ChargingProfileResponseType}


def _plain_profile_answer(body: bytes) -> ChargingProfileResponse | None:
    """The common answer (an envelope with status_code 1000, a timestamp and a ChargingProfileResponse) read
    without the models; None for anything else, which then goes the validated way."""
    try:
        envelope = json.loads(body)
    except ValueError:
        return None
    if not isinstance(envelope, dict) or envelope.get("status_code") != OcpiStatus.SUCCESS or not isinstance(
            envelope.get("timestamp"), str):
        return None
    data = unwrap_single(envelope.get("data"))
    if not isinstance(data, dict):
        return None
    result = _PROFILE_RESULTS.get(data.get("result"))  # type: ignore[arg-type]
    timeout = data.get("timeout")
    if result is None or type(timeout) is not int or timeout < 0:
        return None
    return ChargingProfileResponse.model_construct(result=result, timeout=timeout)


def profile_answer(where: str, http_status: int, reason: str, body: bytes) -> ChargingProfileResponse:
    """The ChargingProfileResponse in an answer to a ChargingProfiles call, or the OcpiError it stands for.

    Peers answer negative outcomes as 1000+UNKNOWN_SESSION or 2000(+HTTP 404)+REJECTED: a parseable
    ChargingProfileResponse is the answer whatever envelope code carries it.
    """
    if http_status == 200:
        quick = _plain_profile_answer(body)
        if quick is not None:
            return quick
    envelope = envelope_of(body)
    if envelope is not None and http_status < 500 and http_status not in (401, 403):
        try:
            return ChargingProfileResponse.model_validate(unwrap_single(envelope.data))
        except ValidationError:
            pass
    raise_for_answer(where, http_status, reason, envelope)
    raise OcpiProtocolError(
        f"{where}: no ChargingProfileResponse in answer",
        status_code=envelope.status_code if envelope else None,
        http_status=http_status,
        data=envelope.data if envelope else None,
    )


class OcpiClient:
    """Calls one peer platform; holds the token we present to it and (after discovery) its endpoints."""

    def __init__(
        self,
        http: httpx.AsyncClient | None,
        *,
        versions_url: str,
        token: str,
        raw_token: bool = False,
        own_party: PartyRef | None = None,
        peer_party: PartyRef | None = None,
        details: VersionDetails | None = None,
        page_limit: int | None = None,
        follow_links: bool = True,
    ) -> None:
        self._http = http
        self.versions_url = versions_url
        self.token = token
        self.raw_token = raw_token
        self.own_party = own_party
        self.peer_party = peer_party
        self.details = details
        self.page_limit = page_limit
        self.follow_links = follow_links

    # ------------------------------------------------------------------------------ plumbing

    def request_headers(self, module: str, correlation_id: str | None = None, *, request_id: str | None = None
                        ) -> dict[str, str]:
        """Authorization, message ids (new ones unless given) and (for functional modules) routing headers."""
        headers = {AUTHORIZATION: authorization_header(self.token, raw=self.raw_token)}
        headers.update(message_id_headers(correlation_id, request_id=request_id))
        if module not in UNROUTED_MODULES:
            headers.update(routing_headers(self.own_party, self.peer_party))
        return headers

    async def _send(
        self,
        method: str,
        url: str,
        *,
        module: str,
        json: Any = None,
        params: Mapping[str, str | int] | None = None,
        correlation_id: str | None = None,
    ) -> httpx.Response:
        if self._http is None:
            raise OcpiHttpError(f"{method} {url}: this client was made without an HTTP client")
        try:
            return await self._http.request(
                method, url, headers=self.request_headers(module, correlation_id), json=json, params=params
            )
        except httpx.HTTPError as exc:
            raise OcpiHttpError(f"{method} {url} failed: {exc!r}") from exc

    @staticmethod
    def _envelope(response: httpx.Response) -> OcpiResponse | None:
        return envelope_of(response.content)

    @staticmethod
    def _raise_for(response: httpx.Response, envelope: OcpiResponse | None) -> None:
        raise_for_answer(f"{response.request.method} {response.request.url}", response.status_code,
                         response.reason_phrase, envelope)

    async def _call(
        self,
        method: str,
        url: str,
        *,
        module: str,
        json: Any = None,
        params: Mapping[str, str | int] | None = None,
        correlation_id: str | None = None,
    ) -> tuple[OcpiResponse, httpx.Response]:
        response = await self._send(method, url, module=module, json=json, params=params, correlation_id=correlation_id)
        envelope = self._envelope(response)
        self._raise_for(response, envelope)
        assert envelope is not None
        return envelope, response

    @staticmethod
    def _parse(model: type[ModelT], data: Any, what: str) -> ModelT:
        try:
            return model.model_validate(unwrap_single(data))
        except ValidationError as exc:
            raise OcpiProtocolError(f"{what}: invalid {model.__name__}: {exc}", data=data) from exc

    # ---------------------------------------------------------------------- versions, details

    async def get_versions(self, url: str | None = None) -> list[Version]:
        """GET the version information endpoint."""
        envelope, _ = await self._call("GET", url or self.versions_url, module="versions")
        try:
            return [Version.model_validate(item) for item in ensure_list(envelope.data)]
        except ValidationError as exc:
            raise OcpiProtocolError(f"invalid versions list: {exc}", data=envelope.data) from exc

    async def get_version_details(self, url: str) -> VersionDetails:
        """GET one version's details (its endpoint list)."""
        envelope, _ = await self._call("GET", url, module="versions")
        return self._parse(VersionDetails, envelope.data, "version details")

    async def discover(self, version: str = OCPI_VERSION) -> VersionDetails:
        """Fetch versions, pick ``version`` and store its endpoints on the client."""
        versions = await self.get_versions()
        chosen = next((item for item in versions if item.version == version), None)
        if chosen is None:
            raise OcpiProtocolError(
                f"peer does not offer OCPI {version} (offers {[v.version for v in versions]})",
                status_code=OcpiStatus.UNSUPPORTED_VERSION,
            )
        self.details = await self.get_version_details(chosen.url)
        return self.details

    def endpoint_url(self, module: str, role: InterfaceRole | None = None) -> str:
        """URL of a discovered module endpoint; prefers ``role`` but accepts any role as a fallback."""
        if self.details is None:
            raise OcpiProtocolError("endpoints unknown: call discover() first")
        url = self.details.endpoint_url(module, role)
        if url is None and role is not None:
            url = self.details.endpoint_url(module)
        if url is None:
            raise OcpiProtocolError(f"peer offers no {module} endpoint", status_code=OcpiStatus.NO_MATCHING_ENDPOINTS)
        return url

    # ------------------------------------------------------------------------------- credentials

    async def get_credentials(self) -> Credentials:
        """GET the peer's credentials object for us."""
        envelope, _ = await self._call("GET", self.endpoint_url(ModuleID.CREDENTIALS), module="credentials")
        return self._parse(Credentials, envelope.data, "credentials")

    async def register(self, own: Credentials) -> Credentials:
        """POST our credentials (token B) with token A; returns the peer's (token C) and switches to it."""
        return await self._exchange("POST", own)

    async def update_credentials(self, own: Credentials) -> Credentials:
        """PUT new credentials (rotation / new endpoints); returns the peer's and switches to its token."""
        return await self._exchange("PUT", own)

    async def _exchange(self, method: str, own: Credentials) -> Credentials:
        url = self.endpoint_url(ModuleID.CREDENTIALS)
        envelope, _ = await self._call(method, url, module="credentials", json=own.to_json_dict())
        theirs = self._parse(Credentials, envelope.data, "credentials")
        self.token = theirs.token
        return theirs

    async def unregister(self) -> None:
        """DELETE our registration on the peer."""
        await self._call("DELETE", self.endpoint_url(ModuleID.CREDENTIALS), module="credentials")

    # ------------------------------------------------------------------------------- paginated pull

    async def pull_pages(
        self,
        module: str,
        model: type[ModelT],
        *,
        date_from: datetime | None = None,
        date_to: datetime | None = None,
        offset: int = 0,
        limit: int | None = None,
        url: str | None = None,
        correlation_id: str | None = None,
    ) -> AsyncIterator[Page[ModelT]]:
        """GET a Sender list page by page, following Link; without Link, continues while pages are full.

        With ``follow_links`` off the Link header is ignored: pages continue by offset and X-Total-Count.
        """
        base = url or self.endpoint_url(module, InterfaceRole.SENDER)
        filters: dict[str, str | int] = {}
        if date_from is not None:
            filters["date_from"] = format_datetime(date_from)
        if date_to is not None:
            filters["date_to"] = format_datetime(date_to)
        limit = limit or self.page_limit
        next_url: str | None = base
        params: dict[str, str | int] | None = {**filters, "offset": offset}
        if limit is not None and params is not None:
            params["limit"] = limit
        correlation_id = correlation_id or new_request_id()
        seen_urls: set[str] = set()
        for _ in range(MAX_PAGES):
            if next_url is None:
                return
            envelope, response = await self._call(
                "GET", next_url, module=module, params=params, correlation_id=correlation_id
            )
            raw_items = ensure_list(envelope.data)
            items = [item for item in (self._item(model, raw) for raw in raw_items) if item is not None]
            info = PageInfo.from_headers(response.headers)
            page_url = str(response.request.url)
            seen_urls.add(page_url)
            yield Page(items, len(raw_items), info, page_url)
            offset += len(raw_items)
            if info.next_url and self.follow_links:
                next_url = str(response.request.url.join(info.next_url))
                params = None
                if next_url in seen_urls:
                    logger.warning("pagination loop at %s; stopping", next_url)
                    return
            elif self._more_without_link(info, len(raw_items), offset, limit):
                next_url = base
                params = {**filters, "offset": offset}
                page_size = _page_size(limit, info.limit)
                if page_size is not None:
                    params["limit"] = page_size
            else:
                return
        logger.warning("pagination stopped after %d pages at %s", MAX_PAGES, base)

    @staticmethod
    def _more_without_link(info: PageInfo, received: int, offset: int, limit: int | None) -> bool:
        if received == 0:
            return False
        if info.total_count is not None:
            return offset < info.total_count
        # No Link and no count: only a full page hints that more may follow.
        page_size = _page_size(limit, info.limit)
        return page_size is not None and received >= page_size

    @staticmethod
    def _item(model: type[ModelT], raw: Any) -> ModelT | None:
        try:
            return model.model_validate(raw)
        except ValidationError as exc:
            # One sloppy object must not abort a resync; it is logged and skipped.
            object_id = raw.get("id") if isinstance(raw, dict) else None
            logger.warning("skipping invalid %s %r: %s", model.__name__, object_id, exc)
            return None

    async def pull(
        self,
        module: str,
        model: type[ModelT],
        *,
        date_from: datetime | None = None,
        date_to: datetime | None = None,
        offset: int = 0,
        limit: int | None = None,
    ) -> AsyncIterator[ModelT]:
        """All valid objects of a Sender list, across pages."""
        async for page in self.pull_pages(
            module, model, date_from=date_from, date_to=date_to, offset=offset, limit=limit
        ):
            for item in page.items:
                yield item

    def pull_sessions(
        self, date_from: datetime, date_to: datetime | None = None, *, limit: int | None = None
    ) -> AsyncIterator[Session]:
        """Sessions changed in [date_from, date_to) from the CPO's Sessions sender (date_from is required)."""
        return self.pull(ModuleID.SESSIONS, Session, date_from=date_from, date_to=date_to, limit=limit)

    def pull_cdrs(
        self, date_from: datetime | None = None, date_to: datetime | None = None, *, limit: int | None = None
    ) -> AsyncIterator[Cdr]:
        """CDRs from the CPO's CDRs sender."""
        return self.pull(ModuleID.CDRS, Cdr, date_from=date_from, date_to=date_to, limit=limit)

    def pull_locations(
        self, date_from: datetime | None = None, date_to: datetime | None = None, *, limit: int | None = None
    ) -> AsyncIterator[Location]:
        """Locations from the CPO's Locations sender."""
        return self.pull(ModuleID.LOCATIONS, Location, date_from=date_from, date_to=date_to, limit=limit)

    # --------------------------------------------------------------------------- charging profiles

    def profile_url(self, session_id: str) -> str:
        """The CPO's ChargingProfiles receiver URL of one session."""
        return join_url(self.endpoint_url(ModuleID.CHARGING_PROFILES, InterfaceRole.RECEIVER), session_id)

    async def _profile_call(
        self,
        method: str,
        session_id: str,
        *,
        json: Any = None,
        params: Mapping[str, str | int] | None = None,
        correlation_id: str | None = None,
    ) -> ChargingProfileResponse:
        response = await self._send(
            method,
            self.profile_url(session_id),
            module=ModuleID.CHARGING_PROFILES,
            json=json,
            params=params,
            correlation_id=correlation_id,
        )
        return profile_answer(f"{method} {response.request.url}", response.status_code, response.reason_phrase,
                              response.content)

    async def set_charging_profile(
        self,
        session_id: str,
        profile: ChargingProfile,
        response_url: str,
        *,
        correlation_id: str | None = None,
    ) -> ChargingProfileResponse:
        """PUT a profile on a running session; the async ChargingProfileResult goes to response_url."""
        body = SetChargingProfile(charging_profile=profile, response_url=response_url)
        return await self._profile_call("PUT", session_id, json=body.to_json_dict(), correlation_id=correlation_id)

    async def get_active_charging_profile(
        self,
        session_id: str,
        duration_s: int,
        response_url: str,
        *,
        correlation_id: str | None = None,
    ) -> ChargingProfileResponse:
        """Ask for the active profile over ``duration_s``; the ActiveChargingProfileResult comes async."""
        params: dict[str, str | int] = {"duration": duration_s, "response_url": response_url}
        return await self._profile_call("GET", session_id, params=params, correlation_id=correlation_id)

    async def clear_charging_profile(
        self, session_id: str, response_url: str, *, correlation_id: str | None = None
    ) -> ChargingProfileResponse:
        """DELETE our profile on the session; the ClearProfileResult comes async."""
        params = {"response_url": response_url}
        return await self._profile_call("DELETE", session_id, params=params, correlation_id=correlation_id)
