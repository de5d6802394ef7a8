"""Keep-alive HTTP/1.1 connections to one origin for many small requests: ChargingProfiles at dispatch speed.

A dispatch cycle may send ten thousand ChargingProfile PUTs within a second or two. httpx spends about a
millisecond of CPU on each (request and response models, header objects, its connection pool), which is most of
the time budget; here a request is bytes written on an idle connection and its answer is parsed by httptools (C),
which handles Content-Length, chunked and read-until-close bodies. Idempotent requests only (PUT, DELETE, GET):
one that fails on a reused connection before any byte of its answer arrived is sent once more on a fresh one,
as the server may have closed the idle connection at that moment.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast
from urllib.parse import quote, urlsplit

import httptools


class Http1Error(Exception):
    """A request that got no complete answer: refused, reset, timed out or malformed."""


class _Reset(Http1Error):
    """The connection closed before any byte of the answer (safe to retry an idempotent request)."""


@dataclass(frozen=True, slots=True)
class Http1Answer:
    """An answer: status code, reason phrase and body."""

    status: int
    reason: str
    body: bytes


@dataclass(frozen=True, slots=True)
class Origin:
    """Where requests go: scheme, host and port, and the Host header value."""

    scheme: str
    host: str
    port: int

    @classmethod
    def of(cls, url: str) -> Origin:
        """The origin of an http or https URL."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return cls(parts.scheme, parts.hostname, port)

    @property
    def host_header(self) -> str:
        """The Host header: the port only when it is not the scheme's default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


_PATH_SAFE = "/%:@!$&'()*+,;=-._~"


class RequestTemplate:
    """Requests below one base URL that differ only in the path's tail, the message ids and the body.

    The request line's prefix and the fixed headers are rendered once; a request is then one string format.
    """

    def __init__(self, base_url: str, headers: Mapping[str, str]) -> None:
        parts = urlsplit(base_url)
        self.origin = Origin.of(base_url)
        self.path = quote(parts.path or "/", safe=_PATH_SAFE)
        self.query = parts.query
        fixed = [f"Host: {self.origin.host_header}", *(f"{name}: {value}" for name, value in headers.items())]
        self._fixed = "\r\n".join(fixed) + "\r\n"

    def render(self, method: str, tail: str = "", *, query: str = "", headers: Mapping[str, str] | None = None,
               body: bytes = b"") -> bytes:
        """One request: ``tail`` (quoted here) appended to the base path, ``query`` to its query."""
        target = self.path + quote(tail, safe=_PATH_SAFE) if tail else self.path
        query = "&".join(q for q in (self.query, query) if q)
        if query:
            target += "?" + query
        head = f"{method} {target} HTTP/1.1\r\n{self._fixed}"
        if headers:
            head += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        if body or method in ("PUT", "POST", "PATCH"):
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        return (head + "\r\n").encode("latin-1") + body


def build_request(method: str, url: str, origin: Origin, headers: Mapping[str, str], body: bytes) -> bytes:
    """The bytes of one request to ``origin`` (which ``url`` must be on); a JSON body when there is one."""
    template = RequestTemplate(url, headers)
    if template.origin != origin:
        raise ValueError(f"{url} is not on {origin.scheme}://{origin.host_header}")
    return template.render(method, body=body)


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one request at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[Http1Answer] | None = None
        self._chunks: list[bytes] = []
        self._reason = b""
        self._started = False
        self._until_close = True
        self._header_name = b""
        self.reusable = False

    # -------------------------------------------------------------------------------- transport events

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(Http1Error("the server switched protocols"))
        except httptools.HttpParserError as exc:
            self._fail(Http1Error(f"malformed HTTP answer: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.reusable = False
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if self._started and self._until_close:
            # A body delimited by the end of the connection is complete now.
            self._complete()
            return
        if self._started:
            waiter.set_exception(Http1Error(f"connection closed mid-answer: {exc!r}"))
        else:
            waiter.set_exception(_Reset(f"connection closed before an answer: {exc!r}"))

    # ---------------------------------------------------------------------------- parser callbacks

    def on_message_begin(self) -> None:
        self._started = True
        self._chunks = []
        self._until_close = True

    def on_status(self, status: bytes) -> None:
        self._reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        if name:
            self._header_name = name.lower()
        if self._header_name in (b"content-length", b"transfer-encoding"):
            self._until_close = False

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)

    def on_message_complete(self) -> None:
        self.reusable = bool(self._parser.should_keep_alive())
        self._complete()
        if not self.reusable and self.transport is not None:
            self.transport.close()

    # ------------------------------------------------------------------------------------ requests

    def _complete(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(Http1Answer(self._parser.get_status_code(), self._reason.decode("latin-1"),
                                          b"".join(self._chunks)))

    def _fail(self, error: Http1Error) -> None:
        self.reusable = False
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(error)
        if self.transport is not None:
            self.transport.close()

    @property
    def open(self) -> bool:
        """Usable for another request."""
        return self.reusable and self.transport is not None and not self.transport.is_closing()

    async def exchange(self, request: bytes, timeout_s: float) -> Http1Answer:
        """Write one request and wait for its whole answer."""
        assert self.transport is not None
        waiter: asyncio.Future[Http1Answer] = self._loop.create_future()
        self._waiter = waiter
        self._reason, self._started, self.reusable = b"", False, False
        self.transport.write(request)
        timer = self._loop.call_later(timeout_s, self._fail, Http1Error(f"no answer within {timeout_s} s"))
        try:
            return await waiter
        finally:
            timer.cancel()
            self._waiter = None

    def close(self) -> None:
        """Close the connection."""
        self.reusable = False
        if self.transport is not None:
            self.transport.close()


class Http1Pool:
    """Up to ``size`` keep-alive connections to one origin; requests beyond that wait for a free connection."""

    def __init__(self, origin: Origin, *, size: int, timeout_s: float, ssl_context: ssl.SSLContext | None = None
                 ) -> None:
        self.origin = origin
        self.timeout_s = timeout_s
        self._ssl = ssl_context if origin.scheme == "https" and ssl_context is not None else (
            ssl.create_default_context() if origin.scheme == "https" else None)
        self._slots = asyncio.Semaphore(max(1, size))
        self._idle: list[_Connection] = []
        self._all: set[_Connection] = set()
        self.connects = 0

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.timeout_s):
                _transport, connection = await loop.create_connection(
                    lambda: _Connection(loop), self.origin.host, self.origin.port, ssl=self._ssl)
        except (OSError, TimeoutError) as exc:
            raise Http1Error(f"cannot connect to {self.origin.host}:{self.origin.port}: {exc!r}") from exc
        self.connects += 1
        self._all.add(connection)
        return connection

    async def request(self, request: bytes) -> Http1Answer:
        """Send a complete request (head and body) and return its answer."""
        async with self._slots:
            while self._idle:
                connection = self._idle.pop()
                if connection.open:
                    break
                self._all.discard(connection)
            else:
                connection = await self._connect()
            try:
                answer = await connection.exchange(request, self.timeout_s)
            except _Reset:
                # The server closed the idle connection as we wrote: once more on a fresh connection.
                self._all.discard(connection)
                connection = await self._connect()
                answer = await self._exchange_once(connection, request)
            except BaseException:  # an error, or cancelled mid-answer: the connection's state is unknown
                self._all.discard(connection)
                connection.close()
                raise
            if connection.open:
                self._idle.append(connection)
            else:
                self._all.discard(connection)
            return answer

    async def _exchange_once(self, connection: _Connection, request: bytes) -> Http1Answer:
        try:
            return await connection.exchange(request, self.timeout_s)
        except BaseException:
            self._all.discard(connection)
            connection.close()
            raise

    def close(self) -> None:
        """Close every connection."""
        for connection in self._all:
            connection.close()
        self._all.clear()
        self._idle.clear()
