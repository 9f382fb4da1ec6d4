"""Strict checks of what the gateway sends in the agent dialect: the §2 headers, the §3 catalogue
body and the §4 chat body.

Pure functions: header and catalogue-shape problems raise ``Invalid`` (an HTTP 400 naming the
header or field), chat-body problems raise ``AgentRejected`` (an in-stream ``error`` event with
the code the real service uses). They must not touch state or do I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from trae2api.testing.agent_catalog import (
    INLINE_FUNCTION,
    PRODUCT_APP_ID,
    AgentModel,
    default_model,
    find_model,
)
from trae2api.testing.validation import Invalid

Catalogue = dict[str, list[dict[str, Any]]]
AUTH_SCHEME = "Cloud-IDE-JWT"
ROLES = frozenset({"system", "user", "assistant", "tool"})
FORBIDDEN_KEYS = ("agent_type", "device_id", "ide_version")
CATALOGUE_CONSTANTS: dict[str, Any] = {
    "config_names": None,
    "need_prompt": False,
    "current_config_info": None,
    "poly_prompt": True,
    "mode_type": None,
    "agent_type": None,
}
_NUMBER_KEYS = ("temperature", "top_p", "frequency_penalty", "presence_penalty")
_KNOWN_KEYS = frozenset(
    {"function", "config_name", "model", "stream", "messages", "tools", "tool_choice"}
    | {"max_tokens", "stop", "seed", "reasoning_effort_level", *_NUMBER_KEYS}
)
_MESSAGE_KEYS = frozenset({"role", "content", "tool_calls", "tool_call_id", "name"})
_PRESENT_HEADERS = ("x-ide-version", "x-request-id", "x-device-cpu", "x-device-brand")
_PATTERN_HEADERS = {
    "x-device-id": (re.compile(r"[0-9]+"), "decimal digits"),
    "x-machine-id": (re.compile(r"[0-9a-fA-F]{64}"), "64 hex characters"),
}
TOOL_CALL_NOT_FOUND = "tool_call_id is not found"
PARAM_INVALID = "param is invalid"
CHARS_PER_TOKEN = 4  # dialect §7: a prompt clearly beyond the window (chars / 4) is 4006


class AgentRejected(Exception):
    """The chat is refused with business ``code`` (sent as an in-stream ``error`` event)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class AgentMessage:
    """One validated message: its role, its text parts joined, and its tool-call bookkeeping."""

    role: str
    text: str
    tool_call_id: str = ""
    call_names: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class AgentChat:
    """The parts of a valid ``llm_utils_chat`` body the reply planner needs."""

    function: str
    model: AgentModel
    messages: tuple[AgentMessage, ...]
    tools: tuple[str, ...]
    tool_choice: str | None
    max_tokens: int | None
    image_note: str = ""  # " [saw N image(s): ...]" for the last user message's image parts
    effort_level: str | None = None  # dialect §7 ``reasoning_effort_level``, when sent


# -- headers (§2) ------------------------------------------------------------------------------


def presented_token(headers: Mapping[str, str]) -> str | None:
    """The access token when ``Authorization: Cloud-IDE-JWT <t>``, ``X-Cloudide-Token`` and
    ``X-Ide-Token`` all carry the same one, else None (the caller checks that it is valid)."""
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme != AUTH_SCHEME or not token.strip():
        return None
    if headers.get("x-cloudide-token") != token or headers.get("x-ide-token") != token:
        return None
    return token


def app_id_accepted(headers: Mapping[str, str], account_app_id: str) -> bool:
    """Whether ``x-app-id`` is the account's app id or Trae's product app id."""
    return headers.get("x-app-id") in {account_app_id, PRODUCT_APP_ID}


