"""Sending a ``Plan`` over the wire: SSE framing, disconnect-aware streaming, abrupt resets.

It owns the timing and the stream counters' start/finish calls; it must not decide content.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from typing import Any, Protocol

import orjson
from starlette.responses import HTMLResponse, Response
from starlette.types import Receive, Scope, Send

from trae2api.testing.scenario import Frame, Plan

RAW_SEND_KEY = "trae2api.sim.raw_send"
COMPACT_PREAMBLE = b": simulated upstream, compact framing\n"


class StreamTracker(Protocol):
    def stream_started(self) -> None: ...

    def stream_finished(self, completed: bool) -> None: ...


def encode_frame(
    frame: Frame, *, compact: bool = False, seq: int = 0, agent: bool = False
) -> bytes:
    """``event: <name>\\ndata: <json>\\n\\n``, or the lenient variant of protocol §6, or (``agent``)
    the agent dialect's norm ``event:<name>\\ndata:<json>\\n`` with no blank line."""
    payload = frame.raw if frame.raw is not None else orjson.dumps(frame.data).decode()
    if agent:
        return f"event:{frame.event}\ndata:{payload}\n".encode()
    if compact:
        return f"id:{seq}\nevent:{frame.event}\ndata:{payload}\n".encode()
    return f"event: {frame.event}\ndata: {payload}\n\n".encode()


async def _wait_for_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


class EventStreamResponse(Response):
    """Streams frames with their delays; when the client goes away, stops at once.

    Starlette's own streaming only notices a disconnect when a write fails on some ASGI
    versions; this one always races the sender against ``receive()`` so that a stream asleep
    between events is cancelled (and counted) as soon as the connection drops.
    """

    media_type = "text/event-stream"

    def __init__(
        self,
        frames: tuple[Frame, ...],
        tracker: StreamTracker,
        *,
        compact: bool,
        agent: bool = False,
    ) -> None:
        self.status_code = 200
        self.background = None
        self.frames = frames
        self.tracker = tracker
        self.compact = compact
        self.agent = agent
        self.finished = False
        self.init_headers({"cache-control": "no-cache", "x-accel-buffering": "no"})

    def _finish(self, completed: bool) -> None:
        if not self.finished:
            self.finished = True
            self.tracker.stream_finished(completed)

    async def _produce(self, send: Send) -> None:
        if self.compact:
            await send({"type": "http.response.body", "body": COMPACT_PREAMBLE, "more_body": True})
        for seq, frame in enumerate(self.frames, start=1):
            if frame.delay > 0:
                await asyncio.sleep(frame.delay)
            body = encode_frame(frame, compact=self.compact, seq=seq, agent=self.agent)
            await send({"type": "http.response.body", "body": body, "more_body": True})
        self._finish(completed=True)  # before the last byte, so a client never sees it stale
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.tracker.stream_started()
        tasks: list[asyncio.Task[None]] = []
        try:
            start = {"type": "http.response.start", "status": 200, "headers": self.raw_headers}
            await send(start)
            producer = asyncio.ensure_future(self._produce(send))
            tasks = [producer, asyncio.ensure_future(_wait_for_disconnect(receive))]
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if producer.done() and not producer.cancelled():
                producer.result()  # re-raises a failure of the producer
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._finish(completed=False)  # no-op when the producer got to the end


class ResetConnection(Response):
    """Closes the TCP connection with an RST before any byte of a response.

    ASGI has no way to do this, so it reaches uvicorn's transport through the server's own
    ``send`` (stored in the scope by the app); the client sees a connection reset
    (``httpx.ReadError``) or "server disconnected" (``httpx.RemoteProtocolError``). Without
    a reachable transport it raises, which uvicorn turns into a plain 500.
    """

    def __init__(self) -> None:
        self.status_code = 0
        self.background = None
        self.init_headers({})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        abort_connection(scope)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(_wait_for_disconnect(receive), timeout=2.0)


def abort_connection(scope: Scope) -> None:
    """Reset this request's TCP connection now (SO_LINGER 0, then abort: the peer gets a RST);
    bytes already sent stay sent."""
    cycle = getattr(scope.get(RAW_SEND_KEY), "__self__", None)
    transport: Any = getattr(cycle, "transport", None)
    if transport is None or not hasattr(transport, "abort"):
        raise RuntimeError("a reset needs uvicorn's transport; answering 500 instead")
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError, AttributeError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def html_error(status: int) -> Response:
    """What a load balancer in front of Trae answers: an HTML page, not JSON."""
    page = f"<html><head><title>{status}</title></head><body><h1>{status}</h1></body></html>"
    return HTMLResponse(page, status_code=status)


def respond(plan: Plan, tracker: StreamTracker) -> Response:
    """The response a plan asks for: an HTML error, a reset connection or an event stream."""
    if plan.http_status is not None:
        return html_error(plan.http_status)
    if plan.reset:
        return ResetConnection()
    return EventStreamResponse(plan.frames, tracker, compact=plan.compact, agent=plan.agent)
