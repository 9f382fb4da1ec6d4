"""Prompt-level tool calling for the legacy endpoint: the instruction, history rendering, parsing.

Pure: no I/O, clock, randomness or env; it never decides *whether* to bridge (the caller does).

The format (our choice). A call is a block in the assistant text; several calls are several
consecutive blocks; whitespace around the JSON is allowed::

    <tool_call>
    {"name": "get_weather", "arguments": {"city": "Paris"}}
    </tool_call>

``arguments`` is an object, or a JSON string holding an object (normalised to the object's
compact JSON text); missing means ``{}``. Extra keys are ignored. Anything else inside a block
(invalid JSON, wrong types, trailing junk) makes the whole raw block plain text. Tool results go
back to the model as one user turn holding one block per result, in order::

    <tool_response name="get_weather" id="call_abc">
    {"temp": 21}
    </tool_response>

Parsing decisions: whitespace-only text between two calls is dropped, all other text (including
whitespace before the first or after the last call) is kept in order; an unterminated block is
text at ``close()``; if a block contains a second ``<tool_call>``, the abandoned first part is text
and the last one is parsed. Markdown fences around blocks are *not* stripped: dropping an opening
fence would mean holding back ordinary text, so the instruction forbids fences instead.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from typing import Any

CALL_OPEN = "<tool_call>"
CALL_CLOSE = "</tool_call>"
_ESCAPED_CLOSE = "<\\/tool_call>"


@dataclass(frozen=True, slots=True)
class TextPiece:
    text: str


@dataclass(frozen=True, slots=True)
class CallPiece:
    name: str
    arguments: str  # compact JSON text of an object


Piece = TextPiece | CallPiece

_EXAMPLE = CALL_OPEN + '\n{"name": "example_tool", "arguments": {"key": "value"}}\n' + CALL_CLOSE


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _reject_constant(token: str) -> Any:
    # NaN/Infinity are not JSON; accepting them would hand clients unparseable arguments.
    raise ValueError(token)


def _loads(text: str) -> Any:
    return json.loads(text, parse_constant=_reject_constant)


def _tool_entry(tool: dict[str, Any]) -> str | None:
    fn = tool.get("function")
    spec: dict[str, Any] = fn if isinstance(fn, dict) else tool
    name = spec.get("name")
    if not isinstance(name, str) or not name:
        return None
    entry = f"- {name}"
    description = spec.get("description")
    if isinstance(description, str) and description.strip():
        entry += f": {description.strip()}"
    parameters = spec.get("parameters") or {"type": "object", "properties": {}}
    return f"{entry}\n  parameters (JSON schema): {_compact(parameters)}"


def _choice_rule(tool_choice: str | dict[str, Any] | None) -> str:
    if isinstance(tool_choice, dict):
        fn = tool_choice.get("function")
        name = fn.get("name") if isinstance(fn, dict) else None
        if isinstance(name, str) and name:
            return f"You must call the tool {name} now."
    if tool_choice == "required":
        return "You must call at least one tool now."
    return "Call a tool only when it helps; otherwise answer normally, without any block."


def tool_instruction(
    tools: list[dict[str, Any]],
    tool_choice: str | dict[str, Any] | None,
    parallel_tool_calls: bool = True,
) -> str:
    """The system instruction that teaches the model the tools and the block format."""
    entries = [entry for entry in map(_tool_entry, tools) if entry is not None]
    count_rule = (
        "Several calls are several consecutive blocks."
        if parallel_tool_calls
        else "Make at most one call per reply."
    )
    lines = [
        "You can call these tools:",
        *entries,
        "",
        "To call a tool, write a block exactly like this example (example_tool is only an "
        "illustration), with arguments as a JSON object matching the tool's parameters:",
        _EXAMPLE,
        "",
        "Emit calls only as such blocks, never inside code fences. Inside a block put that one "
        f"JSON object and nothing else (no prose). {count_rule}",
        "After your calls, stop: each result comes back to you as a "
        '<tool_response name="..." id="..."> block.',
        _choice_rule(tool_choice),
    ]
    return "\n".join(lines)


def _call_block(name: str, arguments: Any) -> str:
    body = json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False)
    # '<' only occurs inside JSON strings, so "<\/" (a valid JSON escape) keeps the block
    # from being closed early by an argument that happens to contain the closing marker.
    body = body.replace(CALL_CLOSE, _ESCAPED_CLOSE)
    return f"{CALL_OPEN}\n{body}\n{CALL_CLOSE}"


def _history_arguments(raw: Any) -> Any:
    if isinstance(raw, dict):
        return raw
    if not isinstance(raw, str) or not raw.strip():
        return {}
    try:
        value = _loads(raw)
    except (ValueError, RecursionError):
        return raw  # shown as written; the model sees what it sent
    return value if isinstance(value, dict) else raw


def render_assistant_calls(content: str | None, tool_calls: list[dict[str, Any]]) -> str:
    """An assistant history message with OpenAI ``tool_calls``, as the model would write it."""
    parts = [content] if content else []
    for call in tool_calls:
        fn = call.get("function")
        spec: dict[str, Any] = fn if isinstance(fn, dict) else {}
        parts.append(
            _call_block(str(spec.get("name", "")), _history_arguments(spec.get("arguments")))
        )
    return "\n".join(parts)


def render_tool_results(results: list[tuple[str, str, str]]) -> str:
    """Consecutive tool results ``(tool_call_id, name, content)`` as one user-turn text."""
    blocks = [
        f'<tool_response name="{html.escape(name)}" id="{html.escape(call_id)}">\n'
        f"{content}\n</tool_response>"
        for call_id, name, content in results
    ]
    return "\n".join(blocks)


def parse_call(body: str) -> CallPiece | None:
    """The call in a block's inner text, or None when it is not exactly one valid call."""
    try:
        obj = _loads(body)
    except (ValueError, RecursionError):
        return None
    if not isinstance(obj, dict):
        return None
    name = obj.get("name")
    if not isinstance(name, str) or not name.strip():
        return None
    arguments = obj.get("arguments", {})
    if isinstance(arguments, str):
        try:
            arguments = _loads(arguments)
        except (ValueError, RecursionError):
            return None
    if not isinstance(arguments, dict):
        return None
    return CallPiece(name, _compact(arguments))


