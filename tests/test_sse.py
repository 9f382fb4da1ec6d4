"""Tests for the SSE parser and encoders in ``trae2api.wire.sse``."""

from __future__ import annotations

import itertools
import random

import pytest

from trae2api.wire.sse import (
    DONE,
    SSEEvent,
    SSEParser,
    SSEProtocolError,
    encode_comment,
    encode_data,
)


def E(event: str, data: str, id: str | None = None) -> SSEEvent:
    """Shorthand for an expected event."""
    return SSEEvent(event, data, id)


CASES: list[tuple[str, bytes, list[SSEEvent]]] = [
    ("plain", b'event: output\ndata: {"a":1}\n\n', [E("output", '{"a":1}')]),
    ("default name", b"data: x\n\n", [E("message", "x")]),
    ("no space after colon", b"event:output\ndata:x\n\n", [E("output", "x")]),
    ("only one space stripped", b"data:  two\n\n", [E("message", " two")]),
    ("id line", b"id: 7\nevent: a\ndata: x\n\n", [E("a", "x", "7")]),
    (
        "id does not leak",
        b"id: 7\ndata: x\n\ndata: y\n\n",
        [E("message", "x", "7"), E("message", "y")],
    ),
    ("comment ignored", b": keep-alive\n\nevent: a\n: hi\ndata: x\n\n", [E("a", "x")]),
    ("crlf", b"event: a\r\ndata: x\r\n\r\n", [E("a", "x")]),
    ("cr only", b"event: a\rdata: x\r\revent: b\rdata: y\r\r", [E("a", "x"), E("b", "y")]),
    ("mixed endings", b"event: a\r\ndata: x\n\r\ndata: y\r\n", [E("a", "x"), E("message", "y")]),
    ("multi data joined", b"data: one\ndata: two\ndata:\n\n", [E("message", "one\ntwo\n")]),
    (
        "missing blank line",
        b"event: output\ndata: 1\nevent: output\ndata: 2\nevent: done\ndata: {}\n\n",
        [E("output", "1"), E("output", "2"), E("done", "{}")],
    ),
    ("event name replaced before data", b"event: a\nevent: b\ndata: x\n\n", [E("b", "x")]),
    ("final event without blank line", b"event: done\ndata: {}", [E("done", "{}")]),
    ("final line with newline only", b"event: done\ndata: {}\n", [E("done", "{}")]),
    ("bare event name", b"event: done\n\n", [E("done", "")]),
    ("empty blocks ignored", b"\n\n\r\n: c\n\nid: 3\n\n", []),
    ("utf8", "data: 你好 👋\n\n".encode(), [E("message", "你好 👋")]),
    ("invalid utf8", b"data: a\xff\xfeb\n\n", [E("message", "a\ufffd\ufffdb")]),
    ("bom", b"\xef\xbb\xbfdata: x\n\n", [E("message", "x")]),
    ("field without colon", b"data\n\n", [E("message", "")]),
    ("unknown fields ignored", b"retry: 10\nfoo: bar\ndata: x\n\n", [E("message", "x")]),
    ("colon in value", b'data: {"a":"b:c"}\n\n', [E("message", '{"a":"b:c"}')]),
    ("bare json string", b'event: progress_notice\ndata: "hi"\n\n', [E("progress_notice", '"hi"')]),
]


def feed_all(chunks: list[bytes]) -> list[SSEEvent]:
    """Feed the chunks to a fresh parser and return every event including close()."""
    parser = SSEParser()
    out: list[SSEEvent] = []
    for chunk in chunks:
        out.extend(parser.feed(chunk))
    out.extend(parser.close())
    return out


def random_splits(data: bytes, seed: int) -> list[bytes]:
    """Cut ``data`` at seeded random points (including empty chunks)."""
    rng = random.Random(seed)
    cuts = sorted(rng.randint(0, len(data)) for _ in range(rng.randint(0, len(data))))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


