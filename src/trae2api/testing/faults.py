"""Transport and framing faults for the fault suite: what a broken network or a broken Trae does.

Chat faults, written in the LAST user message like the other directives (the directive is
removed before the rest of the message is read; the stream it damages is the normal answer):

    [sim:fault reset-midstream]   metadata and the first outputs, a pause (0.2 s), then a TCP RST
    [sim:fault drip [MS]]         the whole answer one byte per write, MS ms apart (default 1)
    [sim:fault malformed]         metadata, one output, then lines that are not SSE, events
                                  whose data is not JSON or has the wrong shape, binary junk,
                                  then the rest of the answer (a client must skip them)
    [sim:fault oversized]         metadata, one output, then one ``data:`` line of 1 MiB + 1
                                  bytes (one byte over the gateway's SSE line limit)
    [sim:fault bad-utf8]          the answer with invalid UTF-8 bytes inside an output's data
                                  and an event name
    [sim:fault garbage]           HTTP 200 ``text/event-stream`` whose body is binary noise
                                  without a single line break (no events at all)
    [sim:fault stall-headers S]   nothing at all (not even headers) for S seconds, then HTML 504
    [sim:fault stall-midstream S] metadata and the first outputs, S seconds of silence, the rest

Directive-free faults (``POST /_sim/fault {"target", "fault", "times"}``; ``GET`` lists them,
``DELETE`` clears them; ``times`` -1 means until cleared) apply to the next requests of a
target: ``chat`` accepts the names above (applied where a directive would be: after the
request was validated, to its normal answer) and ``exchange`` (the §2 token exchange, before
its body is checked) accepts

    http STATUS        HTTP STATUS with an HTML body
    reset              a TCP RST before any byte of a response
    garbage-json       HTTP 200 ``application/json`` whose body is truncated JSON
    stall S            S seconds of silence before any byte, then HTML 504 (the refresh token
                       is never burnt by a stalled exchange)

Concurrent requests may carry different directives, so the fault suite can mix them freely.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from trae2api.testing.admin import PREFIX, json_response, read_json
from trae2api.testing.plan_sender import ResetConnection, abort_connection, encode_frame, html_error
from trae2api.testing.scenario import Frame, Plan

OVERSIZED_LINE_BYTES = 1024 * 1024 + 1  # trae2api.wire.sse.DEFAULT_MAX_LINE_BYTES + 1
RESET_PAUSE = 0.2  # lets the first bytes reach the client before the RST discards its buffer
_CHUNK = 64 * 1024
_DIRECTIVE = re.compile(r"\[sim:fault[ \t]+([a-z0-9-]+)(?:[ \t]+([0-9.]+))?\]")
CHAT_FAULTS = frozenset(
    {
        "reset-midstream",
        "drip",
        "malformed",
        "oversized",
        "bad-utf8",
        "garbage",
        "stall-headers",
        "stall-midstream",
    }
)
EXCHANGE_FAULTS = frozenset({"http", "reset", "garbage-json", "stall"})
_NEEDS_ARG = frozenset({"stall-headers", "stall-midstream", "http", "stall"})
_MALFORMED = (
    b"this line is not a field at all\n\n",
    b"event: output\ndata: {not json\n\n",
    b"event: output\ndata: [1, 2, 3]\n\n",
    b'event: output\ndata: {"response": 5, "reasoning_content": null}\n\n',
    b"\x00\x01\x02\x7f binary junk\n\n",
    b"event:\n\n",
    b"data\n\n",
    b": a comment\nretry: soon\nid: \x00\n\n",
    b'event: token_usage\ndata: {"prompt_tokens": "many"}\n\n',
    b"event: queue_end\ndata: \n\n",
)
_BAD_UTF8 = (
    b'event: output\ndata: {"response": "caf\xc3 \xff\xfe\xed\xa0\x80 ok ", '
    b'"reasoning_content": ""}\n\n',
    b"event: out\xffput\ndata: {}\n\n",
)


@dataclass(frozen=True)
class Fault:
    """One fault: its name and its number argument (seconds, milliseconds or a status)."""

    name: str
    arg: float | None = None


def parse_fault(spec: str, allowed: frozenset[str]) -> Fault:
    """``"stall 1.5"`` → ``Fault("stall", 1.5)``; ValueError for an unknown or bad fault."""
    name, _, arg = spec.strip().partition(" ")
    if name not in allowed:
        raise ValueError(f"unknown fault {name!r}; known: {', '.join(sorted(allowed))}")
    value = float(arg) if arg.strip() else None
    if (name in _NEEDS_ARG) != (value is not None) and name != "drip":
        raise ValueError(f"fault {name!r} " + ("needs" if value is None else "takes no") + " arg")
    if value is not None and not value >= 0:
        raise ValueError("a fault's argument must be a non-negative number")
    if name == "http" and value is not None and not 200 <= value <= 599:
        raise ValueError("http needs a status between 200 and 599")
    return Fault(name, value)


def find_chat_fault(text: str) -> tuple[Fault | None, str]:
    """The ``[sim:fault ...]`` directive in ``text`` (if any) and the text without it."""
    match = _DIRECTIVE.search(text)
    if match is None:
        return None, text
    spec = f"{match.group(1)} {match.group(2) or ''}"
    return parse_fault(spec, CHAT_FAULTS), _DIRECTIVE.sub(" ", text)


class FaultBoard:
    """Directive-free faults waiting for the next requests of each target (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[str, list[tuple[Fault, int]]] = {}

    def add(self, target: str, fault: Fault, times: int) -> None:
        with self._lock:
            self._pending.setdefault(target, []).append((fault, times))

    def take(self, target: str) -> Fault | None:
        """The next fault for ``target``, counting one use of it."""
        with self._lock:
            queue = self._pending.get(target)
            if not queue:
                return None
            fault, times = queue[0]
            if times == 1:
                queue.pop(0)
            elif times > 1:
                queue[0] = (fault, times - 1)
            return fault

    def listing(self) -> list[dict[str, object]]:
        with self._lock:
            return [
                {"target": target, "fault": fault.name, "arg": fault.arg, "times": times}
                for target, queue in self._pending.items()
                for fault, times in queue
            ]

    def clear(self) -> None:
        with self._lock:
            self._pending.clear()


class ByteScript(Response):
    """HTTP 200 (or ``status``) then ``(delay, bytes)`` pieces; ``abort`` ends it with a RST.

    ``headers_delay`` holds back even the status line; a client that gives up first closes
    the connection, which ends the wait early.
    """

    def __init__(
        self,
        pieces: Sequence[tuple[float, bytes]],
        *,
        media_type: str = "text/event-stream",
        abort: bool = False,
        headers_delay: float = 0.0,
    ) -> None:
        self.status_code = 200
        self.background = None
        self.pieces = pieces
        self.abort = abort
        self.headers_delay = headers_delay
        self.media_type = media_type
        self.init_headers({"cache-control": "no-cache"})

    async def _send_all(self, scope: Scope, send: Send) -> None:
        if self.headers_delay > 0:
            await asyncio.sleep(self.headers_delay)
        start = {"type": "http.response.start", "status": self.status_code}
        await send({**start, "headers": self.raw_headers})
        for delay, piece in self.pieces:
            if delay > 0:
                await asyncio.sleep(delay)
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        if self.abort:
            await asyncio.sleep(RESET_PAUSE)
            abort_connection(scope)
            return
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sender = asyncio.ensure_future(self._send_all(scope, send))
        watcher = asyncio.ensure_future(_disconnected(receive))
        try:
            await asyncio.wait([sender, watcher], return_when=asyncio.FIRST_COMPLETED)
            if sender.done():
                sender.result()
        finally:
            for task in (sender, watcher):
                task.cancel()
            await asyncio.gather(sender, watcher, return_exceptions=True)


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def _encoded(frames: Sequence[Frame]) -> list[bytes]:
    return [encode_frame(frame) for frame in frames]


def _split_after_first_output(frames: Sequence[Frame]) -> tuple[list[bytes], list[bytes]]:
    """The encoded frames up to and including the first output event, and the rest."""
    encoded = _encoded(frames)
    for index, frame in enumerate(frames):
        if frame.event == "output":
            return encoded[: index + 1], encoded[index + 1 :]
    return encoded, []


def chat_fault_response(fault: Fault, plan: Plan) -> Response:
    """The damaged form of ``plan``'s answer that ``fault`` asks for."""
    head, tail = _split_after_first_output(plan.frames)
    if fault.name == "reset-midstream":
        return ByteScript([(0.0, b"".join(head))], abort=True)
    if fault.name == "drip":
        gap = (1.0 if fault.arg is None else fault.arg) / 1000
        body = b"".join(head + tail)
        return ByteScript([(gap, body[i : i + 1]) for i in range(len(body))])
    if fault.name == "malformed":
        return ByteScript([(0.0, b"".join(head)), *((0.0, j) for j in _MALFORMED), *_now(tail)])
    if fault.name == "oversized":
        line = b"data: " + b"x" * (OVERSIZED_LINE_BYTES - 6)
        chunks = [line[i : i + _CHUNK] for i in range(0, len(line), _CHUNK)]
        return ByteScript([(0.0, b"".join(head)), *_now([*chunks, b"\n\n", *tail])])
    if fault.name == "bad-utf8":
        return ByteScript([(0.0, b"".join(head)), *_now([*_BAD_UTF8, *tail])])
    if fault.name == "garbage":
        noise = bytes(b for b in range(256) if b not in (0x0A, 0x0D)) * 16
        return ByteScript([(0.0, noise)])
    if fault.name == "stall-headers":
        return _late_html(fault.arg or 0.0)
    # stall-midstream
    return ByteScript([(0.0, b"".join(head)), (fault.arg or 0.0, b"".join(tail))])


def _now(pieces: Sequence[bytes]) -> list[tuple[float, bytes]]:
    return [(0.0, piece) for piece in pieces]


def _late_html(delay: float) -> Response:
    page = b"<html><body><h1>504 Gateway Time-out</h1></body></html>"
    response = ByteScript([(0.0, page)], media_type="text/html", headers_delay=delay)
    response.status_code = 504
    return response


def exchange_fault_response(fault: Fault) -> Response:
    """What the token exchange answers under ``fault``."""
    if fault.name == "http":
        return html_error(int(fault.arg or 500))
    if fault.name == "reset":
        return ResetConnection()
    if fault.name == "garbage-json":
        body = b'{"ResponseMetadata": {"RequestId": "x"}, "Result": {"Token": "abc'
        return ByteScript([(0.0, body)], media_type="application/json")
    return _late_html(fault.arg or 0.0)  # stall


def fault_routes(board: FaultBoard) -> list[Route]:
    """``GET|POST|DELETE /_sim/fault``: list, add and clear directive-free faults."""

    async def fault(request: Request) -> Response:
        if request.method == "DELETE":
            board.clear()
        elif request.method == "POST":
            body, ok = await read_json(request)
            try:
                target, added, times = _fault_request(body if ok else None)
            except ValueError as exc:
                return json_response({"error": str(exc)}, 400)
            board.add(target, added, times)
        return json_response({"faults": board.listing()})

    return [Route(f"{PREFIX}/fault", fault, methods=["GET", "POST", "DELETE"])]


def _fault_request(body: object) -> tuple[str, Fault, int]:
    if not isinstance(body, dict) or not isinstance(body.get("fault"), str):
        raise ValueError('a fault is {"target": "chat"|"exchange", "fault": "...", "times": N}')
    target = body.get("target", "chat")
    allowed = {"chat": CHAT_FAULTS, "exchange": EXCHANGE_FAULTS}.get(str(target))
    if allowed is None:
        raise ValueError("target must be chat or exchange")
    times = body.get("times", 1)
    if type(times) is not int or times == 0 or times < -1:
        raise ValueError("times must be a positive integer, or -1 for until cleared")
    return str(target), parse_fault(body["fault"], allowed), times