def check_agent_headers(headers: Mapping[str, str], *, user_id: str) -> None:
    """Every §2 header but the token triple and ``x-app-id`` (checked by the caller)."""
    for name in (*_PRESENT_HEADERS, "x-device-type"):
        if not headers.get(name, "").strip():
            raise Invalid(name, "is missing or empty")
    for name, (pattern, description) in _PATTERN_HEADERS.items():
        if pattern.fullmatch(headers.get(name, "")) is None:
            raise Invalid(name, f"must be {description}")
    code = headers.get("x-ide-version-code")  # missing selects the empty table (dialect §7)
    if code is not None and not code.isdigit():
        raise Invalid("x-ide-version-code", "must be a numeric string")
    also = headers.get("x-app-version-code")
    if also is not None and also != code:
        raise Invalid("x-app-version-code", "must equal x-ide-version-code")
    uid = headers.get("x-uid")
    if uid is not None and uid != user_id:
        raise Invalid("x-uid", "must be the account's user id")
    if not headers.get("content-type", "").lower().startswith("application/json"):
        raise Invalid("content-type", "must be application/json")


# -- catalogue (§3) ----------------------------------------------------------------------------


def check_catalogue_body(body: Any, pools: Mapping[str, Any]) -> str:
    """The pool asked for by a body with exactly the seven keys of §3; an unknown pool raises
    ``AgentRejected(2001)``."""
    if not isinstance(body, dict):
        raise Invalid("body", "must be a JSON object")
    wanted = {"function", *CATALOGUE_CONSTANTS}
    if set(body) != wanted:
        wrong = sorted(set(body) ^ wanted)[0]
        raise Invalid(wrong, "the body has exactly the seven keys of get_detail_param")
    for key, value in CATALOGUE_CONSTANTS.items():
        if type(body[key]) is not type(value) or body[key] != value:
            raise Invalid(key, f"must be {orjson.dumps(value).decode()}")
    function = body["function"]
    if not isinstance(function, str) or not function:
        raise Invalid("function", "must be a non-empty string")
    if function not in pools:
        raise AgentRejected(2001, f"function {function} not found")
    return function


# -- chat body (§4) ----------------------------------------------------------------------------


def _bad(message: str, code: int = 4001) -> AgentRejected:
    return AgentRejected(code, message)


def check_agent_chat(body: Any, catalogue: Catalogue) -> AgentChat:
    """Validate an ``llm_utils_chat`` body against the catalogue, or raise ``AgentRejected``."""
    if not isinstance(body, dict):
        raise _bad("body must be a JSON object")
    function = _check_function(body, catalogue)
    for key in FORBIDDEN_KEYS:
        if key in body:
            raise _bad(f"{key} is not accepted in the body", 4023)
    unknown = sorted(set(body) - _KNOWN_KEYS)
    if unknown:
        raise _bad(f"unknown field {unknown[0]}")
    model = _check_model(body, function, catalogue)
    if body.get("stream") is not True:
        raise _bad("stream must be true")
    messages = _check_messages(body.get("messages"))
    tools = _check_tools(body)
    _check_sampling(body)
    chat = AgentChat(
        function=function,
        model=model,
        messages=messages,
        tools=tools,
        tool_choice=_check_tool_choice(body, tools),
        max_tokens=_check_max_tokens(body, model),
        effort_level=_check_effort(body, model),
    )
    _check_context(body, messages, model)
    return chat


def _check_function(body: Mapping[str, Any], catalogue: Catalogue) -> str:
    if "function" not in body:
        raise _bad("function is required", 2001)
    function = body["function"]
    if not isinstance(function, str) or (function not in catalogue and function != INLINE_FUNCTION):
        raise _bad(f"function {function} not found", 2001)
    return function


def _check_model(body: Mapping[str, Any], function: str, catalogue: Catalogue) -> AgentModel:
    if function == INLINE_FUNCTION:
        if "config_name" in body or "model" in body:
            raise _bad("inline_chat takes neither config_name nor model")
        return default_model(catalogue)
    name, model = body.get("config_name"), body.get("model")
    if not isinstance(name, str) or not name or name != model:
        raise _bad("config_name and model must both be the bare config name")
    try:
        return find_model(catalogue, function, name)
    except LookupError as exc:
        if str(exc) == "pool":
            raise _bad(f"model not in this pool: {name} is not in {function}") from exc
        raise _bad(f"model not found: {name}", 4023) from exc


