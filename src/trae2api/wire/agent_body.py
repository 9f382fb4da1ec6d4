"""Pure translation for the agent dialect: the chat body (dialect §4, §7), the catalogue (§3, §7:
pools, hidden entries, limits, reasoning levels) and what a probe of its route means (§1).

No I/O, clock or randomness; the HTTP side lives in ``upstream/agent_client.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from trae2api.wire.translate import ChatRequest, Turn

AUTO_MODEL = "auto"
# Dialect §7: internal helpers that are not chat models (besides any name with "agent" in it).
_INTERNAL = ("title_generation", "fast_apply", "summary")
# Dialect §7: the reasoning levels a model may declare.
EFFORT_LEVELS = ("light", "high", "extra_high")
# Dialect §7 CHOICE: OpenAI's reasoning_effort (and Trae's own names) → reasoning_effort_level.
# "high" is OpenAI's high (→ extra_high); Trae's "high" is reached through "medium".
_EFFORT = {
    "minimal": "light",
    "low": "light",
    "light": "light",
    "medium": "high",
    "high": "extra_high",
    "xhigh": "extra_high",
    "extra_high": "extra_high",
}
# Dialect §7 UNKNOWN: where a catalogue entry declares its levels. CHOICE: a list of known level
# strings under any key containing "effort" or "level", looked for (in this order) at the top
# level, in display_config, in the JSON strings extra_config and display_contact_config, and in
# model_detail_list[0], each searched two mappings deep.
_LEVEL_KEYS = ("effort", "level")
_LEVEL_PLACES = ("display_config", "extra_config", "display_contact_config")


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


def catalogue_items(payload: Any) -> list[Any] | None:
    """The ``config_info_list`` of a catalogue answer (dialect §3), also when an envelope wraps
    it in ``data`` (``{"code": 0, "data": {...}}``); None when the answer has none."""
    for holder in (payload, payload.get("data") if isinstance(payload, dict) else None):
        items = holder.get("config_info_list") if isinstance(holder, dict) else None
        if isinstance(items, list):
            return items
    return None


def parse_catalogue(payload: Any, pool: str = "") -> list[dict[str, Any]]:
    """``config_info_list`` as catalogue entries of ``pool``, hidden ones left out (dialect §7)."""
    items = catalogue_items(payload)
    entries = []
    for item in items if isinstance(items, list) else []:
        name = item.get("config_name") if isinstance(item, dict) else None
        if not isinstance(name, str) or not name or hidden(item):
            continue
        display = _mapping(item.get("display_config"))
        detail = _first_detail(item)
        window = _mapping(item.get("context_window_tokens")).get("dev")
        entries.append(
            {
                "name": name,
                "pool": pool,
                "display_name": display.get("display_name") or name,
                "multimodal": bool(display.get("multimodal")),
                "is_default": bool(item.get("is_default")),
                "reasoning": display.get("model_capability") == "reasoning_model",
                "max_tokens": _positive(detail.get("max_tokens")),
                "context_length": _positive(window) or _positive(detail.get("prompt_max_tokens")),
                "effort_levels": declared_levels(item),
            }
        )
    return entries


def hidden(item: dict[str, Any]) -> bool:
    """Dialect §7: internal agents, custom models, ``invisible: true`` (a missing field means
    visible) and ``config_switch: false`` (only a strict false hides) are not listed."""
    name = str(item.get("config_name", ""))
    lowered = name.lower()
    return (
        "agent" in lowered  # also "subagent"
        or name in _INTERNAL
        or item.get("usage") == "custom_model"
        or name.startswith("custom_model_")
        or item.get("invisible") is True
        or item.get("config_switch") is False
    )


def union_of_pools(pools: Sequence[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Dialect §7: the pools' entries in order; the first pool listing a name wins."""
    seen: set[str] = set()
    merged = []
    for entries in pools:
        for entry in entries:
            if entry["name"] not in seen:
                seen.add(entry["name"])
                merged.append(entry)
    return merged


def declared_levels(item: dict[str, Any]) -> tuple[str, ...]:
    """The reasoning levels an entry declares, found leniently (see ``_LEVEL_PLACES``)."""
    places: list[Any] = [*(item.get(key) for key in _LEVEL_PLACES), _first_detail(item)]
    for place, depth in ((item, 1), *((place, 2) for place in places)):
        levels = _levels_in(_decoded(place), depth)
        if levels:
            return levels
    return ()


