"""Strict checks of what the gateway sends: the §3 headers, the §2 exchange body, the §5 chat body.

Pure functions that raise ``Invalid(field, reason)``; they must not touch state or do I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

INTENT_NAME = "general_qa_intent"
ROLES = frozenset({"user", "assistant", "system"})
LOCALES = frozenset({"en-us", "zh-cn"})
SYSTEM_TYPES = frozenset({"Windows", "macOS", "Linux"})
HISTORY_KEYS = frozenset({"role", "content", "status", "locale", "session_id"})

_PRESENT_HEADERS = (
    "x-ide-version",
    "x-ide-version-type",
    "x-device-cpu",
    "x-device-brand",
    "x-device-type",
)
_PATTERN_HEADERS = {
    "x-ide-version-code": (re.compile(r"[0-9]+"), "a numeric string"),
    "x-device-id": (re.compile(r"[0-9]+"), "decimal digits"),
    "x-machine-id": (re.compile(r"[0-9a-fA-F]{64}"), "64 hex characters"),
}
_EXCHANGE_KEYS = ("ClientID", "RefreshToken", "ClientSecret", "UserID")

_BODY_TYPES: dict[str, type] = {
    "user_input": str,
    "intent_name": str,
    "variables": str,
    "context_resolvers": list,
    "generate_suggested_questions": bool,
    "chat_history": list,
    "session_id": str,
    "conversation_id": str,
    "current_turn": int,
    "valid_turns": list,
    "multi_media": list,
    "model_name": str,
    "is_preset": bool,
    "provider": str,
}
_OPTIONAL_BODY_KEYS = frozenset({"last_llm_response_info"})
_VARIABLE_TYPES: dict[str, type] = {
    "language": str,
    "locale": str,
    "input": str,
    "raw_input": str,
    "version_code": int,
    "is_inline_chat": bool,
    "is_command": bool,
    "problem": str,
    "current_filename": str,
    "is_select_code_before_chat": bool,
    "last_select_time": int,
    "last_turn_session": str,
    "hash_workspace": bool,
    "hash_file": int,
    "hash_code": int,
    "use_filepath": bool,
    "current_time": str,
    "badge_clickable": bool,
    "workspace_path": str,
    "brand": str,
    "system_type": str,
}
_VARIABLE_CONSTANTS: dict[str, Any] = {
    "is_inline_chat": False,
    "is_command": False,
    "brand": "Trae",
}


class Invalid(Exception):
    """``field`` (a header name or a dotted body path) is missing or wrong, for ``reason``."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True)
class HistoryItem:
    role: str
    content: str


@dataclass(frozen=True)
class ChatRequest:
    """The parts of a valid chat body the reply generator needs."""

    user_input: str
    model_name: str
    session_id: str
    history: tuple[HistoryItem, ...]
    image_note: str = ""  # " [saw N image(s): ...]" when multi_media held images (§8)


def _type_name(expected: type) -> str:
    return {str: "a string", int: "an integer", bool: "a boolean", list: "a list"}.get(
        expected, expected.__name__
    )


def _typed(value: Any, expected: type) -> bool:
    if expected in (int, bool):
        return type(value) is expected
    return isinstance(value, expected)


def _check_types(data: Mapping[str, Any], types: Mapping[str, type], prefix: str) -> None:
    for key, expected in types.items():
        if key not in data:
            raise Invalid(prefix + key, "is missing")
        if not _typed(data[key], expected):
            raise Invalid(prefix + key, f"must be {_type_name(expected)}")


def _expect(field: str, actual: Any, wanted: Any) -> None:
    if type(actual) is not type(wanted) or actual != wanted:
        raise Invalid(field, f"must be {orjson.dumps(wanted).decode()}")


# -- headers (§3) ------------------------------------------------------------------------------


def check_ide_headers(headers: Mapping[str, str], *, app_id: str) -> None:
    """Every §3 header except the token (checked against the state by the caller)."""
    if headers.get("x-app-id") != app_id:
        raise Invalid("x-app-id", "must be the account's APP_ID")
    for name in _PRESENT_HEADERS:
        if not headers.get(name, "").strip():
            raise Invalid(name, "is missing or empty")
    for name, (pattern, description) in _PATTERN_HEADERS.items():
        if pattern.fullmatch(headers.get(name, "")) is None:
            raise Invalid(name, f"must be {description}")


# -- token exchange (§2) -----------------------------------------------------------------------


def check_exchange_body(body: Any) -> tuple[str, str, str]:
    """``(ClientID, RefreshToken, UserID)`` of an exchange body with exactly the four keys."""
    if not isinstance(body, dict):
        raise Invalid("body", "must be a JSON object")
    for key in _EXCHANGE_KEYS:
        if not isinstance(body.get(key), str):
            raise Invalid(key, "is missing or not a string")
    extra = sorted(set(body) - set(_EXCHANGE_KEYS))
    if extra:
        raise Invalid(extra[0], "is not a field of ExchangeToken")
    if body["ClientSecret"] != "-":
        raise Invalid("ClientSecret", 'must be "-"')
    if not body["RefreshToken"]:
        raise Invalid("RefreshToken", "is empty")
    return body["ClientID"], body["RefreshToken"], body["UserID"]


