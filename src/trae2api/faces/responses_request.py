"""OpenAI Responses requests (``POST /v1/responses``) validated and reduced to a ``ChatRequest``.

Pure: no I/O, clock or randomness. Pydantic checks the top-level shape and keeps unknown fields
(Codex sends ``include``, ``prompt_cache_key``, ``client_metadata``…). Input items become turns:
``developer``/``system`` messages join the system prompt; ``function_call``/``custom_tool_call``
become the assistant's tool calls and their ``*_output`` items tool turns; ``reasoning`` items are
accepted and not forwarded (Trae takes no reasoning input); other item kinds are skipped.

Tools: function tools (flat shape) pass unchanged; ``custom`` tools (Codex's ``apply_patch``)
become function tools taking ``{"input": string}`` and their calls come back as
``custom_tool_call`` items with the raw ``input``; ``namespace`` tools are flattened into their
nested functions, names unchanged; ``web_search`` and other kinds are dropped. ``text.format``
``json_object``/``json_schema`` becomes a system instruction (Trae has no structured output).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field

from trae2api.errors import InvalidRequest
from trae2api.wire.translate import ChatRequest, ImagePart, ToolCall, Turn

_TEXT_PARTS = frozenset({"input_text", "output_text", "text", "summary_text", "refusal"})
_SYSTEM_ROLES = frozenset({"system", "developer"})
CUSTOM_INPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"input": {"type": "string", "description": "The tool's raw input text."}},
    "required": ["input"],
}


class ResponsesRequest(BaseModel):
    """The Responses API request body; fields we do not act on are kept and ignored."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    input: str | list[dict[str, Any]] = ""
    instructions: str | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    max_output_tokens: int | None = Field(default=None, ge=1)
    reasoning: dict[str, Any] | None = None
    text: dict[str, Any] | None = None
    stream: bool | None = None
    store: bool | None = None
    previous_response_id: str | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    metadata: dict[str, Any] | None = None


def input_items(body: ResponsesRequest) -> list[dict[str, Any]]:
    """The request's ``input`` as items (a string is one user message)."""
    if isinstance(body.input, str):
        return [{"type": "message", "role": "user", "content": body.input}] if body.input else []
    return list(body.input)


def custom_tool_names(body: ResponsesRequest) -> frozenset[str]:
    """Names of the request's ``custom`` tools: their calls render as ``custom_tool_call``."""
    return frozenset(
        str(tool.get("name")) for tool in body.tools or () if tool.get("type") == "custom"
    )


def to_chat_request(
    body: ResponsesRequest, client_name: str, history: list[dict[str, Any]]
) -> ChatRequest:
    """The use case's view of a Responses request (``history``: a chained response's items)."""
    tools = _tools(body.tools or [])
    system = [body.instructions] if body.instructions else []
    turns: list[Turn] = []
    for index, item in enumerate([*history, *input_items(body)]):
        _add_item(item, f"input[{index}]", system, turns)
    if not turns:
        raise InvalidRequest("input: at least one message is required", param="input")
    if hint := _format_hint(body.text):
        system.append(hint)
    if system:
        turns.insert(0, Turn("system", "\n\n".join(system)))
    effort = (body.reasoning or {}).get("effort")
    return ChatRequest(
        model=body.model,
        turns=turns,
        tools=tuple(tools),
        tool_choice=_tool_choice(body.tool_choice, tools),
        parallel_tool_calls=body.parallel_tool_calls is not False,
        max_tokens=body.max_output_tokens,  # the dialect clamps it to the model's limit
        sampling=tuple(
            (key, value)
            for key in ("temperature", "top_p")
            if (value := getattr(body, key)) is not None
        ),
        stream=bool(body.stream),
        include_usage=True,
        reasoning_mode="reasoning_content",
        reasoning_effort=effort if isinstance(effort, str) else None,
        client_name=client_name,
    )


def _add_item(item: Any, param: str, system: list[str], turns: list[Turn]) -> None:
    if not isinstance(item, dict):
        raise InvalidRequest("input items must be objects", param=param)
    kind = item.get("type") or ("message" if "role" in item else None)
    if kind == "message":
        _add_message(item, param, system, turns)
    elif kind in ("function_call", "custom_tool_call"):
        _add_call(item, param, turns)
    elif kind in ("function_call_output", "custom_tool_call_output"):
        call_id = item.get("call_id")
        if not isinstance(call_id, str) or not call_id:
            raise InvalidRequest(f"a {kind} item needs a call_id", param=f"{param}.call_id")
        text, _ = _content(item.get("output", ""), f"{param}.output")
        turns.append(Turn("tool", text, tool_call_id=call_id))
    # reasoning (not forwarded), web_search_call, additional_tools, …: skipped


