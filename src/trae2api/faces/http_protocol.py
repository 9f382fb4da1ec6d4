"""uvicorn's httptools protocol, with two changes: parser-level 400s as OpenAI envelopes, and a
response's head sent in the same write as its first body bytes.

A request line or header that breaks HTTP (a bare CR or LF inside a header value, a NUL, a
negative or non-numeric Content-Length) never reaches the app: uvicorn answers 400 itself, in
plain text. This subclass writes the same 400 as ``{"error": {...}}`` so that every 4xx a client
sees has one shape.

uvicorn writes the status line and headers as soon as the app starts its response, then each
body part: two socket writes (two wake-ups of the client) where one does. Each request's cycle
here writes through ``HeadHeldTransport``, which holds the head until the next write or the end
of the event loop's turn, whichever comes first (measured: bench/README.md). It must not hold
anything longer, nor change a byte.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from trae2api.errors import InvalidRequest

_MESSAGE = "The request is not valid HTTP/1.1 (a malformed request line or header)."
_JOIN_LIMIT = 64 * 1024  # a larger first body part goes in its own write rather than a copy


def _body() -> bytes:
    error = InvalidRequest(_MESSAGE, code="invalid_http_request")
    return orjson.dumps(error.envelope())


class HeadHeldTransport:
    """The transport as one request's cycle sees it: its first write (the response head) is held
    until the cycle writes again or the loop's current turn ends, then everything passes."""

    __slots__ = ("_held", "_loop", "_pending", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending = True  # the first write is still to come
        self._held: bytes | None = None

    def write(self, data: bytes) -> None:
        if self._pending:
            self._pending = False
            self._held = data
            self._loop.call_soon(self.flush)
            return
        held = self._held
        if held is not None:
            self._held = None
            if len(data) <= _JOIN_LIMIT:
                self._transport.write(held + data)
                return
            self._transport.write(held)
        self._transport.write(data)

    def flush(self) -> None:
        held = self._held
        if held is not None:
            self._held = None
            if not self._transport.is_closing():
                self._transport.write(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class EnvelopeHttpToolsProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` whose parser-level 400 carries the OpenAI error envelope, and whose
    responses leave with their head and first body bytes in one write."""

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        cycle = self.cycle  # its task is created but has not run yet
        if cycle is not None and cycle.transport is self.transport:
            cycle.transport = HeadHeldTransport(self.transport, self.loop)  # type: ignore[assignment]

    def send_400_response(self, msg: str) -> None:
        body = _body()
        content = [STATUS_LINE[400]]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend(
            [
                b"content-type: application/json\r\n",
                b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
                b"connection: close\r\n",
                b"\r\n",
                body,
            ]
        )
        self.transport.write(b"".join(content))
        self.transport.close()
