"""Pure reading of upstream events (protocol §6, agent dialect §5) as what they mean to us.

Shared by both dialects; no I/O. Also the usage numbers reported to clients.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import orjson

from trae2api.wire.sse import SSEEvent
from trae2api.wire.translate import CJK


@dataclass(slots=True)
class ToolFragment:
    """A piece of a streamed tool call (agent dialect §5); id and name only on the first."""

    index: int
    id: str
    name: str
    arguments: str


@dataclass(slots=True)
class Delta:
    content: str
    reasoning: str
    finish: str | None = None  # an ``output`` event may carry the finish reason itself
    tool_fragments: tuple[ToolFragment, ...] = ()


@dataclass(slots=True)
class ServedModel:
    """The model that actually served the request (agent ``timing_cost``)."""

    name: str


@dataclass(slots=True)
class Queued:
    position: int | None


@dataclass(slots=True)
class Finished:
    reason: str | None  # None: ``done`` did not say (an earlier output's reason stands)


@dataclass(slots=True)
class UsageReport:
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    reasoning_tokens: int | None
    cached_tokens: int | None = None  # agent dialect: cache_read_input_tokens


@dataclass(slots=True)
class Failure:
    code: int
    message: str


@dataclass(slots=True)
class CreditsReport:
    """Dialect §7 ``notify_usage``: the credits left after this chat (None: not reported)."""

    ide_credits: float | None
    work_credits: float | None
    billing_mode: str | None


Item = Delta | Queued | Finished | UsageReport | Failure | ServedModel | CreditsReport

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
        calls = data.get("tool_calls")  # null on most outputs: no tool work for them
        fragments = _tool_fragments(calls) if calls else ()
        if content or reasoning or finish or fragments:
            return Delta(content, reasoning, finish, fragments)
        return None
    if name == "timing_cost":
        served = _json_object(event.data).get("provider_model_name")
        return ServedModel(served) if isinstance(served, str) and served else None
    if name == "done":
        stated = _json_object(event.data).get("finish_reason")
        return Finished(map_finish_reason(stated) if stated else None)
    if name in _QUEUE_EVENTS:
        return Queued(_queue_position(event.data))
    if name == "token_usage":
        return _usage(_json_object(event.data))
    if name == "error":
        return _failure(event.data)
    if name == "notify_usage":
        return _credits(event.data)
    return None


def _tool_fragments(raw: Any) -> tuple[ToolFragment, ...]:
    # Agent dialect §5: a list or a single object; ``function_call`` or ``function``; SOLO's
    # extra keys (namespace, partial_arguments) are ignored.
    calls = [raw] if isinstance(raw, dict) else raw if isinstance(raw, list) else []
    fragments = []
    for position, call in enumerate(calls):
        if not isinstance(call, dict):
            continue
        function = call.get("function_call") or call.get("function") or {}
        if not isinstance(function, dict):
            continue
        index = call.get("index")
        fragments.append(
            ToolFragment(
                index=index if isinstance(index, int) and not isinstance(index, bool) else position,
                id=_text(call.get("id")),
                name=_text(function.get("name")),
                arguments=_text(function.get("arguments")),
            )
        )
    return tuple(fragments)


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
    reasoning, cached = payload.get("reasoning_tokens"), payload.get("cache_read_input_tokens")
    return UsageReport(
        prompt,
        completion,
        total,
        _int(reasoning) if reasoning is not None else None,
        _int(cached) if cached is not None else None,
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


def _credits(data: str) -> CreditsReport | None:
    payload = _json_value(data)
    if isinstance(payload, str):  # a JSON string holding the object (progress_notice style)
        payload = _json_value(payload)
    if not isinstance(payload, dict):
        return None
    remain = payload.get("cn_credits_remain_info")
    remain = remain if isinstance(remain, dict) else {}
    ide, work = _number(remain.get("ide_credits")), _number(remain.get("work_credits"))
    if ide is None and work is None:
        return None
    mode = payload.get("billing_mode")
    return CreditsReport(ide, work, mode if isinstance(mode, str) else None)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


# --- Usage ------------------------------------------------------------------------------


def estimate_tokens(text: str) -> int:
    """A rough token count for when Trae sends no ``token_usage``: ~4 chars a token, CJK 1."""
    if not text:
        return 0
    cjk = len(CJK.findall(text))
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
        if report.cached_tokens is not None:
            usage["prompt_tokens_details"] = {"cached_tokens": report.cached_tokens}
        return usage
    prompt, completion = estimate_tokens(prompt_text), estimate_tokens(completion_text)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "estimated": True,
    }
