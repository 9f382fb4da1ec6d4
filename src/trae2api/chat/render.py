"""Pure shaping and rendering of OpenAI chat responses: reasoning modes, stop, chunks, bodies.

No await, clock or randomness: the completion id and ``created`` are passed in. Chunk layout
follows OpenAI's streaming spec: one id/created/model, role first, one final finish_reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from trae2api.wire.events import ToolFragment
from trae2api.wire.translate import THINK_CLOSE, THINK_OPEN, ReasoningMode


class StopMatcher:
    """Local ``stop`` emulation: pass text through until a stop string appears, then cut.

    Text that could be the start of a stop string is held back until it is decided, so a
    stop string split across upstream deltas is still caught and never reaches the client.
    """

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = [stop for stop in stops if stop]
        self._held = ""
        self.stopped = False

    def push(self, text: str) -> str:
        if self.stopped:
            return ""
        if not self._stops:
            return text
        buffer = self._held + text
        cut = min((i for i in (buffer.find(stop) for stop in self._stops) if i >= 0), default=-1)
        if cut >= 0:
            self.stopped, self._held = True, ""
            return buffer[:cut]
        keep = self._longest_partial(buffer)
        self._held = buffer[len(buffer) - keep :]
        return buffer[: len(buffer) - keep]

    def flush(self) -> str:
        held, self._held = self._held, ""
        return "" if self.stopped else held

    def _longest_partial(self, buffer: str) -> int:
        longest = 0
        for stop in self._stops:
            for size in range(min(len(stop) - 1, len(buffer)), longest, -1):
                if buffer.endswith(stop[:size]):
                    longest = size
                    break
        return longest


class OutputShaper:
    """Applies the reasoning mode and stop strings to upstream deltas, in order."""

    def __init__(self, mode: ReasoningMode, stops: Sequence[str] = ()) -> None:
        self.mode = mode
        self._stop = StopMatcher(stops)
        self._think_open = False

    @property
    def stopped(self) -> bool:
        return self._stop.stopped

    def push(self, content: str, reasoning: str) -> tuple[str, str]:
        """What to emit now as ``(content, reasoning_content)``."""
        if self._stop.stopped:
            return "", ""
        if self.mode == "drop":
            return self._stop.push(content), ""
        if self.mode == "reasoning_content":
            return self._stop.push(content), reasoning
        return self._fold(self._stop.push(content) if content else "", reasoning), ""

    def flush(self) -> str:
        """Content still held back at the end (a partial stop string, an open think tag)."""
        tail = self._stop.flush()
        if self._think_open:
            self._think_open = False
            return THINK_CLOSE + tail
        return tail

    def _fold(self, content: str, reasoning: str) -> str:
        # think mode: reasoning travels inside <think>…</think> at the start of the content.
        out = []
        if reasoning:
            if not self._think_open:
                out.append(THINK_OPEN)
                self._think_open = True
            out.append(reasoning)
        if content and self._think_open:
            out.append(THINK_CLOSE)
            self._think_open = False
        out.append(content)
        return "".join(out)


class ChunkRenderer:
    """Renders the SSE lines of one streamed completion; the JSON frame is built once."""

    def __init__(self, completion_id: str, created: int, model: str, include_usage: bool) -> None:
        head: dict[str, Any] = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": None,
        }
        self._head = orjson.dumps(head)[:-1]
        self._usage_null = b',"usage":null' if include_usage else b""

    def _choice(self, delta: bytes, finish: bytes) -> bytes:
        return b"".join(
            (
                b"data: ",
                self._head,
                b',"choices":[{"index":0,"delta":',
                delta,
                b',"logprobs":null,"finish_reason":',
                finish,
                b"}]",
                self._usage_null,
                b"}\n\n",
            )
        )

    def role(self) -> bytes:
        return self._choice(b'{"role":"assistant","content":""}', b"null")

    def delta(self, content: str, reasoning: str) -> bytes:
        delta: dict[str, str] = {}
        if content:
            delta["content"] = content
        if reasoning:
            delta["reasoning_content"] = reasoning
        return self._choice(orjson.dumps(delta), b"null")

    def tool_calls(self, fragments: Sequence[ToolFragment]) -> bytes:
        """One chunk with ``delta.tool_calls``; id, type and name only on a call's first."""
        calls = []
        for fragment in fragments:
            call: dict[str, Any] = {"index": fragment.index}
            if fragment.id:
                call["id"] = fragment.id
                call["type"] = "function"
                call["function"] = {"name": fragment.name, "arguments": fragment.arguments}
            else:
                call["function"] = {"arguments": fragment.arguments}
            calls.append(call)
        return self._choice(orjson.dumps({"tool_calls": calls}), b"null")

    def finish(self, reason: str) -> bytes:
        return self._choice(b"{}", orjson.dumps(reason))

    def usage(self, usage: dict[str, Any]) -> bytes:
        body = self._head + b',"choices":[],"usage":' + orjson.dumps(usage) + b"}"
        return b"data: " + body + b"\n\n"


def error_event(envelope: dict[str, Any]) -> bytes:
    """An in-band error after HTTP 200 was sent (protocol §7), before ``[DONE]``."""
    return b"data: " + orjson.dumps(envelope) + b"\n\n"


def completion_body(
    *,
    completion_id: str,
    created: int,
    model: str,
    content: str,
    reasoning: str,
    finish_reason: str,
    usage: dict[str, Any],
    tool_calls: Sequence[dict[str, object]] = (),
) -> dict[str, Any]:
    """The non-streamed ``chat.completion``; ``content`` is null when only tools were called."""
    message: dict[str, Any] = {
        "role": "assistant",
        "content": None if tool_calls and not content else content,
        "refusal": None,
    }
    if reasoning:
        message["reasoning_content"] = reasoning
    if tool_calls:
        message["tool_calls"] = list(tool_calls)
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "system_fingerprint": None,
        "choices": [
            {"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}
        ],
        "usage": usage,
    }
