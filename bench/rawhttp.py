"""The load generator's HTTP/1.1 client: pre-built requests over pooled keep-alive sockets.

Lean on purpose. At 1000 concurrent streams on a 2-core machine a general-purpose client
(httpx parses every HTTP chunk in pure Python) spends more CPU than the gateway it measures,
so the benchmark would mostly measure itself. This one sends bytes built once per target,
de-chunks the response with ``bytes.find`` and hands the body on per socket read. The
benchmark still reports its CPU (``client``) so a saturated load generator shows.
"""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit

IDLE_EXPIRY = 1.0  # seconds; well under uvicorn's 5 s keep-alive (the simulator's)
READ_SIZE = 65536


class HttpError(Exception):
    """A transport failure or a response that is not a well-formed HTTP/1.1 answer."""


def build_request(url: str, headers: dict[str, str], body: bytes) -> tuple[str, int, bytes]:
    """Host, port and the complete bytes of a ``POST`` to ``url``."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    skip = {"host", "content-length", "connection", "transfer-encoding"}
    lines = [f"POST {parts.path or '/'} HTTP/1.1", f"host: {host}:{port}"]
    lines += [f"{name}: {value}" for name, value in headers.items() if name.lower() not in skip]
    lines.append(f"content-length: {len(body)}")
    return host, port, ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class Dechunker:
    """Chunked transfer coding, undone incrementally (RFC 9112 §7.1; no trailers expected)."""

    def __init__(self) -> None:
        self.buf = b""
        self.left = 0  # bytes still to skip or keep in the current chunk, its CRLF included
        self.last = False
        self.complete = False

    def feed(self, data: bytes) -> bytes:
        buf, pos, out = self.buf + data if self.buf else data, 0, []
        size = len(buf)
        while pos < size:
            if self.left:
                take = min(self.left, size - pos)
                keep = min(take, self.left - 2)
                if keep > 0:
                    out.append(buf[pos : pos + keep])
                self.left -= take
                pos += take
                if not self.left and self.last:
                    self.complete = True
                continue
            end = buf.find(b"\r\n", pos)
            if end < 0:
                break
            length = int(buf[pos:end].split(b";", 1)[0], 16)
            pos = end + 2
            self.last = length == 0
            self.left = length + 2
        self.buf = buf[pos:]
        return out[0] if len(out) == 1 else b"".join(out)


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.used = time.monotonic()

    def close(self) -> None:
        self.writer.close()


class Pool:
    """Idle keep-alive connections to one host, reused newest first, dropped after 1 s."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.idle: list[Connection] = []

    async def acquire(self) -> Connection:
        now = time.monotonic()
        while self.idle:
            conn = self.idle.pop()
            if now - conn.used < IDLE_EXPIRY and not conn.reader.at_eof():
                return conn
            conn.close()
        reader, writer = await asyncio.open_connection(self.host, self.port, limit=2**20)
        return Connection(reader, writer)

    def release(self, conn: Connection) -> None:
        conn.used = time.monotonic()
        self.idle.append(conn)

    def close(self) -> None:
        for conn in self.idle:
            conn.close()
        self.idle.clear()


async def read_head(reader: asyncio.StreamReader) -> tuple[int, dict[bytes, bytes]]:
    """The status code and the (lower-cased) header fields of a response."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
        raise HttpError(f"no response head ({type(exc).__name__})") from exc
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    fields = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name:
            fields[name.strip().lower()] = value.strip().lower()
    return status, fields
