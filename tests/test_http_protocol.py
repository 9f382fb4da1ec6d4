"""The served HTTP protocol (faces/http_protocol.py): a response head leaves with its first body."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from conftest import CLIENT_KEY, GatewayProcess, free_port, gateway_env
from trae2api.faces.http_protocol import HeadHeldTransport
from trae2api.testing import SimulatedTrae

pytestmark = pytest.mark.timeout(30)

HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n"


class Recorder:
    """A transport that records its writes (the real one is uvloop's, in the test below)."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


def held(recorder: Recorder, loop: asyncio.AbstractEventLoop) -> HeadHeldTransport:
    return HeadHeldTransport(recorder, loop)  # type: ignore[arg-type]


def test_head_and_first_body_part_are_one_write() -> None:
    """The head waits for the first body part and both go out in one write; later parts pass."""

    async def run() -> list[bytes]:
        recorder = Recorder()
        transport = held(recorder, asyncio.get_running_loop())
        transport.write(HEAD)
        assert recorder.writes == []
        transport.write(b"5\r\nhello\r\n")
        transport.write(b"0\r\n\r\n")
        await asyncio.sleep(0)  # the scheduled flush finds nothing held
        return recorder.writes

    assert asyncio.run(run()) == [HEAD + b"5\r\nhello\r\n", b"0\r\n\r\n"]


def test_a_lone_head_leaves_when_the_loop_turn_ends() -> None:
    """A head with no body part in the same turn is written at the end of that turn."""

    async def run() -> tuple[list[bytes], list[bytes]]:
        recorder = Recorder()
        transport = held(recorder, asyncio.get_running_loop())
        transport.write(HEAD)
        before = list(recorder.writes)
        await asyncio.sleep(0)
        return before, recorder.writes

    assert asyncio.run(run()) == ([], [HEAD])


def test_close_flushes_the_head_first() -> None:
    """Closing writes a held head before the connection closes."""

    async def run() -> Recorder:
        recorder = Recorder()
        transport = held(recorder, asyncio.get_running_loop())
        transport.write(HEAD)
        transport.close()
        return recorder

    recorder = asyncio.run(run())
    assert recorder.writes == [HEAD]
    assert recorder.closed


def test_a_large_first_part_is_not_copied_onto_the_head() -> None:
    """A first body part over 64 KiB follows the head in its own write, unchanged."""

    async def run() -> list[bytes]:
        recorder = Recorder()
        transport = held(recorder, asyncio.get_running_loop())
        transport.write(HEAD)
        transport.write(b"x" * 70_000)
        return recorder.writes

    assert asyncio.run(run()) == [HEAD, b"x" * 70_000]


def test_a_head_for_a_gone_client_is_dropped() -> None:
    """A head still held when the connection is already closing is not written."""

    async def run() -> list[bytes]:
        recorder = Recorder()
        transport = held(recorder, asyncio.get_running_loop())
        transport.write(HEAD)
        recorder.closed = True
        await asyncio.sleep(0)
        return recorder.writes

    assert asyncio.run(run()) == []


def test_other_attributes_reach_the_real_transport() -> None:
    """Anything but write/close/is_closing is the real transport's."""

    async def run() -> Any:
        return held(Recorder(), asyncio.get_running_loop()).get_extra_info("peername")

    assert asyncio.run(run()) == "info:peername"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    root: Path = tmp_path_factory.mktemp("protocol")
    with SimulatedTrae() as sim:
        env = gateway_env(sim, root / "data", LOG_LEVEL="WARNING")
        gateway = GatewayProcess(env, free_port(), root / "gateway.log").start()
        yield gateway
        gateway.stop()


def test_a_stream_begins_with_head_and_first_chunk_in_one_segment(
    served: GatewayProcess,
) -> None:
    """The client's first read of a streamed chat holds the head and the role chunk together."""
    body = orjson.dumps(
        {"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    )
    request = (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\n"
        + f"authorization: Bearer {CLIENT_KEY}\r\ncontent-length: {len(body)}\r\n\r\n".encode()
        + body
    )
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as sock:
        sock.sendall(request)
        first = sock.recv(1 << 20)
    head, _, rest = first.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b'"role":"assistant"' in rest
