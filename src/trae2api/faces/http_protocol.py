"""uvicorn's httptools protocol, answering requests it cannot parse with an OpenAI envelope.

A request line or header that breaks HTTP (a bare CR or LF inside a header value, a NUL, a
negative or non-numeric Content-Length) never reaches the app: uvicorn answers 400 itself, in
plain text. This subclass writes the same 400 as ``{"error": {...}}`` so that every 4xx a client
sees has one shape.
"""

from __future__ import annotations

import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from trae2api.errors import InvalidRequest

_MESSAGE = "The request is not valid HTTP/1.1 (a malformed request line or header)."


def _body() -> bytes:
    error = InvalidRequest(_MESSAGE, code="invalid_http_request")
    return orjson.dumps(error.envelope())


class EnvelopeHttpToolsProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` whose parser-level 400 carries the OpenAI error envelope."""

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