def _add_message(item: dict[str, Any], param: str, system: list[str], turns: list[Turn]) -> None:
    role = item.get("role")
    text, images = _content(item.get("content", ""), f"{param}.content")
    if role in _SYSTEM_ROLES:
        # Both dialects read the last turn as the question, so these join the system prompt.
        system.append(text)
    elif role == "assistant":
        turns.append(Turn("assistant", text))
    elif role == "user":
        turns.append(Turn("user", text, images=images))
    else:
        raise InvalidRequest(
            f"role {role!r} is not supported; use user, assistant, system or developer",
            param=f"{param}.role",
        )


def _add_call(item: dict[str, Any], param: str, turns: list[Turn]) -> None:
    call_id, name = item.get("call_id"), item.get("name")
    if not isinstance(call_id, str) or not call_id or not isinstance(name, str) or not name:
        raise InvalidRequest("a tool call item needs a call_id and a name", param=param)
    if item.get("type") == "custom_tool_call":
        arguments = orjson.dumps({"input": str(item.get("input") or "")}).decode()
    else:
        arguments = str(item.get("arguments") or "{}")
    call = ToolCall(call_id, name, arguments)
    if turns and turns[-1].role == "assistant":
        turns[-1] = replace(turns[-1], tool_calls=(*turns[-1].tool_calls, call))
    else:
        turns.append(Turn("assistant", "", (call,)))


def _content(content: Any, param: str) -> tuple[str, tuple[ImagePart, ...]]:
    """Text parts joined by newlines, and ``input_image`` parts; other parts are skipped."""
    if content is None or isinstance(content, str):
        return content or "", ()
    if not isinstance(content, list):
        raise InvalidRequest("content must be a string or a list of parts", param=param)
    texts: list[str] = []
    images: list[ImagePart] = []
    for index, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        text = part.get("text") or part.get("refusal") if isinstance(part, dict) else None
        if kind in _TEXT_PARTS and isinstance(text, str):
            texts.append(text)
        elif kind == "input_image":
            url = part.get("image_url")
            if not isinstance(url, str) or not url.startswith(("data:", "https://", "http://")):
                raise InvalidRequest(
                    "input_image needs an image_url (a data: or http(s) URL)",
                    param=f"{param}[{index}].image_url",
                )
            images.append(ImagePart(url, f"{param}[{index}]"))
    return "\n".join(texts), tuple(images)


def _tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    converted: list[dict[str, Any]] = []
    for index, tool in enumerate(tools):
        kind = tool.get("type")
        if kind == "namespace":
            nested = tool.get("tools") or tool.get("functions") or []
            converted += _tools([t for t in nested if isinstance(t, dict)])
            continue
        if kind not in ("function", "custom"):
            continue  # web_search, tool_search, file_search…: run by OpenAI, not here
        name = tool.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidRequest("a tool needs a name", param=f"tools[{index}].name")
        schema = tool.get("parameters") if kind == "function" else CUSTOM_INPUT_SCHEMA
        function = {
            "name": name,
            "description": tool.get("description") or "",
            "parameters": schema if isinstance(schema, dict) else {"type": "object"},
        }
        converted.append({"type": "function", "function": function})
    return converted


def _tool_choice(choice: str | dict[str, Any] | None, tools: list[dict[str, Any]]) -> str:
    """Responses' tool_choice reduced to "none", "auto", "required" or a tool's name."""
    if not tools:
        return "none"
    if choice is None or isinstance(choice, str):
        if choice in (None, "auto", "none", "required"):
            return choice or "auto"
        raise InvalidRequest("tool_choice must be auto, none or required", param="tool_choice")
    name = choice.get("name")
    if choice.get("type") in ("function", "custom") and isinstance(name, str):
        if name in {tool["function"]["name"] for tool in tools}:
            return name
        raise InvalidRequest(f"tool_choice names no tool {name!r}", param="tool_choice")
    return "auto"  # allowed_tools, hosted tools: the model chooses


def _format_hint(text: dict[str, Any] | None) -> str:
    fmt = (text or {}).get("format") or {}
    if fmt.get("type") == "json_object":
        return "Answer with one JSON object only, no other text."
    if fmt.get("type") == "json_schema":
        schema = orjson.dumps(fmt.get("schema") or {}).decode()
        return f"Answer with one JSON object only, no other text, matching this schema: {schema}"
    return ""
