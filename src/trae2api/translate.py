"""Pure translation between OpenAI chat requests/responses and Trae's legacy chat dialect.

No await, clock, randomness or environment here: callers pass ids, times and settings in.
Request side follows protocol §5; event side follows §6; rendering follows OpenAI's chat spec.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from trae2api.errors import InvalidRequest
from trae2api.sse import SSEEvent

ReasoningMode = Literal["reasoning_content", "think", "drop"]

_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
_THINK_BLOCK = re.compile(r"^\s*<think>.*?</think>\s*", re.DOTALL)
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")
# A fixed namespace so every replica derives the same session id (protocol §5 CHOICE).
_SESSION_NAMESPACE = uuid.UUID("6f1c7a52-3b8e-4c1e-9d7e-2a5b8c9d0e11")
THINK_OPEN = "<think>\n"
THINK_CLOSE = "\n</think>\n\n"


@dataclass(frozen=True, slots=True)
class Turn:
    """One conversation message reduced to what the legacy dialect carries: a role and text."""

    role: str
    text: str


def turns_from_messages(messages: Sequence[tuple[str, Any]]) -> list[Turn]:
    """Normalise OpenAI ``(role, content)`` pairs; raise ``InvalidRequest`` naming the bad one."""
    if not messages:
        raise InvalidRequest("messages must contain at least one message", param="messages")
    turns = []
    for index, (role, content) in enumerate(messages):
        mapped = _ROLES.get(role)
        if mapped is None:
            raise InvalidRequest(
                f"messages[{index}].role '{role}' is not supported here; use system, developer, "
                f"user or assistant",
                param=f"messages[{index}].role",
            )
        text = _content_text(content, index)
        if mapped == "assistant":
            # Our own think-mode output sent back as history: the reasoning is not the answer.
            text = _THINK_BLOCK.sub("", text, count=1)
        turns.append(Turn(mapped, text))
    return turns


def _content_text(content: Any, index: int) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    texts = []
    for part_index, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
            continue
        param = f"messages[{index}].content[{part_index}]"
        if kind in ("image_url", "input_image"):
            raise InvalidRequest(
                "image input is not supported yet by this trae2api version", param=param
            )
        raise InvalidRequest(f"content part type {kind!r} is not supported", param=param)
    # Protocol §5: multi-part text content is joined.
    return "\n".join(texts)


def session_id_for(turns: Sequence[Turn], client_name: str) -> str:
    """A conversation id derived from its first message and the client (protocol §5 CHOICE)."""
    first = turns[0]
    return str(uuid.uuid5(_SESSION_NAMESPACE, f"{client_name}\x00{first.role}\x00{first.text}"))


def locale_for(text: str) -> str:
    return "zh-cn" if _CJK.search(text) else "en-us"


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


# --- Upstream events (protocol §6) -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Delta:
    content: str
    reasoning: str
    finish: str | None = None  # an ``output`` event may carry the finish reason itself


@dataclass(frozen=True, slots=True)
class Queued:
    position: int | None


@dataclass(frozen=True, slots=True)
class Finished:
    reason: str


@dataclass(frozen=True, slots=True)
class UsageReport:
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    reasoning_tokens: int | None


@dataclass(frozen=True, slots=True)
class Failure:
    code: int
    message: str


Item = Delta | Queued | Finished | UsageReport | Failure

_FINISH_REASONS = {"stop": "stop", "length": "length", "max_tokens": "length"}
_FINISH_REASONS |= {"tool_calls": "tool_calls", "content_filter": "content_filter"}
_QUEUE_EVENTS = {"request_wait_in_queue", "queue_begin", "queue_position"}
_POSITION = re.compile(r"\d+")


def map_finish_reason(value: Any) -> str:
    """Protocol §6: keep OpenAI's values, map the rest conservatively."""
    return _FINISH_REASONS.get(value, "stop") if isinstance(value, str) else "stop"


def interpret(event: SSEEvent) -> Item | None:
    """One upstream event as what it means to us; ``None`` for events that carry nothing."""
    name = event.event
    if name == "output":
        data = _json_value(event.data)
        if isinstance(data, str):
            # Protocol §6 leniency: a bare JSON string payload is the answer text itself.
            return Delta(data, "") if data else None
        if not isinstance(data, dict):
            return None
        content = _text(data.get("response"))
        reasoning = _text(data.get("reasoning_content"))
        finish = map_finish_reason(data["finish_reason"]) if data.get("finish_reason") else None
        if content or reasoning or finish:
            return Delta(content, reasoning, finish)
        return None
    if name == "done":
        return Finished(map_finish_reason(_json_object(event.data).get("finish_reason")))
    if name in _QUEUE_EVENTS:
        return Queued(_queue_position(event.data))
    if name == "token_usage":
        return _usage(_json_object(event.data))
    if name == "error":
        return _failure(event.data)
    return None


def _json_value(data: str) -> Any:
    try:
        return orjson.loads(data) if data else None
    except orjson.JSONDecodeError:
        return None


def _json_object(data: str) -> dict[str, Any]:
    value = _json_value(data)
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def _queue_position(data: str) -> int | None:
    payload = _json_object(data)
    for key in ("position", "queue_position"):
        if isinstance(payload.get(key), int):
            return int(payload[key])
    # Variant: the position only appears in the message text.
    found = _POSITION.search(_text(payload.get("message")) or data)
    return int(found.group()) if found else None


def _usage(payload: dict[str, Any]) -> UsageReport:
    prompt, completion = _int(payload.get("prompt_tokens")), _int(payload.get("completion_tokens"))
    total = _int(payload.get("total_tokens")) or prompt + completion
    reasoning = payload.get("reasoning_tokens")
    return UsageReport(
        prompt, completion, total, _int(reasoning) if reasoning is not None else None
    )


def _failure(data: str) -> Failure:
    value = _json_value(data)
    if isinstance(value, str):
        return Failure(0, value[:300])
    payload = value if isinstance(value, dict) else {}
    code = payload.get("code")
    try:
        number = int(code) if code is not None else 0
    except (TypeError, ValueError):
        number = 0
    message = _text(payload.get("message")) or _text(payload.get("msg")) or data[:200]
    return Failure(number, message)


# --- Usage ------------------------------------------------------------------------------


def estimate_tokens(text: str) -> int:
    """A rough token count for when Trae sends no ``token_usage``: ~4 chars a token, CJK 1."""
    if not text:
        return 0
    cjk = len(_CJK.findall(text))
    return max(1, cjk + (len(text) - cjk + 3) // 4)


def usage_payload(
    report: UsageReport | None, prompt_text: str, completion_text: str
) -> dict[str, Any]:
    """OpenAI ``usage``: Trae's own counts, else an estimate marked ``"estimated": true``."""
    if report is not None:
        usage: dict[str, Any] = {
            "prompt_tokens": report.prompt_tokens,
            "completion_tokens": report.completion_tokens,
            "total_tokens": report.total_tokens,
        }
        if report.reasoning_tokens is not None:
            usage["completion_tokens_details"] = {"reasoning_tokens": report.reasoning_tokens}
        return usage
    prompt, completion = estimate_tokens(prompt_text), estimate_tokens(completion_text)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "estimated": True,
    }
