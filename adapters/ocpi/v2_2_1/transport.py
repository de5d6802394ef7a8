"""OCPI 2.2.1 transport: status codes, envelopes, tokens, timestamps, pagination and message headers."""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import IntEnum
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from pydantic import BaseModel

OCPI_VERSION = "2.2.1"

AUTHORIZATION = "Authorization"
X_REQUEST_ID = "X-Request-ID"
X_CORRELATION_ID = "X-Correlation-ID"
X_TOTAL_COUNT = "X-Total-Count"
X_LIMIT = "X-Limit"
LINK = "Link"
OCPI_FROM_COUNTRY_CODE = "OCPI-from-country-code"
OCPI_FROM_PARTY_ID = "OCPI-from-party-id"
OCPI_TO_COUNTRY_CODE = "OCPI-to-country-code"
OCPI_TO_PARTY_ID = "OCPI-to-party-id"

# Routing headers SHALL NOT be sent on these configuration modules.
UNROUTED_MODULES = frozenset({"credentials", "versions", "hubclientinfo"})


class OcpiStatus(IntEnum):
    """OCPI status codes carried in the envelope's ``status_code``."""

    SUCCESS = 1000
    CLIENT_ERROR = 2000
    INVALID_OR_MISSING_PARAMETERS = 2001
    NOT_ENOUGH_INFORMATION = 2002
    UNKNOWN_LOCATION = 2003
    UNKNOWN_TOKEN = 2004
    SERVER_ERROR = 3000
    UNABLE_TO_USE_CLIENT_API = 3001
    UNSUPPORTED_VERSION = 3002
    NO_MATCHING_ENDPOINTS = 3003
    HUB_ERROR = 4000
    UNKNOWN_RECEIVER = 4001
    TIMEOUT_ON_FORWARDED_REQUEST = 4002
    CONNECTION_PROBLEM = 4003


def is_success(status_code: int) -> bool:
    """Return True for 1xxx codes (1000 and the custom 1900-1999 range)."""
    return 1000 <= status_code < 2000


# ---------------------------------------------------------------------------------------------- errors


class OcpiError(Exception):
    """An OCPI exchange failed; carries the OCPI status code, message and HTTP status when known."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        http_status: int | None = None,
        data: Any = None,
    ) -> None:
        super().__init__(f"{message} (ocpi={status_code}, http={http_status})")
        self.message = message
        self.status_code = status_code
        self.http_status = http_status
        self.data = data


class OcpiClientError(OcpiError):
    """The peer answered 2xxx: our request was wrong (2001 invalid parameters, 2003 unknown location...)."""


class OcpiServerError(OcpiError):
    """The peer answered 3xxx: it failed (3001 cannot use our API, 3002 version, 3003 endpoints)."""


class OcpiHubError(OcpiError):
    """A Hub answered 4xxx: routing or forwarding failed."""


class OcpiAuthError(OcpiError):
    """HTTP 401/403: token missing, unknown or not allowed on this module."""


class OcpiNotFound(OcpiError):
    """HTTP 404: the object or the URL does not exist on the peer."""


class OcpiMethodNotAllowed(OcpiError):
    """HTTP 405: credentials call in the wrong registration state (POST when registered, ...)."""


class OcpiHttpError(OcpiError):
    """Any other non-2xx HTTP answer (5xx, 429, 400 without envelope...)."""


class OcpiProtocolError(OcpiError):
    """The answer was not a valid OCPI envelope or its data did not match the expected model."""


def error_for_status(status_code: int, message: str, *, http_status: int | None = None, data: Any = None) -> OcpiError:
    """Map a non-success OCPI status code to the matching typed exception."""
    cls: type[OcpiError]
    if 2000 <= status_code < 3000:
        cls = OcpiClientError
    elif 3000 <= status_code < 4000:
        cls = OcpiServerError
    elif 4000 <= status_code < 5000:
        cls = OcpiHubError
    else:
        cls = OcpiProtocolError
    return cls(message, status_code=status_code, http_status=http_status, data=data)


# ------------------------------------------------------------------------------------------ timestamps

_DATETIME_RE = re.compile(
    r"^\s*(\d{4})-(\d{1,2})-(\d{1,2})[Tt ](\d{1,2}):(\d{1,2})(?::(\d{1,2})(?:[.,](\d+))?)?"
    r"\s*([Zz]|[+-]\d{2}(?::?\d{2})?)?\s*$"
)


def utc_now() -> datetime:
    """Current time, timezone-aware UTC."""
    return datetime.now(UTC)


def format_datetime(value: datetime) -> str:
    """Format as OCPI DateTime: UTC, ``Z`` suffix, fractions truncated to at most 3 decimals."""
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    millis = value.microsecond // 1000
    if millis:
        text += f".{millis:03d}"
    return text + "Z"


def parse_datetime(value: str | datetime) -> datetime:
    """Parse an OCPI DateTime leniently (Z, offset or none; any fraction; 1-digit fields) to aware UTC."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    match = _DATETIME_RE.match(value)
    if match is None:
        raise ValueError(f"not an OCPI DateTime: {value!r}")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    parsed = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second or 0), micro, tzinfo=UTC)
    if zone and zone not in ("Z", "z"):
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:4] or 0))
        parsed -= sign * offset
    return parsed


