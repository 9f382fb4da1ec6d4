"""Pure translation for the agent dialect: the chat body (dialect §4) and the catalogue (§3).

No I/O, clock or randomness; the HTTP side lives in ``upstream/agent_client.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from trae2api.translate import ChatRequest, Turn

AUTO_MODEL = "auto"
# Dialect §3: internal helpers that are not chat models.
_INTERNAL = ("title_generation", "fast_apply", "summary")


def catalogue_request(pool: str) -> dict[str, Any]:
    """The seven-key ``get_detail_param`` body; only ``function`` varies (dialect §3)."""
    return {
        "function": pool,
        "config_names": None,
        "need_prompt": False,
        "current_config_info": None,
        "poly_prompt": True,
        "mode_type": None,
        "agent_type": None,
    }


def parse_catalogue(payload: Any) -> list[dict[str, Any]]:
    """``config_info_list`` as catalogue entries: switched-off and internal ones left out."""
    items = payload.get("config_info_list") if isinstance(payload, dict) else None
    entries = []
    for item in items if isinstance(items, list) else []:
        name = item.get("config_name") if isinstance(item, dict) else None
        if not isinstance(name, str) or not name or item.get("config_switch") is False:
            continue
        if name in _INTERNAL or name.startswith("custom_model_"):
            continue
        display = item.get("display_config") if isinstance(item.get("display_config"), dict) else {}
        details = item.get("model_detail_list") or [{}]
        detail = details[0] if isinstance(details[0], dict) else {}
        entries.append(
            {
                "name": name,
                "display_name": display.get("display_name") or name,
                "multimodal": bool(display.get("multimodal")),
                "is_default": bool(item.get("is_default")),
                "reasoning": display.get("model_capability") == "reasoning_model",
                "max_tokens": _positive(detail.get("max_tokens")),
                "context_length": _positive(detail.get("prompt_max_tokens")),
            }
        )
    return entries


def bare_model_name(name: str) -> str:
    """Dialect §3: ids are config names; a ``__suffix`` a client sends is stripped."""
    return name.split("__", 1)[0]


def build_agent_body(
    request: ChatRequest,
    model: str | None,
    pool: str,
    max_tokens_limit: int | None,
    images: Sequence[Sequence[str]] | None = None,
) -> dict[str, Any]:
    """The ``llm_utils_chat`` body, rewritten exactly as dialect §4 says."""
    body: dict[str, Any] = {"function": pool, "stream": True}
    if model is None:
        body["function"] = "inline_chat"  # "auto": the account's default model
    else:
        body["config_name"] = body["model"] = model
    body["messages"] = agent_messages(request.turns, images)
    if request.tools and request.tool_choice != "none":
        body["tools"] = [_agent_tool(tool) for tool in request.tools]
        body["tool_choice"] = request.tool_choice
    limit = request.max_tokens
    if limit is not None:
        body["max_tokens"] = min(limit, max_tokens_limit) if max_tokens_limit else limit
    body.update(request.sampling)
    if request.stops:
        body["stop"] = list(request.stops)
    return body


def agent_messages(
    turns: Sequence[Turn], images: Sequence[Sequence[str]] | None = None
) -> list[dict[str, Any]]:
    """Messages with content as parts (images as ``image_url`` parts, given as URLs) and
    ``function_call`` in assistant tool calls."""
    messages = []
    for index, turn in enumerate(turns):
        parts = _parts(turn.text)
        # Dialect §4: images travel as parts; whether the model sees them is UNKNOWN.
        parts += [{"type": "image_url", "image_url": {"url": url}} for url in _at(images, index)]
        message: dict[str, Any] = {"role": turn.role, "content": parts}
        if turn.role == "tool":
            message["tool_call_id"] = turn.tool_call_id
        elif turn.tool_calls:
            answered = _answered_ids(turns, index + 1)
            calls = [
                {
                    "id": call.id,
                    "type": "function",
                    "function_call": {"name": call.name, "arguments": call.arguments},
                }
                for call in turn.tool_calls
                if call.id in answered  # an unanswered call is dropped (dialect §4)
            ]
            if calls:
                message["tool_calls"] = calls
            elif not turn.text:
                continue
        messages.append(message)
    return messages


def _answered_ids(turns: Sequence[Turn], start: int) -> set[str]:
    answered = set()
    for turn in turns[start:]:
        if turn.role != "tool":
            break
        if turn.tool_call_id:
            answered.add(turn.tool_call_id)
    return answered


def _at(images: Sequence[Sequence[str]] | None, index: int) -> Sequence[str]:
    return images[index] if images is not None and index < len(images) else ()


def _parts(text: str) -> list[dict[str, Any]]:
    # Dialect §4: content must be an array of parts; a plain string is rejected (4001).
    return [{"type": "text", "text": text}] if text else []


def _agent_tool(tool: dict[str, Any]) -> dict[str, Any]:
    function = dict(tool["function"])
    parameters = function.get("parameters", {"type": "object", "properties": {}})
    # Dialect §4: parameters travel as a JSON string; never double-encode one that already is.
    if not isinstance(parameters, str):
        parameters = orjson.dumps(parameters).decode()
    function["parameters"] = parameters
    return {"type": "function", "function": function}


def _positive(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None
