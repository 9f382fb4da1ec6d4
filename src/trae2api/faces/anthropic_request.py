"""Anthropic Messages requests (``POST /v1/messages``) validated and reduced to a ``ChatRequest``.

Pure: no I/O, clock or randomness. Pydantic checks the wire shape and keeps unknown fields
(Claude Code sends ``context_management``, ``output_config``, ``metadata`` and more); the
conversion below raises ``InvalidRequest`` naming the parameter. Thinking blocks sent back in
history are accepted and not forwarded (Trae takes no reasoning input); tool names pass unchanged.
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field

from trae2api.errors import InvalidRequest
from trae2api.wire.events import estimate_tokens
from trae2api.wire.translate import ChatRequest, ImagePart, ReasoningMode, ToolCall, Turn

_DROPPED_BLOCKS = frozenset({"thinking", "redacted_thinking"})
_TOOL_CHOICES = {"auto": "auto", "any": "required", "none": "none"}


class MessageParam(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str
    content: str | list[dict[str, Any]]


class MessagesRequest(BaseModel):
    """The Messages API request body; fields we do not act on are kept and ignored."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    messages: list[MessageParam]
    max_tokens: int = Field(ge=1)
    system: str | list[dict[str, Any]] | None = None
    stop_sequences: list[str] | None = None
    stream: bool | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: dict[str, Any] | None = None
    thinking: dict[str, Any] | None = None
    temperature: float | None = Field(default=None, ge=0, le=1)
    top_p: float | None = Field(default=None, ge=0, le=1)
    top_k: int | None = None
    metadata: dict[str, Any] | None = None
    output_config: dict[str, Any] | None = None


class CountTokensRequest(BaseModel):
    """``POST /v1/messages/count_tokens``: the same prompt fields, no ``max_tokens``."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    messages: list[MessageParam]
    system: str | list[dict[str, Any]] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: dict[str, Any] | None = None
    thinking: dict[str, Any] | None = None


def to_chat_request(body: MessagesRequest | CountTokensRequest, client_name: str) -> ChatRequest:
    """The use case's view of a Messages request; raises ``InvalidRequest`` naming the field."""
    tools = _tools(body.tools or [])
    system, turns = _system_text(body.system), []
    for index, message in enumerate(body.messages):
        if message.role == "system":
            # Claude Code sends one mid-conversation (after the first user message). Both
            # dialects read the last turn as the question, so it joins the system prompt.
            text, _ = _plain(message.content, f"messages[{index}].content", images=False)
            system = "\n\n".join(part for part in (system, text) if part)
        else:
            turns.extend(_message_turns(message, index))
    if not turns:
        raise InvalidRequest("messages: at least one message is required", param="messages")
    if system:
        turns.insert(0, Turn("system", system))
    full = body if isinstance(body, MessagesRequest) else None
    effort = (full.output_config or {}).get("effort") if full else None
    return ChatRequest(
        model=body.model,
        turns=turns,
        tools=tuple(tools),
        tool_choice=_tool_choice(body.tool_choice, tools),
        parallel_tool_calls=not (body.tool_choice or {}).get("disable_parallel_tool_use", False),
        max_tokens=full.max_tokens if full else None,  # the dialect clamps it to the model's
        sampling=tuple(
            (key, value)
            for key in ("temperature", "top_p")
            if full and (value := getattr(full, key)) is not None
        ),
        stream=bool(full and full.stream),
        include_usage=True,
        stops=tuple(full.stop_sequences or ()) if full else (),
        reasoning_mode=reasoning_mode(body.thinking),
        reasoning_effort=effort if isinstance(effort, str) else None,
        client_name=client_name,
    )


def reasoning_mode(thinking: dict[str, Any] | None) -> ReasoningMode:
    """Raw reasoning as thinking blocks when thinking is on (enabled or adaptive), else none."""
    kind = (thinking or {}).get("type")
    return "reasoning_content" if kind in ("enabled", "adaptive") else "drop"


def prompt_tokens_estimate(request: ChatRequest) -> int:
    """The input-token estimate (count_tokens and ``message_start``): ``estimate_tokens`` (about
    4 characters a token, one per CJK character) of every turn's text, the arguments of earlier
    tool calls, and the tool definitions as compact JSON; images are not counted."""
    parts = [turn.text for turn in request.turns]
    parts += [call.arguments for turn in request.turns for call in turn.tool_calls]
    parts += [orjson.dumps(tool["function"]).decode() for tool in request.tools]
    return estimate_tokens("\n".join(part for part in parts if part))


def _system_text(system: str | list[dict[str, Any]] | None) -> str:
    if system is None or isinstance(system, str):
        return system or ""
    texts = []
    for index, block in enumerate(system):
        if block.get("type") != "text" or not isinstance(block.get("text"), str):
            raise InvalidRequest("system blocks must be text blocks", param=f"system[{index}]")
        texts.append(block["text"])
    return "\n".join(t for t in texts if t)


def _message_turns(message: MessageParam, index: int) -> list[Turn]:
    where = f"messages[{index}]"
    if message.role == "assistant":
        return [_assistant_turn(message.content, where)]
    if message.role == "user":
        return _user_turns(message.content, where)
    raise InvalidRequest(
        f"{where}.role: {message.role!r} is not supported; use user, assistant or system",
        param=f"{where}.role",
    )