def effort_level(requested: str | None, declared: Sequence[str]) -> str | None:
    """Dialect §7: the ``reasoning_effort_level`` for OpenAI's ``reasoning_effort``; None when
    the model declares no levels or the request asks for none."""
    level = _EFFORT.get(requested or "")
    if level is None or not declared:
        return None
    if level in declared:
        return level
    # The nearest declared level (e.g. extra_high asked, light/high declared → high).
    rank = EFFORT_LEVELS.index(level)
    return min(declared, key=lambda name: abs(EFFORT_LEVELS.index(name) - rank))


def _levels_in(place: Any, depth: int) -> tuple[str, ...]:
    if not isinstance(place, dict) or depth == 0:
        return ()
    for key, value in place.items():
        if isinstance(key, str) and any(word in key.lower() for word in _LEVEL_KEYS):
            levels = _known_levels(value)
            if levels:
                return levels
    for value in place.values():
        levels = _levels_in(_decoded(value), depth - 1)
        if levels:
            return levels
    return ()


def _known_levels(value: Any) -> tuple[str, ...]:
    """Known level names in a list of strings (or of objects naming one), or in a comma list
    ("light,high"; a single name is more likely a default than the whole set), in order."""
    if isinstance(value, str) and "," in value:
        value = [part.strip() for part in value.split(",")]
    if not isinstance(value, list):
        return ()
    names = [
        text
        for element in value
        for text in (element.values() if isinstance(element, dict) else (element,))
        if isinstance(text, str) and text in EFFORT_LEVELS
    ]
    return tuple(dict.fromkeys(names))


def _decoded(value: Any) -> Any:
    """A JSON string (extra_config, display_contact_config) as its value; anything else as is."""
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return None
    return value


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _first_detail(item: dict[str, Any]) -> dict[str, Any]:
    details = item.get("model_detail_list")
    return _mapping(details[0]) if isinstance(details, list) and details else {}


@dataclass(frozen=True)
class Probe:
    """What a host said to the agent catalogue (selector.py): ``present`` (it serves the route,
    whatever the answer), ``absent`` (a 404 page, no JSON, or no such host) or ``unknown``."""

    kind: Literal["present", "absent", "unknown"]
    detail: str


def classify_probe(status: int, content_type: str, content: bytes) -> Probe:
    """Dialect §1: a host without the agent dialect answers 404 pages; Trae's gateway answers
    JSON (the catalogue, or a business code) even when it refuses the request."""
    if status in (404, 405, 410):
        return Probe("absent", f"HTTP {status}")
    if status >= 500 or status in (408, 429):
        return Probe("unknown", f"HTTP {status}")
    if status in (401, 403):
        return Probe("present", f"HTTP {status}: the route exists, the credentials were refused")
    try:
        payload = orjson.loads(content)
    except orjson.JSONDecodeError:
        kind = (content_type.split(";")[0].strip() or "no content type") if content else "empty"
        return Probe("absent", f"HTTP {status} answered with a page that is not JSON ({kind})")
    items = catalogue_items(payload)
    if items is not None:
        return Probe("present", f"the catalogue answered ({len(items)} entries)")
    if isinstance(payload, dict) and payload.get("code") not in (None, 0, "0"):
        return Probe("present", f"the catalogue answered code {payload['code']}")
    return Probe("absent", f"HTTP {status} answered JSON without config_info_list")


def bare_model_name(name: str) -> str:
    """Dialect §3: ids are config names; a ``__suffix`` a client sends is stripped."""
    return name.split("__", 1)[0]


def build_agent_body(
    request: ChatRequest,
    model: str | None,
    pool: str,
    max_tokens_limit: int | None,
    images: Sequence[Sequence[str]] | None = None,
    effort: str | None = None,
) -> dict[str, Any]:
    """The ``llm_utils_chat`` body, rewritten exactly as dialect §4 and §7 say; ``pool`` is
    the model's own pool and ``effort`` its ``reasoning_effort_level`` (None: not sent)."""
    body: dict[str, Any] = {"function": pool, "stream": True}
    if model is None:
        body["function"] = "inline_chat"  # "auto": the account's default model
    else:
        body["config_name"] = body["model"] = model
    if effort is not None:
        body["reasoning_effort_level"] = effort
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