def _prefix_start(buffer: str) -> int:
    """Where a trailing proper prefix of ``<tool_call>`` begins, else ``len(buffer)``."""
    # The marker has a single '<', so only the last '<' in the final 10 chars can start one.
    pos = buffer.rfind("<", max(0, len(buffer) - len(CALL_OPEN) + 1))
    if pos >= 0 and CALL_OPEN.startswith(buffer[pos:]):
        return pos
    return len(buffer)


class ToolCallParser:
    """Incremental: feed streamed assistant text, get text and calls out in order."""

    def __init__(self) -> None:
        self._held = ""  # outside a block: whitespace after a call and/or a partial marker
        self._inside = False
        self._parts: list[str] = []  # inside a block: its text so far
        self._tail = ""  # last len(CALL_CLOSE)-1 chars of the block, to catch a split marker
        self._lead = ""  # whitespace before the open block: dropped if the block is a call
        self._after_call = False
        self._saw_call = False

    @property
    def saw_call(self) -> bool:
        return self._saw_call

    def feed(self, text: str) -> list[Piece]:
        out: list[Piece] = []
        pending = text
        while pending:
            pending = (
                self._feed_inside(pending, out)
                if self._inside
                else self._feed_outside(pending, out)
            )
        return out

    def close(self) -> list[Piece]:
        """End of stream: flush what is held; an unterminated block is text."""
        out: list[Piece] = []
        if self._inside:
            self._emit(out, self._lead + CALL_OPEN + "".join(self._parts))
        else:
            self._emit(out, self._held)
        self._held, self._inside, self._parts, self._tail, self._lead = "", False, [], "", ""
        self._after_call = False
        return out

    def _emit(self, out: list[Piece], text: str) -> None:
        if not text:
            return
        self._after_call = False
        if out and isinstance(out[-1], TextPiece):
            out[-1] = TextPiece(out[-1].text + text)
        else:
            out.append(TextPiece(text))

    def _feed_outside(self, text: str, out: list[Piece]) -> str:
        """Consume text outside a block; returns what follows an opening marker, if any."""
        buffer, self._held = self._held + text, ""
        at = buffer.find(CALL_OPEN)
        if at >= 0:
            before = buffer[:at]
            if self._after_call and before.isspace():
                self._lead = before
            else:
                self._emit(out, before)
            self._inside, self._parts, self._tail = True, [], ""
            return buffer[at + len(CALL_OPEN) :]
        cut = _prefix_start(buffer)
        if self._after_call and (cut == 0 or buffer[:cut].isspace()):
            # Whitespace after a call is dropped if another call follows: wait and see.
            self._held = buffer
            return ""
        self._emit(out, buffer[:cut])
        self._held = buffer[cut:]
        return ""

    def _feed_inside(self, text: str, out: list[Piece]) -> str:
        """Consume block text; returns what follows the closing marker, if any."""
        probe = self._tail + text
        at = probe.find(CALL_CLOSE)
        if at < 0:
            self._parts.append(text)
            self._tail = probe[-(len(CALL_CLOSE) - 1) :]
            return ""
        whole = "".join(self._parts) + text
        end = len(whole) - len(probe) + at
        self._inside, self._parts, self._tail = False, [], ""
        self._finish_block(whole[:end], out)
        return whole[end + len(CALL_CLOSE) :]

    def _finish_block(self, body: str, out: list[Piece]) -> None:
        lead, self._lead = self._lead, ""
        inner = body.rfind(CALL_OPEN)
        if inner >= 0:
            # A block re-opened before closing: the abandoned start is text, the last one counts.
            self._emit(out, lead + CALL_OPEN + body[:inner])
            lead, body = "", body[inner + len(CALL_OPEN) :]
        call = parse_call(body)
        if call is None:
            self._emit(out, lead + CALL_OPEN + body + CALL_CLOSE)
            return
        out.append(call)
        self._after_call = self._saw_call = True
