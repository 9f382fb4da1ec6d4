"""HTTP/1.1 wire format for the chat stream: request bytes out, response events in (httptools).

Bytes only, no sockets, no timers: ``upstream/streams.py`` owns the I/O and maps the errors.
"""

from __future__ import annotations

import httptools

from trae2api.errors import ResponseError

_DEFAULT_PORTS = {"http": 80, "https": 443}


def host_header(scheme: str, host: str, port: int) -> str:
    """``Host`` as a browser sends it: the port only when it is not the scheme's default."""
    name = f"[{host}]" if ":" in host else host  # an IPv6 literal
    return name if _DEFAULT_PORTS.get(scheme) == port else f"{name}:{port}"


def encode_request(
    method: str, target: str, host: str, headers: dict[str, str], body: bytes
) -> bytes:
    """One request head and body; ``headers`` go as given, after ``Host``, then the framing."""
    lines = [f"{method} {target} HTTP/1.1", f"host: {host}"]
    for name, value in headers.items():
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
            # A header can never smuggle a second request onto the connection.
            raise ValueError(f"invalid header {name!r}")
        lines.append(f"{name}: {value}")
    lines.append(f"content-length: {len(body)}")
    head = "\r\n".join(lines).encode("latin-1") + b"\r\n\r\n"
    return head + body


class ResponseParser:
    """Incremental response reader: feed bytes, then look at what became known.

    ``status``/``headers`` are set once the head is complete; ``take_body`` hands out the body
    bytes received since its last call; ``complete`` means the body ended by its own framing.
    """

    __slots__ = (
        "_body",
        "_parser",
        "_until_eof",
        "complete",
        "headers",
        "headers_complete",
        "keep_alive",
        "pending",
        "received",
        "status",
    )

    def __init__(self) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self._body: list[bytes] = []
        self._until_eof = False  # neither Content-Length nor chunked: the body ends at EOF
        self.headers: list[tuple[str, str]] = []
        self.headers_complete = False
        self.complete = False
        self.keep_alive = False
        self.pending = 0  # body bytes not yet taken
        self.received = False  # any response byte at all (a stale connection sends none)
        self.status = 0

    def feed(self, data: bytes) -> None:
        """Parse ``data``; raises ``ResponseError`` on bytes that are not a response."""
        self.received = True
        if self.complete:
            # Nothing may follow a response we did not ask a second one for.
            raise ResponseError("data after the end of the response")
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            raise ResponseError(f"malformed HTTP response: {exc}") from exc

    def feed_eof(self) -> None:
        """The peer closed: the end of an until-EOF body, else a response cut short."""
        if self.complete:
            return
        if self.headers_complete and self._until_eof:
            self.complete = True
            self.keep_alive = False
            return
        raise ResponseError("the connection closed before the response ended")

    def take_body(self) -> bytes:
        body = self._body
        if not body:
            return b""
        self._body = []
        self.pending = 0
        return body[0] if len(body) == 1 else b"".join(body)

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (lower case), if present."""
        for key, value in self.headers:
            if key == name:
                return value
        return None

    # httptools callbacks -------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.decode("latin-1").lower(), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()
        if 100 <= self.status < 200:
            # Interim answers (100 Continue) are not followed here: we never ask for one.
            raise ResponseError(f"unexpected interim response {self.status}")
        encoding = (self.header("content-encoding") or "identity").strip().lower()
        if encoding != "identity":
            # We send no Accept-Encoding, so the body would be bytes no SSE parser can read.
            raise ResponseError(f"unrequested content-encoding {encoding!r}")
        self.headers_complete = True
        framed = self.header("content-length") is not None
        chunked = "chunked" in (self.header("transfer-encoding") or "").lower()
        no_body = self.status in (204, 304)
        self._until_eof = not (framed or chunked or no_body)

    def on_body(self, body: bytes) -> None:
        self._body.append(body)
        self.pending += len(body)

    def on_message_complete(self) -> None:
        self.complete = True
        self.keep_alive = self._parser.should_keep_alive() and not self._until_eof
