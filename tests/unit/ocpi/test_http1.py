"""The lean HTTP/1.1 pool against a real socket server, on asyncio's loop and on uvloop's."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import uvloop

from adapters.ocpi.v2_2_1.http1 import Http1Error, Http1Pool, Origin, build_request

Handler = Callable[[bytes, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[bool]]


def _on_both_loops(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(test())
    uvloop.run(test())


class _Server:
    """A socket server answering each request with ``handler`` (which says whether to keep the connection)."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.open_now = 0
        self.most_open = 0
        self.requests: list[bytes] = []
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> _Server:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *_: Any) -> None:
        assert self._server is not None
        self._server.close()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open_now += 1
        self.most_open = max(self.most_open, self.open_now)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                if not await self.handler(request, reader, writer):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.open_now -= 1
            writer.close()


async def _json_ok(request: bytes, _: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    body = b'{"status_code":1000}'
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                 % (len(body), body))
    await writer.drain()
    return True


def _put(url: str, origin: Origin, body: bytes = b'{"a":1}') -> bytes:
    return build_request("PUT", url + "/ocpi/cpo/2.2.1/chargingprofiles/s1", origin,
                         {"Authorization": "Token abc"}, body)


def test_requests_reuse_one_keep_alive_connection_and_carry_their_headers_and_body() -> None:
    async def run() -> None:
        async with _Server(_json_ok) as server:
            origin = Origin.of(server.url)
            pool = Http1Pool(origin, size=4, timeout_s=5)
            for _ in range(5):
                answer = await pool.request(_put(server.url, origin))
                assert (answer.status, answer.reason, answer.body) == (200, "OK", b'{"status_code":1000}')
            pool.close()
        assert server.connections == 1
        head, body = server.requests[0].split(b"\r\n\r\n")
        assert head.startswith(b"PUT /ocpi/cpo/2.2.1/chargingprofiles/s1 HTTP/1.1\r\n")
        assert b"\r\nAuthorization: Token abc" in head and b"\r\nContent-Length: 7" in head
        assert b"\r\nHost: 127.0.0.1:" in head and b"\r\nContent-Type: application/json" in head
        assert body == b'{"a":1}'

    _on_both_loops(run)


def test_chunked_and_close_delimited_answers_are_read_whole() -> None:
    async def chunked(_: bytes, __: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        await writer.drain()
        return True

    async def until_close(_: bytes, __: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{\"status_code\":")
        await writer.drain()
        await asyncio.sleep(0.01)
        writer.write(b"1000}")
        await writer.drain()
        return False

    async def run() -> None:
        async with _Server(chunked) as server:
            origin = Origin.of(server.url)
            pool = Http1Pool(origin, size=1, timeout_s=5)
            answer = await pool.request(_put(server.url, origin))
            assert (answer.status, answer.reason, answer.body) == (404, "Not Found", b"hello world")
            pool.close()
        async with _Server(until_close) as server:
            origin = Origin.of(server.url)
            pool = Http1Pool(origin, size=1, timeout_s=5)
            for _ in range(2):
                assert (await pool.request(_put(server.url, origin))).body == b'{"status_code":1000}'
            pool.close()
        assert server.connections == 2  # the server closed after each answer

    _on_both_loops(run)


def test_an_idle_connection_closed_by_the_server_is_replaced_without_losing_the_request() -> None:
    async def once(request: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        await _json_ok(request, reader, writer)
        return False  # closes without saying so: the client only finds out on its next request

    async def run() -> None:
        async with _Server(once) as server:
            origin = Origin.of(server.url)
            pool = Http1Pool(origin, size=1, timeout_s=5)
            for _ in range(3):
                assert (await pool.request(_put(server.url, origin))).status == 200
                await asyncio.sleep(0.02)
            pool.close()
        assert server.connections == 3 and len(server.requests) == 3

    _on_both_loops(run)


def test_timeouts_refusals_and_garbage_are_errors_and_the_connection_is_not_reused() -> None:
    async def slow(request: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        if len([r for r in server_requests if r]) == 1:
            await asyncio.sleep(1.0)
        await _json_ok(request, reader, writer)
        return True

    async def garbage(_: bytes, __: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"SMTP ready\r\n\r\n")
        await writer.drain()
        return True

    server_requests: list[bytes] = []

    async def run() -> None:
        server_requests.clear()
        async with _Server(slow) as server:
            server_requests.append(b"x")
            origin = Origin.of(server.url)
            pool = Http1Pool(origin, size=1, timeout_s=0.2)
            with pytest.raises(Http1Error, match="no answer within"):
                await pool.request(_put(server.url, origin))
            server_requests.append(b"y")
            assert (await pool.request(_put(server.url, origin))).status == 200
            pool.close()
            assert server.connections == 2
        async with _Server(garbage) as server:
            url = server.url
            origin = Origin.of(url)
            with pytest.raises(Http1Error, match="malformed"):
                await Http1Pool(origin, size=1, timeout_s=2).request(_put(url, origin))
        # Nothing listens there any more.
        with pytest.raises(Http1Error, match="cannot connect"):
            await Http1Pool(origin, size=1, timeout_s=2).request(_put(url, origin))

    _on_both_loops(run)


def test_no_more_connections_than_the_pool_size_are_open_at_once() -> None:
    async def delayed(request: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(0.005)
        return await _json_ok(request, reader, writer)

    async def run() -> None:
        async with _Server(delayed) as server:
            origin = Origin.of(server.url)
            pool = Http1Pool(origin, size=3, timeout_s=5)
            answers = await asyncio.gather(*(pool.request(_put(server.url, origin)) for _ in range(30)))
            pool.close()
        assert [a.status for a in answers] == [200] * 30
        assert server.most_open == 3 and server.connections == 3

    _on_both_loops(run)


def test_urls_on_another_origin_and_odd_characters_in_paths() -> None:
    origin = Origin.of("https://cpo.example/ocpi")
    assert (origin.port, origin.host_header) == (443, "cpo.example")
    assert Origin.of("http://[::1]:8080/x").host_header == "[::1]:8080"
    with pytest.raises(ValueError, match="not on"):
        build_request("PUT", "https://other.example/x", origin, {}, b"")
    with pytest.raises(ValueError, match="not an http"):
        Origin.of("ftp://cpo.example/")
    request = build_request("DELETE", "https://cpo.example/profiles/a b?response_url=https%3A%2F%2Fx", origin, {},
                            b"")
    assert request.startswith(b"DELETE /profiles/a%20b?response_url=https%3A%2F%2Fx HTTP/1.1\r\nHost: cpo.example\r\n")
    assert b"Content-Length" not in request
