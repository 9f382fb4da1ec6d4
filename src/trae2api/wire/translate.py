"""Pure translation of OpenAI chat requests: the conversation, and the legacy chat body (§5).

No await, clock, randomness or environment here: callers pass ids, times and settings in.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from trae2api.errors import InvalidRequest

ReasoningMode = Literal["reasoning_content", "think", "drop"]

_ROLES = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
    "tool": "tool",
}
_THINK_BLOCK = re.compile(r"^\s*<think>.*?</think>\s*", re.DOTALL)
CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")
# A fixed namespace so every replica derives the same session id (protocol §5 CHOICE).
_SESSION_NAMESPACE = uuid.UUID("6f1c7a52-3b8e-4c1e-9d7e-2a5b8c9d0e11")
THINK_OPEN = "<think>\n"
THINK_CLOSE = "\n</think>\n\n"


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A function call the assistant made; ``arguments`` is JSON text, as OpenAI sends it."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class ImagePart:
    """An image a message refers to: a ``data:`` or ``http(s)`` URL, and where it was sent."""

    url: str
    param: str


@dataclass(frozen=True, slots=True)
class Turn:
    """One conversation message: role and text, plus the tool-calling fields OpenAI has."""

    role: str  # system | user | assistant | tool
    text: str
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    images: tuple[ImagePart, ...] = ()


@dataclass(frozen=True)
class ChatRequest:
    """A validated OpenAI chat request, reduced to what trae2api acts on."""

    model: str
    turns: list[Turn]
    stream: bool = False
    include_usage: bool = False
    stops: tuple[str, ...] = ()
    reasoning_mode: ReasoningMode = "reasoning_content"
    client_name: str = "anonymous"
    tools: tuple[dict[str, Any], ...] = ()
    tool_choice: str = "none"  # "none" | "auto" | "required" | a tool's name
    parallel_tool_calls: bool = True
    max_tokens: int | None = None
    # temperature, top_p, stop, seed, penalties: forwarded where a dialect can carry them.
    sampling: tuple[tuple[str, Any], ...] = ()
    # OpenAI's reasoning_effort (or a Trae level), for models that declare levels (dialect §7).
    reasoning_effort: str | None = None


def turns_from_messages(messages: Sequence[Mapping[str, Any]]) -> list[Turn]:
    """Normalise OpenAI messages; raise ``InvalidRequest`` naming the bad one."""
    if not messages:
        raise InvalidRequest("messages must contain at least one message", param="messages")
    return [_turn(message, index) for index, message in enumerate(messages)]


def _turn(message: Mapping[str, Any], index: int) -> Turn:
    role = message.get("role")
    mapped = _ROLES.get(role) if isinstance(role, str) else None
    if mapped is None:
        raise InvalidRequest(
            f"messages[{index}].role {role!r} is not supported; use system, developer, user, "
            f"assistant or tool",
            param=f"messages[{index}].role",
        )
    text, images = _content(message.get("content"), index)
    if images and mapped != "user":
        raise InvalidRequest("images are accepted in user messages only", param=images[0].param)
    if mapped == "user":
        return Turn(mapped, text, images=images)
    if mapped == "assistant":
        # Our own think-mode output sent back as history: the reasoning is not the answer.
        text = _THINK_BLOCK.sub("", text, count=1)
        return Turn(mapped, text, _tool_calls(message.get("tool_calls"), index))
    if mapped == "tool":
        call_id = message.get("tool_call_id")
        if not isinstance(call_id, str) or not call_id:
            raise InvalidRequest(
                f"messages[{index}] has role tool but no tool_call_id",
                param=f"messages[{index}].tool_call_id",
            )
        return Turn(mapped, text, tool_call_id=call_id)
    return Turn(mapped, text)


def _tool_calls(raw: Any, index: int) -> tuple[ToolCall, ...]:
    if not raw:
        return ()
    calls = []
    for call_index, call in enumerate(raw):
        function = call.get("function") if isinstance(call, dict) else None
        name = function.get("name") if isinstance(function, dict) else None
        if not isinstance(name, str) or not name:
            raise InvalidRequest(
                "each tool call needs function.name",
                param=f"messages[{index}].tool_calls[{call_index}].function.name",
            )
        arguments = function.get("arguments", "{}")  # type: ignore[union-attr]
        if not isinstance(arguments, str):
            arguments = orjson.dumps(arguments).decode()
        call_id = (
            call.get("id") if isinstance(call.get("id"), str) else f"call_{index}_{call_index}"
        )
        calls.append(ToolCall(call_id, name, arguments))
    return tuple(calls)


def _content(content: Any, index: int) -> tuple[str, tuple[ImagePart, ...]]:
    if content is None:
        return "", ()
    if isinstance(content, str):
        return content, ()
    texts, images = [], []
    for part_index, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        param = f"messages[{index}].content[{part_index}]"
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind == "image_url":
            images.append(ImagePart(_image_url(part.get("image_url"), param), param))
        else:
            raise InvalidRequest(f"content part type {kind!r} is not supported", param=param)
    # Protocol §5: multi-part text content is joined.
    return "\n".join(texts), tuple(images)


def _image_url(value: Any, param: str) -> str:
    url = value.get("url") if isinstance(value, dict) else value
    if not isinstance(url, str) or not url.startswith(("data:", "https://", "http://")):
        raise InvalidRequest(
            "image_url.url must be a data: URL or an http(s) URL", param=f"{param}.image_url.url"
        )
    return url


def session_id_for(turns: Sequence[Turn], client_name: str) -> str:
    """A conversation id derived from its first message and the client (protocol §5 CHOICE)."""
    first = turns[0]
    return str(uuid.uuid5(_SESSION_NAMESPACE, f"{client_name}\x00{first.role}\x00{first.text}"))


def locale_for(text: str) -> str:
    return "zh-cn" if CJK.search(text) else "en-us"


@dataclass(frozen=True, slots=True)
class LegacyContext:
    """What the legacy body needs besides the conversation (ids, clock, device)."""

    trae_model: str
    session_id: str
    version_code: int
    current_time: str
    system_type: str
    workspace_path: str


def build_legacy_body(turns: Sequence[Turn], ctx: LegacyContext) -> dict[str, Any]:
    """The ``/api/ide/v1/chat`` body exactly as protocol §5 describes it."""
    last, history = turns[-1], turns[:-1]
    locale = locale_for(last.text)
    follows_assistant = bool(history) and history[-1].role == "assistant"
    variables = {
        "language": "",
        "locale": locale,
        "input": last.text,
        "raw_input": last.text,
        "version_code": ctx.version_code,
        "is_inline_chat": False,
        "is_command": False,
        "problem": "",
        "current_filename": "",
        "is_select_code_before_chat": False,
        "last_select_time": 0,
        "last_turn_session": ctx.session_id if follows_assistant else "",
        "hash_workspace": False,
        "hash_file": 0,
        "hash_code": 0,
        "use_filepath": True,
        "current_time": ctx.current_time,
        "badge_clickable": True,
        "workspace_path": ctx.workspace_path,
        "brand": "Trae",
        "system_type": ctx.system_type,
    }
    body: dict[str, Any] = {
        "user_input": last.text,
        "intent_name": "general_qa_intent",
        "variables": orjson.dumps(variables).decode(),
        "context_resolvers": [],
        "generate_suggested_questions": False,
        "chat_history": [
            {
                "role": turn.role,
                "content": turn.text,
                "status": "success",
                "locale": locale,
                "session_id": ctx.session_id,
            }
            for turn in history
        ],
        "session_id": ctx.session_id,
        "conversation_id": ctx.session_id,
        "current_turn": len(turns) - 1,
        "valid_turns": list(range(len(history))),
        "multi_media": [],
        "model_name": ctx.trae_model,
        "is_preset": True,
        "provider": "",
    }
    if follows_assistant:
        body["last_llm_response_info"] = {
            "turn": len(history) - 1,
            "is_error": False,
            "response": history[-1].text,
        }
    return body
