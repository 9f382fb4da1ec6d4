"""The neutral answer events rendered as OpenAI Responses: SSE events, or one response object.

Pure: no I/O, clock or randomness (ids and times are passed in). The stream grammar:
``response.created`` → ``response.in_progress`` → per output item ``response.output_item.added``
→ its events → ``response.output_item.done`` → ``response.completed`` (``response.incomplete``
when the token limit ended it) with the full ``output`` and usage. Items: ``reasoning`` (summary
text: ``response.reasoning_summary_part.added``, ``…_text.delta``/``.done``, ``…_part.done``),
``message`` (``response.content_part.added``, ``response.output_text.delta``/``.done``,
``response.content_part.done``), ``function_call`` (``response.function_call_arguments.delta``/
``.done``) and ``custom_tool_call`` (``response.custom_tool_call_input.delta``/``.done``; the
raw input is known once the call's arguments are complete). Every event carries ``type`` and an
increasing ``sequence_number``; a failure mid-stream is ``response.failed``. Silence is an SSE
comment (the grammar has no ping).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from trae2api.chat.answer_events import (
    AnswerFold,
    Failed,
    Finish,
    FoldedCall,
    Keepalive,
    Queued,
    ReasoningDelta,
    Steps,
    TextDelta,
    ToolCallArgs,
    ToolCallEnd,
    ToolCallStart,
)


@dataclass(frozen=True)
class ResponseShell:
    """What every rendering of one response shares: ids, time, the echoed request settings."""

    id: str
    created_at: int
    model: str
    custom_tools: frozenset[str]
    echo: dict[str, Any] = field(default_factory=dict)

    def item_id(self, prefix: str, index: int) -> str:
        return f"{prefix}_{self.id.removeprefix('resp_')}{index:03d}"

    def response(
        self, status: str, output: list[dict[str, Any]], usage: dict[str, Any] | None
    ) -> dict[str, Any]:
        incomplete = {"reason": "max_output_tokens"} if status == "incomplete" else None
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "model": self.model,
            "output": output,
            "usage": usage,
            "error": None,
            "incomplete_details": incomplete,
            **self.echo,
        }


def usage_of(finish: Finish | None, input_estimate: int) -> dict[str, Any]:
    """Responses usage: Trae's counts when it reported them, else the gateway's estimates."""
    usage = finish.usage if finish else {}
    prompt = usage.get("prompt_tokens")
    inputs = input_estimate if usage.get("estimated") or prompt is None else int(prompt)
    outputs = int(usage.get("completion_tokens") or 0)
    return {
        "input_tokens": inputs,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": outputs,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": inputs + outputs,
    }


def status_of(finish: Finish | None) -> str:
    return "incomplete" if finish is not None and finish.reason == "length" else "completed"


def reasoning_item(item_id: str, text: str) -> dict[str, Any]:
    summary = [{"type": "summary_text", "text": text}] if text else []
    return {"id": item_id, "type": "reasoning", "summary": summary}


def message_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    """An assistant message item: its text part once completed, no parts while in progress."""
    done = status == "completed"
    content = [{"type": "output_text", "text": text, "annotations": []}] if done else []
    return {
        "id": item_id,
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": content,
    }


def call_item(
    shell: ResponseShell, item_id: str, call: FoldedCall, status: str = "completed"
) -> dict[str, Any]:
    """A finished (or just opened) call: ``custom_tool_call`` for custom tools."""
    done = status == "completed"
    if call.name in shell.custom_tools:
        raw = custom_input(call.arguments) if done else ""
        item = {"type": "custom_tool_call", "input": raw}
    else:
        item = {"type": "function_call", "arguments": call.arguments if done else ""}
    item_id = item_id.replace("fc_", "ctc_") if item["type"] == "custom_tool_call" else item_id
    return {"id": item_id, **item, "status": status, "call_id": call.id, "name": call.name}


def custom_input(arguments: str) -> str:
    """A custom tool call's raw input: the ``input`` string of its JSON arguments."""
    try:
        value = orjson.loads(arguments or "{}")
    except orjson.JSONDecodeError:
        return arguments
    if isinstance(value, dict) and isinstance(value.get("input"), str):
        return str(value["input"])
    return arguments


def response_from(fold: AnswerFold, shell: ResponseShell, input_estimate: int) -> dict[str, Any]:
    """The non-streamed answer: one ``response`` object."""
    output: list[dict[str, Any]] = []
    if fold.thought:
        output.append(reasoning_item(shell.item_id("rs", len(output)), fold.thought))
    if fold.text:
        output.append(message_item(shell.item_id("msg", len(output)), fold.text))
    for call in fold.tool_calls:
        output.append(call_item(shell, shell.item_id("fc", len(output)), call))
    return shell.response(status_of(fold.finish), output, usage_of(fold.finish, input_estimate))


@dataclass
class _Open:
    kind: str  # reasoning | message | call
    index: int
    item: dict[str, Any]
    text: str = ""
    call: FoldedCall | None = None


