"""The chat stream's connection pool (upstream/streams.py) against a tiny scripted server.

The server counts the connections it accepted, so reuse, closing and the one stale retry show.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import httpx
import pytest

from conftest import free_port
from trae2api.upstream.streams import StreamPool, StreamTimeouts

OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: 5\r\n\r\nhello"
# (connection number, request number on it) -> bytes to answer, or None to hang up instead
Script = Callable[[int, int], bytes | None]


@dataclass
class Server:
    script: Script
    accepted: int = 0
    open: int = 0
    requests: list[bytes] = field(default_factory=list)
    port: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self.open += 1
        number = self.accepted
        try:
            for index in range(1000):
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                self.requests.append(head + await reader.readexactly(length))
                answer = self.script(number, index)
                if answer is None:
                    break
                writer.write(answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.open -= 1
            writer.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/ide/v1/chat"


@contextlib.asynccontextmanager
async def serving(script: Script) -> AsyncIterator[Server]:
    server = Server(script)
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    server.port = listener.sockets[0].getsockname()[1]
    async with listener:
        yield server


def pool(**limits: int) -> StreamPool:
    return StreamPool(StreamTimeouts(connect=1.0, read=0.5), **limits)


async def fetch(streams: StreamPool, url: str) -> bytes:
    response = await streams.post(url, b'{"a": 1}', {"x-ide-token": "t"})
    try:
        return await response.read()
    finally:
        response.close()


async def settle(server: Server, open_connections: int) -> None:
    for _ in range(100):
        if server.open == open_connections:
            return
        await asyncio.sleep(0.01)
    assert server.open == open_connections


async def test_a_fully_read_answer_returns_its_connection() -> None:
    """Answers read to the end reuse one connection."""
    async with serving(lambda conn, req: OK) as server:
        streams = pool()
        assert [await fetch(streams, server.url) for _ in range(3)] == [b"hello"] * 3
        assert server.accepted == 1
        assert server.requests[0].startswith(b"POST /api/ide/v1/chat HTTP/1.1\r\nhost: 127.0.0.1:")
        await streams.aclose()
        await settle(server, 0)


async def test_connection_close_is_honoured() -> None:
    """An answer with Connection: close is never reused."""
    close = OK.replace(b"OK\r\n", b"OK\r\nConnection: close\r\n", 1)
    async with serving(lambda conn, req: close) as server:
        streams = pool()
        for _ in range(2):
            assert await fetch(streams, server.url) == b"hello"
        assert server.accepted == 2
        await settle(server, 0)


async def test_chunked_body_arrives_per_read() -> None:
    """A chunked body is handed out as it arrives."""
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    )
    async with serving(lambda conn, req: chunked) as server:
        streams = pool()
        assert await fetch(streams, server.url) == b"abcde"
        assert await fetch(streams, server.url) == b"abcde"
        assert server.accepted == 1


@pytest.mark.parametrize("how", ["early-close", "cancel", "read-timeout"])
async def test_an_interrupted_answer_closes_its_connection(how: str) -> None:
    """An early close, a cancellation or a read timeout closes the socket and frees its slot."""
    # The head and a first piece, then nothing: the body never ends.
    partial = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nfirst"
    async with serving(lambda conn, req: partial) as server:
        streams = pool(max_connections=1)
        response = await streams.post(server.url, b"{}", {})
        chunks = response.chunks()
        assert await anext(chunks) == b"first"
        if how == "cancel":
            task = asyncio.ensure_future(anext(chunks))
            await asyncio.sleep(0.05)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        elif how == "read-timeout":
            with pytest.raises(httpx.ReadTimeout):
                await anext(chunks)
        response.close()
        await settle(server, 0)
        # Its slot came back: with one connection allowed, the next request gets one.
        again = await streams.post(server.url, b"{}", {})
        again.close()
        assert server.accepted == 2


async def test_a_stale_reused_connection_is_retried_once() -> None:
    """A reused connection that fails before any byte is retried once on a fresh one."""
    # The first connection answers once, then hangs up on the next request unanswered.
    async with serving(lambda conn, req: OK if (conn, req) != (1, 1) else None) as server:
        streams = pool()
        assert await fetch(streams, server.url) == b"hello"
        assert await fetch(streams, server.url) == b"hello"
        assert server.accepted == 2
        assert len(server.requests) == 3


async def test_a_fresh_connection_is_not_retried() -> None:
    """A fresh connection that fails is not retried."""
    async with serving(lambda conn, req: None) as server:
        streams = pool()
        with pytest.raises(httpx.RemoteProtocolError):
            await fetch(streams, server.url)
        assert server.accepted == 1


async def test_a_failure_after_the_first_byte_is_not_retried() -> None:
    """A failure after the first response byte is not retried."""
    half = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc"

    def script(conn: int, req: int) -> bytes | None:
        return OK if req == 0 else half

    async with serving(script) as server:
        streams = pool()
        assert await fetch(streams, server.url) == b"hello"
        task = asyncio.ensure_future(fetch(streams, server.url))
        with pytest.raises(httpx.ReadTimeout):
            await task
        assert server.accepted == 1


async def test_connect_failures_are_httpx_errors() -> None:
    """A refused connection raises httpx's ConnectError, which the error mapping knows."""
    streams = pool()
    with pytest.raises(httpx.ConnectError):
        await streams.post(f"http://127.0.0.1:{free_port()}/x", b"", {})
    with pytest.raises(httpx.UnsupportedProtocol):
        await streams.post("ftp://127.0.0.1/x", b"", {})


async def test_aclose_closes_idle_connections_and_later_releases() -> None:
    """aclose closes idle connections, and connections released later too."""
    async with serving(lambda conn, req: OK) as server:
        streams = pool()
        response = await streams.post(server.url, b"{}", {})
        assert await fetch(streams, server.url) == b"hello"
        assert server.open == 2
        await streams.aclose()
        await settle(server, 1)
        assert await response.read() == b"hello"
        response.close()
        await settle(server, 0)
