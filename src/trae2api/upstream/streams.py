"""A lean HTTP/1.1 client for the chat stream only: a keep-alive pool on asyncio protocols.

It fails with httpx's exception classes so ``mapped_transport_errors`` maps them as it maps
httpx's; it must not retry anything but a reused connection that died before answering.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from trae2api.errors import ResponseError
from trae2api.upstream.connection import Connection
from trae2api.upstream.h1 import ResponseParser, encode_request, host_header

# Like httpx's defaults and app.py's limits for the shared client.
KEEPALIVE_EXPIRY = 5.0
_Key = tuple[str, str, int]


@dataclass(frozen=True)
class StreamTimeouts:
    connect: float
    read: float
    write: float = 30.0
    pool: float = 30.0


class ReadControl:
    """How one chat waits on its upstream: a tick of silence and an interruption.

    ``tick`` seconds without bytes make a read yield an empty result (the caller's keepalive);
    ``interrupt`` ends the wait in progress, or the next one, with an exception (shutdown).
    """

    __slots__ = ("_conn", "deadline", "error", "tick")

    def __init__(self, tick: float | None = None, deadline: float | None = None) -> None:
        self.tick = tick
        self.deadline = deadline  # loop time; None once the first byte is in
        self.error: BaseException | None = None
        self._conn: Connection | None = None

    def interrupt(self, exc: BaseException) -> None:
        self.error = exc
        if self._conn is not None:
            self._conn.interrupt(exc)


class StreamResponse:
    """An answer's head, then its body a network read at a time; ``close`` it in all cases."""

    def __init__(
        self, pool: StreamPool, key: _Key, conn: Connection, request: bytes, *, reused: bool
    ) -> None:
        self._pool = pool
        self._key = key
        self._conn: Connection | None = conn
        self._request = request
        self._reused = reused
        self._parser = conn.parser or ResponseParser()
        self.status = 0

    @property
    def headers(self) -> httpx.Headers:
        return httpx.Headers(self._parser.headers)

    def header(self, name: str) -> str | None:
        return self._parser.header(name)

    async def head(self, control: ReadControl | None = None) -> bool:
        """True once the head has arrived; False after a tick of silence (call again)."""
        try:
            since = asyncio.get_running_loop().time()
            while True:
                conn, parser = self._conn, self._parser
                assert conn is not None
                if parser.headers_complete:
                    self.status = parser.status
                    return True
                if conn.error is not None or conn.closed:
                    if not (self._reused and not parser.received):
                        raise _failure(conn.error, "reading the response head")
                    # The reused socket died before answering: one try on a fresh one.
                    conn.close()
                    self._conn, self._reused = None, False
                    self._conn = await self._pool.connect_and_send(self._key, self._request)
                    self._parser = self._conn.parser or ResponseParser()
                    continue
                if not await self._news(conn, control, since):
                    return False
        except BaseException:
            self.close()  # cancelled, timed out or failed: the socket's state is unknown
            raise

    async def chunks(self, control: ReadControl | None = None) -> AsyncIterator[bytes]:
        """The body as it arrives, one ``bytes`` per network read (several when behind);
        with a ``control`` tick, ``b""`` after each tick of silence."""
        conn, parser = self._conn, self._parser
        assert conn is not None
        loop = asyncio.get_running_loop()
        since = loop.time()
        while True:
            body = parser.take_body()
            if body:
                yield body
                continue  # more may have come (and ended the body) while the caller held it
            if parser.complete:
                return
            if conn.error is not None or conn.closed:
                raise _failure(conn.error, "reading the response body")
            if await self._news(conn, control, since):
                since = loop.time()
            else:
                yield b""

    async def _news(self, conn: Connection, control: ReadControl | None, since: float) -> bool:
        """Wait for news (True) or a tick of silence (False); ReadTimeout past the deadline:
        ``UPSTREAM_READ_TIMEOUT`` since the last news, or the control's first-byte deadline."""
        limit = since + self._pool.timeouts.read
        if control is None:
            remaining = limit - asyncio.get_running_loop().time()
            if remaining <= 0 or not await conn.wait(remaining):
                raise httpx.ReadTimeout("timed out waiting for the upstream")
            return True
        if control.error is not None:
            raise control.error
        if control.deadline is not None:
            limit = min(limit, control.deadline)
        remaining = limit - asyncio.get_running_loop().time()
        tick = control.tick
        wait = remaining if tick is None or tick >= remaining else tick
        if remaining <= 0:
            raise httpx.ReadTimeout("timed out waiting for the upstream")
        control._conn = conn
        try:
            if await conn.wait(wait):
                return True
        finally:
            control._conn = None
        if wait >= remaining:
            raise httpx.ReadTimeout("timed out waiting for the upstream")
        return False

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.chunks()])

    def close(self) -> None:
        """Back to the pool only when fully read and kept alive by both sides; else closed."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        parser = self._parser
        if parser.complete and parser.keep_alive and conn.error is None and not parser.pending:
            self._pool.release(self._key, conn)
        else:
            conn.close()


class StreamPool:
    """Keep-alive connections per (scheme, host, port), bounded like the shared httpx client."""

    def __init__(
        self,
        timeouts: StreamTimeouts,
        *,
        max_connections: int = 1000,
        max_keepalive: int = 200,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.timeouts = timeouts
        self._slots = asyncio.Semaphore(max_connections)
        self._max_keepalive = max_keepalive
        self._idle: dict[_Key, deque[Connection]] = {}
        self._idle_count = 0
        self._ssl = ssl_context
        self._closed = False

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> StreamResponse:
        """Send ``body`` and return once the answer's head has arrived."""
        response = await self.open(url, body, headers)
        while not await response.head():
            pass
        return response

    async def open(self, url: str, body: bytes, headers: dict[str, str]) -> StreamResponse:
        """Send ``body``; the answer's head is then awaited with ``StreamResponse.head``."""
        key, target = _split(url)
        request = encode_request("POST", target, host_header(*key), headers, body)
        conn = self._take_idle(key)
        if conn is not None:
            await self._send(conn, request)
            return StreamResponse(self, key, conn, request, reused=True)
        conn = await self.connect_and_send(key, request)
        return StreamResponse(self, key, conn, request, reused=False)

    async def connect_and_send(self, key: _Key, request: bytes) -> Connection:
        conn = await self._connect(key)
        await self._send(conn, request)
        return conn

    def release(self, key: _Key, conn: Connection) -> None:
        if self._closed or self._idle_count >= self._max_keepalive or not conn.reusable:
            conn.close()
            return
        conn.parser = None
        conn.resume()
        conn.idle_since = time.monotonic()
        self._idle.setdefault(key, deque()).append(conn)
        self._idle_count += 1

    async def aclose(self) -> None:
        """Close the idle connections; later releases close theirs instead of pooling them."""
        self._closed = True
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()
        self._idle_count = 0

    def _take_idle(self, key: _Key) -> Connection | None:
        idle = self._idle.get(key)
        if not idle:
            return None
        expired = time.monotonic() - KEEPALIVE_EXPIRY
        while idle and idle[0].idle_since < expired:  # the oldest first: they expire first
            idle.popleft().close()
            self._idle_count -= 1
        while idle:
            conn = idle.pop()  # the most recent: the least likely to be closing
            self._idle_count -= 1
            if conn.reusable:
                return conn
            conn.close()
        return None

    async def _send(self, conn: Connection, request: bytes) -> None:
        conn.parser = ResponseParser()
        try:
            await conn.write(request, self.timeouts.write)
        except BaseException:
            conn.close()  # cancelled, timed out or failed: the socket's state is unknown
            raise

    async def _connect(self, key: _Key) -> Connection:
        if self._slots.locked():
            try:
                async with asyncio.timeout(self.timeouts.pool):
                    await self._slots.acquire()
            except TimeoutError:
                raise httpx.PoolTimeout("no free upstream connection") from None
        else:
            await self._slots.acquire()
        conn = Connection(self._slots)
        scheme, host, port = key
        tls = self._tls() if scheme == "https" else None
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.timeouts.connect):
                transport, _ = await loop.create_connection(
                    lambda: conn, host, port, ssl=tls, server_hostname=host if tls else None
                )
        except TimeoutError:
            conn.close()
            raise httpx.ConnectTimeout(f"timed out connecting to {host}:{port}") from None
        except OSError as exc:  # refused, unreachable, DNS, TLS
            conn.close()
            raise httpx.ConnectError(str(exc) or type(exc).__name__) from exc
        except BaseException:
            conn.close()
            raise
        # uvloop calls connection_made a loop turn later: the transport is known from here on.
        conn.transport = transport
        if conn.closed:  # it failed in the meantime
            transport.abort()
        return conn

    def _tls(self) -> ssl.SSLContext:
        if self._ssl is None:
            # httpx's own verified context, so both clients trust the same servers.
            self._ssl = httpx.create_ssl_context(trust_env=False)
            self._ssl.set_alpn_protocols(["http/1.1"])
        return self._ssl


def _split(url: str) -> tuple[_Key, str]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise httpx.UnsupportedProtocol(f"cannot stream from {url!r}")
    port = parts.port or (443 if scheme == "https" else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return (scheme, parts.hostname, port), target


def _failure(error: BaseException | None, what: str) -> httpx.TransportError:
    """A socket or parse failure as the httpx exception httpx itself would have raised."""
    if isinstance(error, ResponseError):
        return httpx.RemoteProtocolError(f"{error} while {what}")
    if isinstance(error, OSError):
        return httpx.ReadError(f"{error or type(error).__name__} while {what}")
    return httpx.RemoteProtocolError(f"the server closed the connection while {what}")
