"""The chat stream's HTTP/1.1 wire format (upstream/h1.py), fed a byte at a time and whole."""

from __future__ import annotations

import pytest

from trae2api.upstream.h1 import ResponseError, ResponseParser, encode_request, host_header

SSE = b"event: output\ndata: {}\n\n"

# id, raw response, status, body, complete before EOF, keep-alive
CASES: list[tuple[str, bytes, int, bytes, bool, bool]] = [
    (
        "content-length",
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: 24\r\n\r\n" + SSE,
        200,
        SSE,
        True,
        True,
    ),
    (
        "chunked",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"e\r\nevent: output\n\r\na\r\ndata: {}\n\n\r\n0\r\n\r\n",
        200,
        SSE,
        True,
        True,
    ),
    (
        "connection-close",
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 24\r\n\r\n" + SSE,
        200,
        SSE,
        True,
        False,
    ),
    ("until-eof", b"HTTP/1.1 200 OK\r\n\r\n" + SSE, 200, SSE, False, False),
    ("http-1.0", b"HTTP/1.0 200 OK\r\nContent-Length: 24\r\n\r\n" + SSE, 200, SSE, True, False),
    (
        "html-502",
        b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/html\r\nContent-Length: 6\r\n\r\n<html>",
        502,
        b"<html>",
        True,
        True,
    ),
    ("no-content", b"HTTP/1.1 204 No Content\r\n\r\n", 204, b"", True, True),
]


def feed(parser: ResponseParser, raw: bytes, *, bytewise: bool) -> bytes:
    body = b""
    pieces = [raw[i : i + 1] for i in range(len(raw))] if bytewise else [raw]
    for piece in pieces:
        parser.feed(piece)
        body += parser.take_body()
    return body


@pytest.mark.parametrize("bytewise", [True, False], ids=["bytewise", "whole"])
@pytest.mark.parametrize(
    ("raw", "status", "body", "complete", "keep_alive"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_responses(
    raw: bytes, status: int, body: bytes, complete: bool, keep_alive: bool, bytewise: bool
) -> None:
    """Each framing yields its status, body, completeness and keep-alive, fed whole or bytewise."""
    parser = ResponseParser()
    assert feed(parser, raw, bytewise=bytewise) == body
    assert parser.headers_complete
    assert parser.status == status
    assert parser.complete is complete
    if not complete:
        parser.feed_eof()  # the body of an unframed answer ends when the peer closes
        assert parser.complete
    assert parser.keep_alive is keep_alive
    assert parser.pending == 0


def test_headers_are_lower_case_and_kept_in_order() -> None:
    """Header names are lower-cased and repeated headers keep their order."""
    parser = ResponseParser()
    feed(
        parser,
        b"HTTP/1.1 429 Too Many\r\nRetry-After: 7\r\nX-A: 1\r\nX-A: 2\r\n\r\n",
        bytewise=True,
    )
    assert parser.headers == [("retry-after", "7"), ("x-a", "1"), ("x-a", "2")]
    assert parser.header("x-a") == "1"
    assert parser.header("missing") is None


@pytest.mark.parametrize(
    "raw",
    [
        b"HTTP/1.1 abc OK\r\n\r\n",
        b"SMTP ready\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"\x00\x01\x02 garbage",
        b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 2\r\n\r\n\x1f\x8b",
    ],
    ids=["bad-status", "not-http", "bad-chunk-size", "binary", "compressed"],
)
def test_malformed_responses_raise(raw: bytes) -> None:
    """Bytes that are not a readable HTTP/1.1 response raise ResponseError."""
    parser = ResponseParser()
    with pytest.raises(ResponseError):
        feed(parser, raw, bytewise=True)


@pytest.mark.parametrize(
    "raw",
    [b"", b"HTTP/1.1 200 OK\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc"],
    ids=["nothing", "half-head", "short-body"],
)
def test_eof_before_the_end_raises(raw: bytes) -> None:
    """A connection closed before the framing says the body ended raises."""
    parser = ResponseParser()
    feed(parser, raw, bytewise=True)
    with pytest.raises(ResponseError):
        parser.feed_eof()


def test_bytes_after_a_complete_response_raise() -> None:
    """Bytes after a complete response (which we never asked for) raise."""
    parser = ResponseParser()
    parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    with pytest.raises(ResponseError):
        parser.feed(b"HTTP/1.1 200 OK\r\n")


def test_interim_responses_are_refused() -> None:
    """A 1xx interim response is refused rather than skipped."""
    with pytest.raises(ResponseError):
        ResponseParser().feed(b"HTTP/1.1 100 Continue\r\n\r\n")


def test_request_bytes() -> None:
    """The request head carries Host, the given headers and Content-Length, then the body."""
    raw = encode_request("POST", "/chat?x=1", "h:8080", {"x-ide-token": "t"}, b"{}")
    assert raw == (
        b"POST /chat?x=1 HTTP/1.1\r\nhost: h:8080\r\nx-ide-token: t\r\ncontent-length: 2\r\n\r\n{}"
    )
    with pytest.raises(ValueError, match="invalid header"):
        encode_request("POST", "/", "h", {"x": "a\r\nInjected: 1"}, b"")


def test_host_header() -> None:
    """Host omits the scheme's default port and brackets IPv6 literals."""
    assert host_header("https", "trae.example", 443) == "trae.example"
    assert host_header("http", "127.0.0.1", 8080) == "127.0.0.1:8080"
    assert host_header("http", "::1", 80) == "[::1]"