def _check_messages(value: Any) -> tuple[AgentMessage, ...]:
    if not isinstance(value, list) or not value:
        raise _bad("messages must be a non-empty array")
    messages: list[AgentMessage] = []
    open_calls: dict[str, str] = {}
    answered: set[str] = set()
    for index, item in enumerate(value):
        message = _check_message(index, item)
        if message.role == "tool":
            if message.tool_call_id not in open_calls:
                raise _bad(TOOL_CALL_NOT_FOUND, 4027)
            answered.add(message.tool_call_id)
        else:
            _require_answered(open_calls, answered)
            open_calls = dict(message.call_names)
            answered = set()
        messages.append(message)
    _require_answered(open_calls, answered)
    return tuple(messages)


def _require_answered(open_calls: Mapping[str, str], answered: set[str]) -> None:
    missing = sorted(set(open_calls) - answered)
    if missing:
        raise _bad(f"{TOOL_CALL_NOT_FOUND}: no tool result for {missing[0]}", 4027)


def _check_message(index: int, item: Any) -> AgentMessage:
    prefix = f"messages[{index}]"
    if not isinstance(item, dict):
        raise _bad(f"{prefix} must be an object")
    role = item.get("role")
    if role not in ROLES:
        raise _bad(f"{prefix}.role must be system, user, assistant or tool")
    extra = sorted(set(item) - _MESSAGE_KEYS)
    if extra:
        raise _bad(f"{prefix}.{extra[0]} is not a message field")
    text = _check_content(prefix, item.get("content"))
    if "tool_calls" in item and role != "assistant":
        raise _bad(f"{prefix}.tool_calls is only for assistant messages")
    if "tool_call_id" in item and role != "tool":
        raise _bad(f"{prefix}.tool_call_id is only for tool messages")
    calls = _check_tool_calls(prefix, item["tool_calls"]) if "tool_calls" in item else ()
    call_id = item.get("tool_call_id", "")
    if role == "tool" and (not isinstance(call_id, str) or not call_id):
        raise _bad(TOOL_CALL_NOT_FOUND, 4027)
    return AgentMessage(str(role), text, str(call_id), calls)


def _check_content(prefix: str, content: Any) -> str:
    if isinstance(content, str):
        raise _bad(f"{prefix}.content must be an array of parts, not a string")
    if not isinstance(content, list):
        raise _bad(f"{prefix}.content must be an array of parts")
    texts: list[str] = []
    for number, part in enumerate(content):
        where = f"{prefix}.content[{number}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind == "image_url":
            image = part.get("image_url")
            if not isinstance(image, dict) or not isinstance(image.get("url"), str):
                raise _bad(f"{where}.image_url must be an object with a string url")
        else:
            raise _bad(f"{where} must be a text part with a string text, or an image_url part")
    return "".join(texts)


