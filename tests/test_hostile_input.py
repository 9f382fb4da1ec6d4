"""Hostile requests against ``trae2api serve`` (uvloop + httptools, as deployed), over raw sockets.

Never a 5xx, every 4xx in OpenAI's envelope, and the process keeps serving.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from conftest import CLIENT_KEY, GatewayProcess, free_port, gateway_env
from faultkit import check_envelope
from trae2api.testing import SimulatedTrae

pytestmark = pytest.mark.timeout(30)
MAX_BODY = 1024 * 1024
GOOD = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
GOOD_BYTES = orjson.dumps(GOOD)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    root = tmp_path_factory.mktemp("hostile")
    with SimulatedTrae() as sim:
        env = gateway_env(sim, root / "data", MAX_BODY_BYTES=MAX_BODY, LOG_LEVEL="WARNING")
        gateway = GatewayProcess(env, free_port(), root / "gateway.log").start()
        yield gateway
        gateway.stop()
        log = (root / "gateway.log").read_text()
        assert "unexpected_error" not in log


def exchange(port: int, data: bytes, *, wait: float = 5.0) -> tuple[int, bytes]:
    """Send raw bytes, read until the server closes; the first answer's (status, body)."""
    return responses(port, data, wait=wait)[0]


def responses(port: int, data: bytes, *, wait: float = 5.0) -> list[tuple[int, bytes]]:
    """Every (status, body) the server answered to ``data`` before closing the connection.

    The bytes are sent from a thread: the server may answer (413) and close before reading
    them all, which must not keep the answer from being read.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        sender = threading.Thread(target=_send_quietly, args=(sock, data))
        sender.start()
        received = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                received += chunk
        sender.join()
    answers = []
    while received:
        head, _, rest = received.partition(b"\r\n\r\n")
        length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
        answers.append((int(head.split(b" ", 2)[1]), rest[:length]))
        received = rest[length:]
    assert answers, "the server closed the connection without an answer"
    return answers


def _send_quietly(sock: socket.socket, data: bytes) -> None:
    with contextlib.suppress(OSError):
        sock.sendall(data)


def request(body: bytes, *, headers: bytes = b"", length: int | None = None) -> bytes:
    size = len(body) if length is None else length
    return (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n"
        b"Authorization: Bearer " + CLIENT_KEY.encode() + b"\r\n"
        b"Content-Type: application/json\r\nContent-Length: "
        + str(size).encode()
        + b"\r\n"
        + headers
        + b"\r\n"
        + body
    )


def with_fields(**fields: object) -> bytes:
    return orjson.dumps({**GOOD, **fields})


def replace(old: bytes, new: bytes) -> bytes:
    return GOOD_BYTES.replace(old, new)


NESTED = b"[" * 100_000 + b"]" * 100_000
BAD_BODIES = {
    "invalid-json": b'{"model": ',
    "empty-object": b"{}",
    "array": b"[1, 2]",
    "string": b'"hello"',
    "number": b"42",
    "null": b"null",
    "nested-100k-arrays": NESTED,
    "nested-100-in-a-field": replace(b'"hi"}]', b'"hi"}], "x": ' + b"[" * 100 + b"]" * 100),
    "non-utf8": replace(b'"hi"', b'"\xff\xfe\xc3"'),
    "unknown-role": replace(b'"user"', b'"wizard"'),
    "max-tokens-10e30": with_fields(max_tokens=10**18).replace(
        b"1000000000000000000", b"1" + b"0" * 30
    ),
    "max-completion-tokens-huge": with_fields(max_completion_tokens=2**40),
    "seed-10e30": with_fields(seed=1).replace(b'"seed":1', b'"seed":' + b"9" * 31),
    "nan": replace(b'"gpt-4o"', b'"gpt-4o", "temperature": NaN'),
    "infinity": replace(b'"gpt-4o"', b'"gpt-4o", "top_p": Infinity'),
    "nan-in-an-unknown-field": replace(b'"gpt-4o"', b'"gpt-4o", "x": -Infinity'),
}
WRONG_TYPES = {
    "model": [None, 1, [], {}],
    "messages": [None, "hi", {}, [], [1], [{"content": "no role"}], [{"role": 5}]],
    "stream": [2, [], {}],  # pydantic's lax mode reads "yes" and "1" as true
    "stream_options": ["x", [1], {"include_usage": "maybe"}],
    "n": ["one", 0, 1.5, 129],
    "stop": [1, {"a": 1}, ["a", 2], ["a"] * 5],
    "max_tokens": ["many", -1, 0, 1.5],
    "max_completion_tokens": ["x", 0],
    "temperature": ["hot", -1, 3],
    "top_p": ["x", 2],
    "presence_penalty": ["x", 5],
    "frequency_penalty": [[], -5],
    "seed": ["x", 1.5],
    "user": [1, {}],
    "tools": ["x", [1], [{"type": "function"}], [{"type": "function", "function": {}}]],
    "tool_choice": [1, "sometimes", {"function": {"name": "missing"}}],
    "parallel_tool_calls": ["x", {}],
    "reasoning_mode": ["loud", 1],
}


def assert_rejected(status: int, body: bytes, expected: int = 400) -> None:
    assert status == expected, body[:300]
    check_envelope(body)


@pytest.mark.slow
@pytest.mark.parametrize("body", BAD_BODIES.values(), ids=BAD_BODIES.keys())
def test_bad_bodies_are_400_envelopes(served: GatewayProcess, body: bytes) -> None:
    """Unparsable, non-object, too deep, non-UTF-8 or out-of-range bodies are 400 envelopes."""
    assert_rejected(*exchange(served.port, request(body)))


@pytest.mark.parametrize("field", WRONG_TYPES)
def test_wrong_types_for_every_top_level_field(served: GatewayProcess, field: str) -> None:
    """A wrong type or value for any top-level field is a 400 envelope naming no 5xx."""
    for value in WRONG_TYPES[field]:
        status, body = exchange(served.port, request(with_fields(**{field: value})))
        assert_rejected(status, body)


def test_duplicate_keys_are_read_like_json_parsers_do(served: GatewayProcess) -> None:
    """With duplicate keys the last one wins, as in every mainstream JSON parser."""
    body = replace(b'"model":"gpt-4o"', b'"model":"no-such-model","model":"gpt-4o"')
    status, answer = exchange(served.port, request(body))
    assert status == 200, answer[:300]
    assert orjson.loads(answer)["model"] == "gpt-4o"


def test_huge_bodies_are_413(served: GatewayProcess) -> None:
    """A body over MAX_BODY_BYTES is 413, declared or sent chunked."""
    huge = replace(b'"hi"', b'"' + b"a" * (MAX_BODY + 1) + b'"')
    assert_rejected(*exchange(served.port, request(huge)), expected=413)
    chunk = b"%x\r\n" % 65536 + b"a" * 65536 + b"\r\n"
    chunked = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n"
        b"Authorization: Bearer " + CLIENT_KEY.encode() + b"\r\n"
        b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        + chunk * (MAX_BODY // 65536 + 2)
        + b"0\r\n\r\n"
    )
    assert_rejected(*exchange(served.port, chunked), expected=413)


@pytest.mark.parametrize(
    "header",
    [b"X-Note: a\rInjected: b\r\n", b"X-Note: a\nInjected: b\r\n", b"X-Note: a\x00b\r\n"],
    ids=["bare-cr", "bare-lf", "nul"],
)
def test_header_injection_attempts_are_400_envelopes(served: GatewayProcess, header: bytes) -> None:
    """CR, LF or NUL inside a header value is refused with a 400 envelope."""
    assert_rejected(*exchange(served.port, request(GOOD_BYTES, headers=header)))


def test_request_id_with_crlf_is_not_echoed(served: GatewayProcess) -> None:
    """An x-request-id that could split headers is replaced, never echoed."""
    with socket.create_connection(("127.0.0.1", served.port), timeout=5) as sock:
        sock.sendall(request(GOOD_BYTES, headers=b"X-Request-Id: a\r\n\r\nHTTP/1.1 200\r\n"))
        answer = sock.recv(65536)
    assert b"HTTP/1.1 200\r\n\r\n" not in answer.split(b"\r\n\r\n", 1)[0]


def test_very_long_header_lines_do_not_break_the_gateway(served: GatewayProcess) -> None:
    """A 1 MiB header line is answered normally (or refused), never with a 5xx."""
    status, body = exchange(
        served.port, request(GOOD_BYTES, headers=b"X-Long: " + b"a" * 2**20 + b"\r\n")
    )
    assert status < 500
    if status != 200:
        check_envelope(body)


@pytest.mark.parametrize("length", [b"-1", b"12x", b"99999999999999999999999"])
def test_malformed_content_length_is_a_400_envelope(served: GatewayProcess, length: bytes) -> None:
    """A negative, non-numeric or absurd Content-Length is a 400 envelope (or 413)."""
    data = request(GOOD_BYTES).replace(
        b"Content-Length: %d" % len(GOOD_BYTES), b"Content-Length: " + length
    )
    status, body = exchange(served.port, data)
    assert status in (400, 413), body[:300]
    check_envelope(body)


def test_content_length_shorter_than_the_body(served: GatewayProcess) -> None:
    """A short Content-Length cuts the JSON; the rest is a malformed next request: 400s only."""
    data = request(GOOD_BYTES, length=len(GOOD_BYTES) - 10).replace(b"Connection: close\r\n", b"")
    answers = responses(served.port, data)
    # One 400 or two, depending on whether the leftover bytes fail to parse before or after
    # the cut JSON is answered: uvicorn then closes the connection at once.
    assert {status for status, _ in answers} == {400}
    for _, body in answers:
        check_envelope(body)


def test_content_length_longer_than_the_body(served: GatewayProcess) -> None:
    """A long Content-Length waits for the missing bytes; a client that gives up harms nothing."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", served.port), timeout=0.5) as sock:
        sock.sendall(request(GOOD_BYTES, length=len(GOOD_BYTES) + 10))
        with pytest.raises(TimeoutError):
            sock.recv(65536)
    assert time.monotonic() - started < 2
    headers = {"Authorization": f"Bearer {CLIENT_KEY}"}
    answer = httpx.post(f"{served.url}/v1/chat/completions", json=GOOD, headers=headers, timeout=10)
    assert answer.status_code == 200


def test_the_gateway_survived(served: GatewayProcess, tmp_path: Path) -> None:
    """After all of the above the process still serves."""
    assert served.process is not None
    assert served.process.poll() is None
    assert httpx.get(f"{served.url}/healthz", timeout=5).status_code == 200