@pytest.mark.parametrize(("name", "stream", "expected"), CASES, ids=[c[0] for c in CASES])
def test_parser_whole(name: str, stream: bytes, expected: list[SSEEvent]) -> None:
    """The stream fed in one piece gives the expected events."""
    assert feed_all([stream]) == expected


@pytest.mark.parametrize(("name", "stream", "expected"), CASES, ids=[c[0] for c in CASES])
def test_parser_byte_at_a_time(name: str, stream: bytes, expected: list[SSEEvent]) -> None:
    """The stream fed one byte at a time gives the same events."""
    assert feed_all([stream[i : i + 1] for i in range(len(stream))]) == expected


@pytest.mark.parametrize(("name", "stream", "expected"), CASES, ids=[c[0] for c in CASES])
def test_parser_random_splits(name: str, stream: bytes, expected: list[SSEEvent]) -> None:
    """The stream fed in seeded random pieces gives the same events."""
    for seed in range(25):
        assert feed_all(random_splits(stream, seed)) == expected, seed


def test_crlf_split_across_feeds_is_one_break() -> None:
    """A CR ending one feed and an LF starting the next make a single line break."""
    parser = SSEParser()
    assert parser.feed(b"data: x\r") == []
    assert parser.feed(b"\ndata: y\r") == []
    assert parser.feed(b"\n\r") == [E("message", "x\ny")]
    assert parser.feed(b"\n") == []


def test_events_returned_as_soon_as_complete() -> None:
    """An event comes out of feed() as soon as its blank line arrives, not at close()."""
    parser = SSEParser()
    assert parser.feed(b"event: output\ndata: 1\n") == []
    assert parser.feed(b"\n") == [E("output", "1")]
    assert parser.close() == []


def test_line_limit_on_unterminated_line() -> None:
    """A line growing past max_line_bytes without a terminator raises SSEProtocolError."""
    parser = SSEParser(max_line_bytes=16)
    parser.feed(b"data: 0123456789")
    with pytest.raises(SSEProtocolError):
        parser.feed(b"abc")


def test_line_limit_on_complete_line() -> None:
    """A complete line longer than max_line_bytes raises SSEProtocolError."""
    parser = SSEParser(max_line_bytes=16)
    with pytest.raises(SSEProtocolError):
        parser.feed(b"data: " + b"x" * 32 + b"\n\n")


def test_line_limit_allows_exact_size() -> None:
    """A line of exactly max_line_bytes is accepted."""
    parser = SSEParser(max_line_bytes=8)
    assert parser.feed(b"data: ab\n\n") == [E("message", "ab")]


def test_parser_reusable_after_close() -> None:
    """close() resets the parser so a new stream starts clean."""
    parser = SSEParser()
    parser.feed(b"event: a\ndata: x")
    assert parser.close() == [E("a", "x")]
    assert parser.feed(b"data: y\n\n") == [E("message", "y")]


def test_many_events_in_one_feed() -> None:
    """A large chunk of many events is parsed in one call."""
    stream = b"".join(b'event: output\ndata: {"response":"%d"}\n\n' % i for i in range(1000))
    events = SSEParser().feed(stream)
    assert len(events) == 1000
    assert events[-1] == E("output", '{"response":"999"}')


def test_encode_data() -> None:
    """encode_data frames a payload as one data event."""
    assert encode_data(b'{"a":1}') == b'data: {"a":1}\n\n'


def test_encode_data_multiline_round_trips() -> None:
    """A payload containing line breaks is split into data lines that parse back to it."""
    encoded = encode_data(b"a\nb\r\nc")
    assert encoded == b"data: a\ndata: b\ndata: c\n\n"
    assert SSEParser().feed(encoded) == [E("message", "a\nb\nc")]


def test_done_and_comment() -> None:
    """DONE and encode_comment produce the exact bytes OpenAI clients expect."""
    assert DONE == b"data: [DONE]\n\n"
    assert encode_comment("keep\r\nalive") == b": keepalive\n\n"
    assert SSEParser().feed(encode_comment("x") + DONE) == [E("message", "[DONE]")]