def _assistant_turn(content: str | list[dict[str, Any]], where: str) -> Turn:
    if isinstance(content, str):
        return Turn("assistant", content)
    texts, calls = [], []
    for index, block in enumerate(content):
        kind, param = block.get("type"), f"{where}.content[{index}]"
        if kind == "tool_use":
            calls.append(_tool_use(block, param))
        elif kind == "text":
            texts.append(_text_of(block, param))
        elif kind not in _DROPPED_BLOCKS:
            _refuse_or_skip(block, param)
    return Turn("assistant", "".join(texts), tuple(calls))


def _tool_use(block: dict[str, Any], param: str) -> ToolCall:
    call_id, name = block.get("id"), block.get("name")
    if not isinstance(call_id, str) or not call_id or not isinstance(name, str) or not name:
        raise InvalidRequest("a tool_use block needs an id and a name", param=param)
    arguments = block.get("input")
    if not isinstance(arguments, dict):
        raise InvalidRequest("tool_use.input must be an object", param=f"{param}.input")
    return ToolCall(call_id, name, orjson.dumps(arguments).decode())


def _user_turns(content: str | list[dict[str, Any]], where: str) -> list[Turn]:
    """Tool results first (one ``tool`` turn each), then the rest as one user turn."""
    if isinstance(content, str):
        return [Turn("user", content)]
    turns: list[Turn] = []
    rest: list[dict[str, Any]] = []
    result_images: list[ImagePart] = []
    for index, block in enumerate(content):
        param = f"{where}.content[{index}]"
        if block.get("type") == "tool_result":
            turn, images = _tool_result(block, param)
            turns.append(turn)
            result_images += images
        else:
            rest.append(block)
    text, images = _plain(rest, f"{where}.content", images=True)
    images = (*result_images, *images)  # the dialects carry images on user turns only
    if text or images or not turns:
        turns.append(Turn("user", text, images=images))
    return turns


def _tool_result(block: dict[str, Any], param: str) -> tuple[Turn, tuple[ImagePart, ...]]:
    call_id = block.get("tool_use_id")
    if not isinstance(call_id, str) or not call_id:
        raise InvalidRequest("tool_result needs tool_use_id", param=f"{param}.tool_use_id")
    content = block.get("content", "")
    if content is None:
        content = ""
    if not isinstance(content, str | list):
        raise InvalidRequest("tool_result.content must be a string or blocks", param=param)
    text, images = _plain(content, f"{param}.content", images=True)
    if block.get("is_error") is True:
        text = f"Error: {text}" if text else "Error"
    return Turn("tool", text, tool_call_id=call_id), images


def _plain(
    content: str | list[dict[str, Any]], where: str, *, images: bool
) -> tuple[str, tuple[ImagePart, ...]]:
    """Text blocks joined by newlines, and image blocks (where allowed)."""
    if isinstance(content, str):
        return content, ()
    texts, found = [], []
    for index, block in enumerate(content):
        param = f"{where}[{index}]"
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            texts.append(_text_of(block, param))
        elif kind == "image" and images:
            found.append(ImagePart(_image_url(block.get("source"), param), param))
        elif kind not in _DROPPED_BLOCKS:
            _refuse_or_skip(block, param)
    return "\n".join(texts), tuple(found)


def _text_of(block: dict[str, Any], param: str) -> str:
    text = block.get("text")
    if not isinstance(text, str):
        raise InvalidRequest("a text block needs a string text", param=f"{param}.text")
    return text


def _image_url(source: Any, param: str) -> str:
    kind = source.get("type") if isinstance(source, dict) else None
    if kind == "base64":
        media, data = source.get("media_type"), source.get("data")
        if isinstance(media, str) and isinstance(data, str) and data:
            return f"data:{media};base64,{data}"
    elif kind == "url":
        url = source.get("url")
        if isinstance(url, str) and url.startswith(("https://", "http://")):
            return url
    raise InvalidRequest(
        "image.source must be {type: base64, media_type, data} or {type: url, url: http(s)}",
        param=f"{param}.source",
    )


def _refuse_or_skip(block: Any, param: str) -> None:
    """Documents (and other file content) cannot reach Trae: refused. Other kinds are skipped."""
    kind = block.get("type") if isinstance(block, dict) else None
    if kind in ("document", "image", "search_result", "container_upload"):
        raise InvalidRequest(f"content blocks of type {kind!r} are not supported here", param=param)


def _tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Custom tools as OpenAI function tools; server tools (no ``input_schema``) are skipped."""
    converted = []
    for index, tool in enumerate(tools):
        name, schema = tool.get("name"), tool.get("input_schema")
        if not isinstance(name, str) or not name:
            raise InvalidRequest("a tool needs a name", param=f"tools[{index}].name")
        if schema is None:
            continue  # e.g. web_search_20250305: Anthropic runs those itself
        if not isinstance(schema, dict):
            raise InvalidRequest(
                "input_schema must be a JSON schema object", param=f"tools[{index}].input_schema"
            )
        function = {
            "name": name,
            "description": tool.get("description") or "",
            "parameters": schema,
        }
        converted.append({"type": "function", "function": function})
    return converted


def _tool_choice(choice: dict[str, Any] | None, tools: list[dict[str, Any]]) -> str:
    """Anthropic's tool_choice reduced to "none", "auto", "required" or a tool's name."""
    if not tools:
        return "none"
    kind = (choice or {"type": "auto"}).get("type")
    if isinstance(kind, str) and kind in _TOOL_CHOICES:
        return _TOOL_CHOICES[kind]
    name = (choice or {}).get("name")
    if kind == "tool" and name in {tool["function"]["name"] for tool in tools}:
        return str(name)
    raise InvalidRequest(
        "tool_choice must be auto, any, none, or {type: tool, name: <one of the tools>}",
        param="tool_choice",
    )