# ---------------------------------------------------------------------------------------------- tokens

# Lenient: "Token x" per spec, but tolerate "Bearer x" and a bare value from sloppy peers.
_TOKEN_PREFIX_RE = re.compile(r"^\s*(?:token|bearer)\s+", re.IGNORECASE)


def encode_token(token: str) -> str:
    """Base64 (standard alphabet, padded) of the UTF-8 token, as the Authorization header wants it."""
    return base64.b64encode(token.encode("utf-8")).decode("ascii")


def authorization_header(token: str, *, raw: bool = False) -> str:
    """Build the ``Token <...>`` header value; ``raw`` for legacy peers that don't Base64-encode."""
    return f"Token {token if raw else encode_token(token)}"


def _printable_token(text: str) -> bool:
    return bool(text) and all("!" <= char <= "~" for char in text)


def _b64_decoded(value: str) -> str | None:
    try:
        decoded = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    # Spec examples were made with `echo` and carry a trailing newline; tolerate it.
    decoded = decoded.rstrip("\r\n")
    return decoded if _printable_token(decoded) else None


def token_candidates(header: str | None) -> tuple[str, ...]:
    """All tokens an Authorization header may carry: the Base64-decoded value first, then the raw one."""
    if not header:
        return ()
    value = _TOKEN_PREFIX_RE.sub("", header).strip()
    if not value:
        return ()
    candidates: list[str] = []
    decoded = _b64_decoded(value)
    if decoded is not None:
        candidates.append(decoded)
    if _printable_token(value) and value not in candidates:
        candidates.append(value)
    return tuple(candidates)


def decode_token_header(header: str | None) -> str | None:
    """Best guess of the token in ``Token <base64-or-raw>``; use token_candidates to match stored tokens."""
    candidates = token_candidates(header)
    return candidates[0] if candidates else None


def match_token(header: str | None, known: Mapping[str, Any]) -> str | None:
    """Return the first candidate token from the header that is a key of ``known``."""
    for candidate in token_candidates(header):
        if candidate in known:
            return candidate
    return None


# ------------------------------------------------------------------------------------------- envelopes


def to_jsonable(data: Any) -> Any:
    """Turn models (and lists/dicts of them) into JSON-ready values, dropping None fields of models."""
    if isinstance(data, BaseModel):
        return data.model_dump(mode="json", exclude_none=True)
    if isinstance(data, list | tuple):
        return [to_jsonable(item) for item in data]
    if isinstance(data, dict):
        return {key: to_jsonable(value) for key, value in data.items()}
    if isinstance(data, datetime):
        return format_datetime(data)
    return data