class ResponsesStreamRenderer:
    """Renders steps of answer events as Responses SSE bytes, one output item open at a time."""

    def __init__(self, shell: ResponseShell, input_estimate: int) -> None:
        self._shell, self._input = shell, input_estimate
        self._sequence = 0
        self._open: _Open | None = None
        self.output: list[dict[str, Any]] = []
        self.final: dict[str, Any] | None = None  # the response once it ended well

    def render(self, steps: Steps) -> bytes:
        out = bytearray()
        if self._sequence == 0:
            start = self._shell.response("in_progress", [], None)
            out += self._sse("response.created", response=start)
            out += self._sse("response.in_progress", response=start)
        for step in steps:
            for event in step:
                out += self._event(event)
        return bytes(out)

    def _sse(self, kind: str, **data: Any) -> bytes:
        body = {"type": kind, "sequence_number": self._sequence, **data}
        self._sequence += 1
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(body) + b"\n\n"

    def _event(self, event: object) -> bytes:
        if isinstance(event, TextDelta):
            return self._text("message", event.text)
        if isinstance(event, ReasoningDelta):
            return self._text("reasoning", event.text)
        if isinstance(event, ToolCallStart):
            out = self._close()
            call, index = FoldedCall(event.index, event.id, event.name), len(self.output)
            item = call_item(self._shell, self._shell.item_id("fc", index), call, "in_progress")
            return out + self._add(_Open("call", index, item, call=call))
        if isinstance(event, ToolCallArgs) and event.arguments and self._open and self._open.call:
            self._open.call.arguments += event.arguments
            if self._open.item["type"] == "custom_tool_call":
                return b""  # the raw input is known once the arguments are complete
            return self._sse(
                "response.function_call_arguments.delta", **self._where(), delta=event.arguments
            )
        if isinstance(event, ToolCallEnd):
            return self._close()
        if isinstance(event, Keepalive | Queued):
            return b": keepalive\n\n"
        if isinstance(event, Finish):
            return self._finish(event)
        if isinstance(event, Failed):
            error = {"code": event.error.code or event.error.type, "message": event.error.message}
            failed = self._shell.response("failed", self.output, None) | {"error": error}
            return self._close() + self._sse("response.failed", response=failed)
        return b""

    def _where(self) -> dict[str, Any]:
        assert self._open is not None
        return {"item_id": self._open.item["id"], "output_index": self._open.index}

    def _add(self, opened: _Open) -> bytes:
        self._open = opened
        out = self._sse("response.output_item.added", output_index=opened.index, item=opened.item)
        if opened.kind == "message":
            part = {"type": "output_text", "text": "", "annotations": []}
            out += self._sse(
                "response.content_part.added", **self._where(), content_index=0, part=part
            )
        elif opened.kind == "reasoning":
            part = {"type": "summary_text", "text": ""}
            out += self._sse(
                "response.reasoning_summary_part.added", **self._where(), summary_index=0, part=part
            )
        return out

    def _text(self, kind: str, text: str) -> bytes:
        if not text:
            return b""
        out = b""
        if self._open is None or self._open.kind != kind:
            out = self._close()
            index = len(self.output)
            if kind == "message":
                item = message_item(self._shell.item_id("msg", index), "", "in_progress")
            else:
                item = {"id": self._shell.item_id("rs", index), "type": "reasoning", "summary": []}
            out += self._add(_Open(kind, index, item))
        assert self._open is not None
        self._open.text += text
        if kind == "message":
            return out + self._sse(
                "response.output_text.delta",
                **self._where(),
                content_index=0,
                delta=text,
                logprobs=[],
            )
        return out + self._sse(
            "response.reasoning_summary_text.delta", **self._where(), summary_index=0, delta=text
        )

    def _close(self) -> bytes:
        opened, self._open = self._open, None
        if opened is None:
            return b""
        self._open = opened  # for _where
        where = self._where()
        self._open = None
        out = b""
        if opened.kind == "message":
            item = message_item(opened.item["id"], opened.text)
            part = item["content"][0]
            out += self._sse(
                "response.output_text.done", **where, content_index=0, text=opened.text, logprobs=[]
            )
            out += self._sse("response.content_part.done", **where, content_index=0, part=part)
        elif opened.kind == "reasoning":
            item = reasoning_item(opened.item["id"], opened.text)
            part = {"type": "summary_text", "text": opened.text}
            out += self._sse(
                "response.reasoning_summary_text.done", **where, summary_index=0, text=opened.text
            )
            out += self._sse(
                "response.reasoning_summary_part.done", **where, summary_index=0, part=part
            )
        else:
            assert opened.call is not None
            item = call_item(self._shell, opened.item["id"], opened.call)
            if item["type"] == "custom_tool_call":
                out += self._sse(
                    "response.custom_tool_call_input.delta", **where, delta=item["input"]
                )
                out += self._sse(
                    "response.custom_tool_call_input.done", **where, input=item["input"]
                )
            else:
                out += self._sse(
                    "response.function_call_arguments.done",
                    **where,
                    name=item["name"],
                    arguments=item["arguments"],
                )
        self.output.append(item)
        return out + self._sse("response.output_item.done", output_index=opened.index, item=item)

    def _finish(self, finish: Finish) -> bytes:
        out = self._close()
        status = status_of(finish)
        self.final = self._shell.response(status, self.output, usage_of(finish, self._input))
        kind = "response.incomplete" if status == "incomplete" else "response.completed"
        return out + self._sse(kind, response=self.final)
