"""The neutral answer events rendered as Anthropic Messages: SSE events, or one message object.

Pure: no I/O, clock or randomness (ids and the signing key are passed in). The stream grammar:
``message_start`` → ``ping`` → per content block ``content_block_start`` / ``content_block_delta``
(``text_delta``, ``thinking_delta``, ``signature_delta``, ``input_json_delta``) /
``content_block_stop`` → one ``message_delta`` (stop reason, usage) → ``message_stop``; ``ping``
during upstream silence; an ``error`` event for a failure mid-stream; no ``[DONE]``.

Thinking signatures: Trae has no signed reasoning, so a thinking block's ``signature`` is the
base64 HMAC-SHA256 of its text under a per-process key. Thinking sent back in history is accepted
whatever its signature and is not forwarded (Trae takes no reasoning input).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

import orjson

from trae2api.chat.answer_events import (
    AnswerFold,
    Failed,
    Finish,
    Keepalive,
    Queued,
    ReasoningDelta,
    Steps,
    TextDelta,
    ToolCallArgs,
    ToolCallEnd,
    ToolCallStart,
)
from trae2api.errors import ApiError

_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    529: "overloaded_error",
}


def is_anthropic_path(path: str) -> bool:
    """Whether errors on ``path`` take Anthropic's envelope (``/v1/messages`` and below)."""
    return path == "/v1/messages" or path.startswith("/v1/messages/")


def sign_thinking(key: bytes, thinking: str) -> str:
    """A thinking block's signature: base64 of HMAC-SHA256(key, text)."""
    return base64.b64encode(hmac.new(key, thinking.encode(), hashlib.sha256).digest()).decode()


def error_body(error: ApiError) -> dict[str, Any]:
    """Anthropic's error envelope for one of our errors, typed by its status."""
    kind = _ERROR_TYPES.get(error.status)
    if kind is None:
        kind = "invalid_request_error" if 400 <= error.status < 500 else "api_error"
    return {"type": "error", "error": {"type": kind, "message": error.message}}


def stop_reason(finish: Finish) -> str:
    if finish.stop_sequence is not None:
        return "stop_sequence"
    return _STOP_REASONS.get(
        finish.reason, "refusal" if finish.reason == "content_filter" else "end_turn"
    )


def usage_of(finish: Finish | None, input_estimate: int) -> dict[str, int]:
    """Anthropic usage: Trae's counts when it reported them, else the gateway's estimates."""
    usage = finish.usage if finish else {}
    prompt = usage.get("prompt_tokens")
    return {
        "input_tokens": input_estimate if usage.get("estimated") or prompt is None else prompt,
        "output_tokens": int(usage.get("completion_tokens") or 0),
    }


def message_from(
    fold: AnswerFold, *, message_id: str, model: str, input_estimate: int, key: bytes
) -> dict[str, Any]:
    """The non-streamed answer: one ``message`` object."""
    content: list[dict[str, Any]] = []
    if fold.thought:
        thinking = fold.thought
        content.append(
            {"type": "thinking", "thinking": thinking, "signature": sign_thinking(key, thinking)}
        )
    if fold.text:
        content.append({"type": "text", "text": fold.text})
    for call in fold.tool_calls:
        content.append(
            {
                "type": "tool_use",
                "id": call.id,
                "name": call.name,
                "input": tool_input(call.arguments),
            }
        )
    finish = fold.finish
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason(finish) if finish else "end_turn",
        "stop_sequence": finish.stop_sequence if finish else None,
        "usage": usage_of(finish, input_estimate),
    }


def tool_input(arguments: str) -> dict[str, Any]:
    """A call's JSON arguments as the ``input`` object (``{}`` when they are not an object)."""
    try:
        value = orjson.loads(arguments or "{}")
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def sse(event: str, data: dict[str, Any]) -> bytes:
    """One SSE event: ``event:`` line, ``data:`` line (its ``type`` first), blank line."""
    return (
        b"event: " + event.encode() + b"\ndata: " + orjson.dumps({"type": event, **data}) + b"\n\n"
    )


@dataclass
class _Block:
    kind: str  # text | thinking | tool_use
    index: int
    thinking: str = ""


class AnthropicStreamRenderer:
    """Renders steps of answer events as Anthropic SSE bytes, one block open at a time."""

    def __init__(self, *, message_id: str, model: str, input_estimate: int, key: bytes) -> None:
        self._id, self._model, self._input = message_id, model, input_estimate
        self._key = key
        self._started = False
        self._block: _Block | None = None
        self._count = 0

    def render(self, steps: Steps) -> bytes:
        out = bytearray()
        if not self._started:
            self._started = True
            out += self._message_start()
        for step in steps:
            for event in step:
                out += self._event(event)
        return bytes(out)

    def _message_start(self) -> bytes:
        message: dict[str, Any] = {
            "id": self._id,
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": self._input, "output_tokens": 0},
        }
        return sse("message_start", {"message": message}) + sse("ping", {})

    def _event(self, event: object) -> bytes:
        if isinstance(event, TextDelta):
            return self._delta("text", {"type": "text_delta", "text": event.text}, event.text)
        if isinstance(event, ReasoningDelta):
            delta = {"type": "thinking_delta", "thinking": event.text}
            return self._delta("thinking", delta, event.text)
        if isinstance(event, ToolCallStart):
            block = {"type": "tool_use", "id": event.id, "name": event.name, "input": {}}
            return self._close() + self._open("tool_use", block)
        if isinstance(event, ToolCallArgs) and event.arguments:
            delta = {"type": "input_json_delta", "partial_json": event.arguments}
            return self._block_delta(delta)
        if isinstance(event, ToolCallEnd):
            return self._close()
        if isinstance(event, Keepalive | Queued):
            return sse("ping", {})
        if isinstance(event, Finish):
            return self._finish(event)
        if isinstance(event, Failed):
            return self._close() + sse("error", {"error": error_body(event.error)["error"]})
        return b""

    def _delta(self, kind: str, delta: dict[str, Any], text: str) -> bytes:
        if not text:
            return b""
        out = b""
        if self._block is None or self._block.kind != kind:
            start: dict[str, Any] = {"type": kind, kind: ""}
            if kind == "thinking":
                start["signature"] = ""
            out = self._close() + self._open(kind, start)
        assert self._block is not None
        self._block.thinking += text if kind == "thinking" else ""
        return out + self._block_delta(delta)

    def _open(self, kind: str, block: dict[str, Any]) -> bytes:
        self._block = _Block(kind, self._count)
        self._count += 1
        return sse("content_block_start", {"index": self._block.index, "content_block": block})

    def _block_delta(self, delta: dict[str, Any]) -> bytes:
        if self._block is None:
            return b""
        return sse("content_block_delta", {"index": self._block.index, "delta": delta})

    def _close(self) -> bytes:
        block, self._block = self._block, None
        if block is None:
            return b""
        out = b""
        if block.kind == "thinking":
            signature = sign_thinking(self._key, block.thinking)
            delta = {"type": "signature_delta", "signature": signature}
            out = sse("content_block_delta", {"index": block.index, "delta": delta})
        return out + sse("content_block_stop", {"index": block.index})

    def _finish(self, finish: Finish) -> bytes:
        delta = {"stop_reason": stop_reason(finish), "stop_sequence": finish.stop_sequence}
        usage = usage_of(finish, self._input)
        return (
            self._close()
            + sse("message_delta", {"delta": delta, "usage": usage})
            + sse("message_stop", {})
        )