def ocpi_response(
    data: Any = None,
    status_code: int = OcpiStatus.SUCCESS,
    status_message: str | None = None,
    *,
    timestamp: datetime | None = None,
    include_data: bool | None = None,
) -> dict[str, Any]:
    """Build the response envelope; ``data`` is omitted when None unless ``include_data`` forces it."""
    body: dict[str, Any] = {}
    if include_data or (include_data is None and data is not None):
        body["data"] = to_jsonable(data)
    body["status_code"] = int(status_code)
    if status_message is not None:
        body["status_message"] = status_message
    body["timestamp"] = format_datetime(timestamp or utc_now())
    return body


def ocpi_error(status_code: int, status_message: str, *, timestamp: datetime | None = None) -> dict[str, Any]:
    """Build an error envelope without data."""
    return ocpi_response(None, status_code, status_message, timestamp=timestamp)


def unwrap_single(data: Any) -> Any:
    """Accept a single object wrapped in a one-element list (a known peer quirk)."""
    if isinstance(data, list) and len(data) == 1:
        return data[0]
    return data


def ensure_list(data: Any) -> list[Any]:
    """Accept a list endpoint answering with a bare object or null."""
    if data is None:
        return []
    if isinstance(data, list):
        return data
    return [data]


# ---------------------------------------------------------------------------------------------- urls


def join_url(base: str, *segments: str) -> str:
    """Append path segments to a URL whatever its trailing-slash habit; keeps the query of ``base``."""
    parts = urlsplit(base)
    path = parts.path.rstrip("/")
    for segment in segments:
        if segment:
            path += "/" + segment.strip("/")
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, parts.fragment))


def with_query(url: str, params: Mapping[str, str | int | None]) -> str:
    """Return ``url`` with the given query parameters added (None values skipped)."""
    parts = urlsplit(url)
    extra = urlencode({key: value for key, value in params.items() if value is not None})
    query = f"{parts.query}&{extra}" if parts.query and extra else (parts.query or extra)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


# ------------------------------------------------------------------------------------------ pagination

_LINK_PART_RE = re.compile(r"<([^>]*)>\s*((?:;\s*[^;,]+)*)")
_LINK_PARAM_RE = re.compile(r";\s*([A-Za-z]+)\s*=\s*\"?([^\";]*)\"?")


def parse_link_header(value: str | None) -> dict[str, str]:
    """Parse an RFC 8288 Link header into ``{rel: url}``; empty or garbage headers give ``{}``."""
    links: dict[str, str] = {}
    if not value:
        return links
    for match in _LINK_PART_RE.finditer(value):
        url, params = match.group(1).strip(), match.group(2)
        if not url:
            continue
        for name, param_value in _LINK_PARAM_RE.findall(params):
            if name.lower() == "rel":
                for rel in param_value.split():
                    links.setdefault(rel.lower(), url)
    return links


def link_header(url: str, rel: str = "next") -> str:
    """Format one Link header value."""
    return f'<{url}>; rel="{rel}"'


def _int_header(headers: Mapping[str, str], name: str) -> int | None:
    raw = headers.get(name)
    if raw is None:
        return None
    try:
        return int(raw.strip())
    except ValueError:
        return None


@dataclass(frozen=True)
class PageInfo:
    """Pagination headers of one page: next URL (from Link), X-Total-Count and X-Limit."""

    next_url: str | None
    total_count: int | None
    limit: int | None

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> PageInfo:
        """Read the pagination headers (case-insensitive mapping such as ``httpx.Headers``)."""
        return cls(
            next_url=parse_link_header(headers.get(LINK)).get("next"),
            total_count=_int_header(headers, X_TOTAL_COUNT),
            limit=_int_header(headers, X_LIMIT),
        )