# -- chat body (§5) ----------------------------------------------------------------------------


def check_chat_body(body: Any, *, version_code: int) -> ChatRequest:
    """Validate a legacy chat body; ``version_code`` is the ``x-ide-version-code`` header."""
    if not isinstance(body, dict):
        raise Invalid("body", "must be a JSON object")
    extra = sorted(set(body) - set(_BODY_TYPES) - _OPTIONAL_BODY_KEYS)
    if extra:
        raise Invalid(extra[0], "is not a field of the legacy chat body")
    _check_types(body, _BODY_TYPES, "")
    _expect("intent_name", body["intent_name"], INTENT_NAME)
    _expect("generate_suggested_questions", body["generate_suggested_questions"], False)
    _expect("is_preset", body["is_preset"], True)
    _expect("provider", body["provider"], "")
    if not body["session_id"]:
        raise Invalid("session_id", "is empty")
    _expect("conversation_id", body["conversation_id"], body["session_id"])
    if not body["model_name"]:
        raise Invalid("model_name", "is empty")
    history = _check_history(body["chat_history"], body["session_id"])
    _expect("current_turn", body["current_turn"], len(history))
    _expect("valid_turns", body["valid_turns"], list(range(len(history))))
    _check_last_response(body, history)
    _check_variables(body, history, version_code)
    return ChatRequest(body["user_input"], body["model_name"], body["session_id"], history)


def _check_history(items: list[Any], session_id: str) -> tuple[HistoryItem, ...]:
    history: list[HistoryItem] = []
    for index, item in enumerate(items):
        prefix = f"chat_history[{index}]"
        if not isinstance(item, dict):
            raise Invalid(prefix, "must be an object")
        keys = set(item)
        if keys != HISTORY_KEYS:
            wrong = sorted(keys ^ HISTORY_KEYS)[0]
            reason = "items have exactly role, content, status, locale, session_id"
            raise Invalid(f"{prefix}.{wrong}", reason)
        _check_types(item, dict.fromkeys(HISTORY_KEYS, str), prefix + ".")
        if item["role"] not in ROLES:
            raise Invalid(f"{prefix}.role", "must be user, assistant or system")
        _expect(f"{prefix}.status", item["status"], "success")
        if item["locale"] not in LOCALES:
            raise Invalid(f"{prefix}.locale", "must be en-us or zh-cn")
        _expect(f"{prefix}.session_id", item["session_id"], session_id)
        history.append(HistoryItem(item["role"], item["content"]))
    return tuple(history)


def _check_last_response(body: Mapping[str, Any], history: tuple[HistoryItem, ...]) -> None:
    last_is_assistant = bool(history) and history[-1].role == "assistant"
    info = body.get("last_llm_response_info")
    if not last_is_assistant:
        if "last_llm_response_info" in body:
            raise Invalid(
                "last_llm_response_info", "must be absent: last history item not assistant"
            )
        return
    if not isinstance(info, dict):
        raise Invalid("last_llm_response_info", "must be an object: last history item is assistant")
    if set(info) != {"turn", "is_error", "response"}:
        raise Invalid("last_llm_response_info", "must have exactly turn, is_error, response")
    _expect("last_llm_response_info.turn", info["turn"], len(history) - 1)
    _expect("last_llm_response_info.is_error", info["is_error"], False)
    _expect("last_llm_response_info.response", info["response"], history[-1].content)


def _check_variables(
    body: Mapping[str, Any], history: tuple[HistoryItem, ...], version_code: int
) -> None:
    try:
        variables = orjson.loads(body["variables"])
    except orjson.JSONDecodeError as exc:
        raise Invalid("variables", "must be a string holding JSON") from exc
    if not isinstance(variables, dict):
        raise Invalid("variables", "must hold a JSON object")
    _check_types(variables, _VARIABLE_TYPES, "variables.")
    for key, wanted in _VARIABLE_CONSTANTS.items():
        _expect(f"variables.{key}", variables[key], wanted)
    if variables["locale"] not in LOCALES:
        raise Invalid("variables.locale", "must be en-us or zh-cn")
    if variables["system_type"] not in SYSTEM_TYPES:
        raise Invalid("variables.system_type", "must be Windows, macOS or Linux")
    _expect("variables.input", variables["input"], body["user_input"])
    _expect("variables.raw_input", variables["raw_input"], body["user_input"])
    _expect("variables.version_code", variables["version_code"], version_code)
    last_is_assistant = bool(history) and history[-1].role == "assistant"
    wanted_session = body["session_id"] if last_is_assistant else ""
    _expect("variables.last_turn_session", variables["last_turn_session"], wanted_session)
