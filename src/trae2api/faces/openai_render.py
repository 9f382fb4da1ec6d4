"""OpenAI chat rendering: the neutral answer events as SSE chunks, and the whole-answer body.

Pure: no await, clock or randomness (the completion id and ``created`` are passed in). Chunk
layout follows OpenAI's streaming spec: one id/created/model, role first, one final
finish_reason, the usage chunk only when asked for, then ``[DONE]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from trae2api.chat.answer_events import (
    AnswerFold,
    Failed,
    Finish,
    Keepalive,
    Queued,
    ReasoningDelta,
    Started,
    Steps,
    TextDelta,
    ToolCallArgs,
    ToolCallStart,
)
from trae2api.wire.events import ToolFragment
from trae2api.wire.sse import DONE, encode_comment


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


class OpenAIChatRenderer:
    """Steps of neutral events to SSE bytes; each step's text and tool calls share a chunk."""

    def __init__(self, completion_id: str, created: int, model: str, include_usage: bool) -> None:
        self._chunks = ChunkRenderer(completion_id, created, model, include_usage)
        self._include_usage = include_usage

    def render(self, steps: Steps) -> bytes:
        out: list[bytes] = []
        for step in steps:
            content, reasoning = "", ""
            fragments: list[ToolFragment] = []
            start: ToolCallStart | None = None
            for event in step:
                if isinstance(event, TextDelta):
                    content += event.text
                elif isinstance(event, ReasoningDelta):
                    reasoning += event.text
                elif isinstance(event, ToolCallStart):
                    start = event
                elif isinstance(event, ToolCallArgs):
                    # A call's first args fragment carries its id, type and name.
                    head = ("", "") if start is None else (start.id, start.name)
                    fragments.append(ToolFragment(event.index, *head, event.arguments))
                    start = None
                else:
                    self._other(event, out)
            if content or reasoning:
                out.append(self._chunks.delta(content, reasoning))
            if fragments:
                out.append(self._chunks.tool_calls(fragments))
            if step and isinstance(step[-1], Finish | Failed):
                self._end(step[-1], out)
        return b"".join(out)

    def _other(self, event: object, out: list[bytes]) -> None:
        if isinstance(event, Started):
            out.append(self._chunks.role())
        elif isinstance(event, Queued):
            position = event.position if event.position else "?"
            out.append(encode_comment(f"queued position={position}"))
        elif isinstance(event, Keepalive):
            out.append(encode_comment("keepalive"))

    def _end(self, event: Finish | Failed, out: list[bytes]) -> None:
        if isinstance(event, Failed):
            out.append(error_event(event.error.envelope()) + DONE)
            return
        out.append(self._chunks.finish(event.reason))
        if self._include_usage:
            out.append(self._chunks.usage(event.usage))
        out.append(DONE)


def completion_from(
    fold: AnswerFold, *, completion_id: str, created: int, model: str
) -> dict[str, Any]:
    """The non-streamed ``chat.completion`` for a folded answer."""
    assert fold.finish is not None  # the fold ends with Finish or raises
    calls: list[dict[str, object]] = [
        {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
        for c in fold.tool_calls
    ]
    return completion_body(
        completion_id=completion_id,
        created=created,
        model=model,
        content=fold.text,
        reasoning=fold.thought,
        finish_reason=fold.finish.reason,
        usage=fold.finish.usage,
        tool_calls=calls,
    )