def _check_tool_calls(prefix: str, calls: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(calls, list):
        raise _bad(f"{prefix}.tool_calls must be an array")
    found: list[tuple[str, str]] = []
    for number, call in enumerate(calls):
        where = f"{prefix}.tool_calls[{number}]"
        if not isinstance(call, dict):
            raise _bad(f"{where} must be an object")
        if "function" in call or not isinstance(call.get("id"), str) or not call["id"]:
            raise _bad(TOOL_CALL_NOT_FOUND, 4027)
        if call.get("type") != "function":
            raise _bad(f'{where}.type must be "function"')
        inner = call.get("function_call")
        if not isinstance(inner, dict) or not isinstance(inner.get("name"), str):
            raise _bad(f"{where}.function_call must be an object with a string name")
        if not isinstance(inner.get("arguments"), str):
            raise _bad(f"{where}.function_call.arguments must be a string")
        found.append((call["id"], inner["name"]))
    return tuple(found)


def _check_tools(body: Mapping[str, Any]) -> tuple[str, ...]:
    if "tools" not in body:
        return ()
    tools = body["tools"]
    if not isinstance(tools, list) or not tools:
        raise _bad("tools must be a non-empty array")
    names: list[str] = []
    for index, tool in enumerate(tools):
        where = f"tools[{index}]"
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type") != "function":
            raise _bad(f'{where} must be {{"type": "function", "function": {{...}}}}')
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise _bad(f"{where}.function must be an object with a string name")
        if not function["name"] or function["name"] in names:
            raise _bad(f"{where}.function.name must be non-empty and unique")
        if "parameters" in function:
            _check_parameters(f"{where}.function.parameters", function["parameters"])
        names.append(function["name"])
    return tuple(names)


def _check_parameters(where: str, parameters: Any) -> None:
    if not isinstance(parameters, str):
        raise _bad(f"{where} must be a JSON string, not an object")
    try:
        schema = orjson.loads(parameters)
    except orjson.JSONDecodeError as exc:
        raise _bad(f"{where} is not valid JSON") from exc
    if not isinstance(schema, dict):
        raise _bad(f"{where} must encode a JSON object (double-encoded?)")


def _check_tool_choice(body: Mapping[str, Any], tools: tuple[str, ...]) -> str | None:
    if "tool_choice" not in body:
        return None
    choice = body["tool_choice"]
    if not isinstance(choice, str):
        raise _bad("tool_choice must be a string")
    if not tools:
        raise _bad("tool_choice needs tools")
    if choice not in ("auto", "required") and choice not in tools:
        raise _bad("tool_choice must be auto, required or the name of a tool in tools")
    return choice


def _check_max_tokens(body: Mapping[str, Any], model: AgentModel) -> int | None:
    if "max_tokens" not in body:
        return None
    value = body["max_tokens"]
    if type(value) is not int or value <= 0:
        raise _bad("max_tokens must be a positive integer")
    if value > model.max_tokens:
        raise _bad(f"max_tokens {value} exceeds {model.max_tokens} for {model.config_name}")
    return value


def _check_effort(body: Mapping[str, Any], model: AgentModel) -> str | None:
    """Dialect §7: ``reasoning_effort_level`` only for a model that declares levels, and only
    one of its declared levels."""
    if "reasoning_effort_level" not in body:
        return None
    level = body["reasoning_effort_level"]
    if not model.effort_levels:
        raise _bad(f"reasoning_effort_level is not supported by {model.config_name}")
    if level not in model.effort_levels:
        allowed = ", ".join(model.effort_levels)
        raise _bad(f"reasoning_effort_level must be one of {allowed} for {model.config_name}")
    return str(level)


def _check_context(
    body: Mapping[str, Any], messages: tuple[AgentMessage, ...], model: AgentModel
) -> None:
    """4006 when the prompt (message texts and tool schemas, chars / 4) exceeds the window."""
    chars = sum(len(m.text) for m in messages) + len(orjson.dumps(body.get("tools") or []))
    estimate = chars // CHARS_PER_TOKEN
    if estimate > model.context_window:
        message = (
            f"prompt is too long: about {estimate} tokens, the context window of "
            f"{model.config_name} is {model.context_window} tokens"
        )
        raise _bad(message, 4006)


def _check_sampling(body: Mapping[str, Any]) -> None:
    for key in _NUMBER_KEYS:
        if key in body and type(body[key]) not in (int, float):
            raise _bad(f"{key} must be a number")
    if "seed" in body and type(body["seed"]) is not int:
        raise _bad("seed must be an integer")
    stop = body.get("stop")
    if "stop" in body and not (
        isinstance(stop, str) or (isinstance(stop, list) and all(isinstance(s, str) for s in stop))
    ):
        raise _bad("stop must be a string or an array of strings")