def pagination_headers(
    request_url: str,
    *,
    offset: int,
    limit: int,
    returned: int,
    total_count: int,
    max_limit: int,
) -> dict[str, str]:
    """Response headers for a page: X-Total-Count, X-Limit and a Link to the next page if there is one."""
    headers = {X_TOTAL_COUNT: str(total_count), X_LIMIT: str(max_limit)}
    next_offset = offset + returned
    if returned and next_offset < total_count:
        parts = urlsplit(request_url)
        kept = [p for p in parts.query.split("&") if p and not p.startswith(("offset=", "limit="))]
        kept += [f"offset={next_offset}", f"limit={limit}"]
        headers[LINK] = link_header(urlunsplit((parts.scheme, parts.netloc, parts.path, "&".join(kept), "")))
    return headers


# --------------------------------------------------------------------------------- ids and routing


def new_request_id() -> str:
    """A fresh UUID4 string for X-Request-ID / X-Correlation-ID."""
    return str(uuid.uuid4())


def message_id_headers(correlation_id: str | None = None, *, request_id: str | None = None) -> dict[str, str]:
    """X-Request-ID and X-Correlation-ID (each given or new)."""
    return {X_REQUEST_ID: request_id or new_request_id(), X_CORRELATION_ID: correlation_id or new_request_id()}


def echo_id_headers(request_headers: Mapping[str, str]) -> dict[str, str]:
    """Response headers echoing the request's X-Request-ID and X-Correlation-ID (new ones if absent)."""
    request_id = request_headers.get(X_REQUEST_ID) or new_request_id()
    return {X_REQUEST_ID: request_id, X_CORRELATION_ID: request_headers.get(X_CORRELATION_ID) or request_id}


@dataclass(frozen=True)
class PartyRef:
    """A party on the wire: ISO 3166 alpha-2 country code and 3-character party id."""

    country_code: str
    party_id: str

    @classmethod
    def parse(cls, text: str) -> PartyRef:
        """Parse ``"NL/CPA"`` or ``"NL-CPA"`` or ``"NLCPA"``."""
        cleaned = text.strip().replace("-", "/").replace("*", "/")
        if "/" in cleaned:
            country, party = cleaned.split("/", 1)
        else:
            country, party = cleaned[:2], cleaned[2:]
        if len(country) != 2 or len(party) != 3:
            raise ValueError(f"party must look like CC/PID (2 + 3 characters): {text!r}")
        return cls(country.upper(), party.upper())

    def __str__(self) -> str:
        return f"{self.country_code}/{self.party_id}"

    def same_as(self, other: PartyRef) -> bool:
        """CiString comparison: case-insensitive."""
        return (
            self.country_code.casefold() == other.country_code.casefold()
            and self.party_id.casefold() == other.party_id.casefold()
        )


def routing_headers(sender: PartyRef | None, receiver: PartyRef | None) -> dict[str, str]:
    """OCPI-from-* / OCPI-to-* headers for a functional-module request (either side may be omitted)."""
    headers: dict[str, str] = {}
    if sender is not None:
        headers[OCPI_FROM_COUNTRY_CODE] = sender.country_code
        headers[OCPI_FROM_PARTY_ID] = sender.party_id
    if receiver is not None:
        headers[OCPI_TO_COUNTRY_CODE] = receiver.country_code
        headers[OCPI_TO_PARTY_ID] = receiver.party_id
    return headers


@dataclass(frozen=True)
class Routing:
    """Routing headers read from a request; either party is None when its headers are missing."""

    sender: PartyRef | None
    receiver: PartyRef | None

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> Routing:
        """Read OCPI-from/to headers leniently (absent or malformed gives None)."""
        return cls(
            _party_from(headers, OCPI_FROM_COUNTRY_CODE, OCPI_FROM_PARTY_ID),
            _party_from(headers, OCPI_TO_COUNTRY_CODE, OCPI_TO_PARTY_ID),
        )

    def reply_headers(self) -> dict[str, str]:
        """Routing headers for the response: from and to swapped."""
        return routing_headers(self.receiver, self.sender)


def _party_from(headers: Mapping[str, str], country_header: str, party_header: str) -> PartyRef | None:
    country, party = headers.get(country_header), headers.get(party_header)
    if not country or not party:
        return None
    return PartyRef(country.strip(), party.strip())
