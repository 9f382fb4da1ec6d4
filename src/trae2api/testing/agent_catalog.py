"""The agent dialect's model catalogue (agent dialect §3): default pools and lookups over them.

Pure data and queries; the mutable copy lives in ``SimState`` (``agent_models``), this module
must not hold state or do I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

PRODUCT_APP_ID = "6eefa01c-1036-4c7e-9ca5-d891f63bfcd8"
INLINE_FUNCTION = "inline_chat"
INTERNAL_HELPERS = ("title_generation", "fast_apply", "summary", "custom_model_x")


def _json(data: dict[str, Any]) -> str:
    return orjson.dumps(data).decode()


def agent_entry(
    name: str,
    display: str,
    *,
    served: str,
    reasoning: bool = False,
    multimodal: bool = False,
    default: bool = False,
    switch: bool = True,
    usage: str = "chat_completion",
    max_tokens: int = 8192,
    prompt_max_tokens: int = 128000,
) -> dict[str, Any]:
    """One ``config_info_list`` item in the shape of agent dialect §3."""
    capability = "reasoning_model" if reasoning else "chat_model"
    return {
        "config_name": name,
        "is_default": default,
        "config_switch": switch,
        "usage": usage,
        "display_config": {
            "display_name": display,
            "multimodal": multimodal,
            "model_capability": capability,
            "icon": f"https://sim.invalid/icons/{name}.png",
        },
        "display_contact_config": _json({"contact": "", "badge": "sim"}),
        "extra_config": _json({"tier": "sim", "region": "sg"}),
        "model_detail_list": [
            {
                "model_name": f"{name}__dev",
                "max_tokens": max_tokens,
                "prompt_max_tokens": prompt_max_tokens,
                "provider_model_name": served,
            }
        ],
    }


def _helpers() -> list[dict[str, Any]]:
    return [agent_entry(name, name, served=f"{name}-sim", usage=name) for name in INTERNAL_HELPERS]


def default_agent_models() -> dict[str, list[dict[str, Any]]]:
    """Both pools; ``chat_v3`` (the first, the account's own pool) also holds entries a gateway
    must filter out: one with ``config_switch: false`` and the internal helpers."""
    chat_v3 = [
        agent_entry(
            "glm-5.2",
            "GLM-5.2",
            served="glm-5.2-0915",
            reasoning=True,
            default=True,
            max_tokens=16000,
            prompt_max_tokens=100000,
        ),
        agent_entry(
            "claude-sonnet-4.5",
            "Claude-Sonnet-4.5",
            served="claude-sonnet-4-5-20250929",
            multimodal=True,
            max_tokens=32000,
            prompt_max_tokens=200000,
        ),
        agent_entry("gpt-5.1", "GPT-5.1", served="gpt-5.1-2025-11-13", max_tokens=32000),
        agent_entry("deepseek-v3.2", "DeepSeek-V3.2", served="deepseek-v3.2-exp", reasoning=True),
        agent_entry("kimi-k2", "Kimi-K2", served="kimi-k2-0905-preview"),
        agent_entry(
            "gemini-2.0-flash", "Gemini-2.0-Flash", served="gemini-2.0-flash", switch=False
        ),
        *_helpers(),
    ]
    solo = [
        agent_entry("solo-pro", "SOLO Pro", served="solo-pro-0801", default=True, max_tokens=20000),
        agent_entry("solo-fast", "SOLO Fast", served="solo-fast-0801"),
    ]
    return {"chat_v3": chat_v3, "solo_work_lite": solo}


@dataclass(frozen=True)
class AgentModel:
    """What the chat side needs of one catalogue entry."""

    config_name: str
    pool: str
    served: str
    reasoning: bool
    max_tokens: int
    enabled: bool
    multimodal: bool = False


def _as_model(pool: str, entry: dict[str, Any]) -> AgentModel:
    details = entry.get("model_detail_list") or [{}]
    detail = details[0] if isinstance(details[0], dict) else {}
    name = str(entry.get("config_name"))
    display = entry.get("display_config") or {}
    return AgentModel(
        config_name=name,
        pool=pool,
        served=str(detail.get("provider_model_name") or f"{name}-sim"),
        reasoning=display.get("model_capability") == "reasoning_model",
        max_tokens=int(detail.get("max_tokens") or 8192),
        enabled=entry.get("config_switch") is not False,
        multimodal=display.get("multimodal") is True,
    )


def find_model(catalogue: dict[str, list[dict[str, Any]]], pool: str, name: str) -> AgentModel:
    """The model ``name`` of ``pool``, or ``LookupError("pool")`` when it is only listed in
    another pool, or ``LookupError("unknown")`` when no pool lists it (or it is switched off)."""
    for entry in catalogue.get(pool, []):
        if entry.get("config_name") == name:
            model = _as_model(pool, entry)
            if not model.enabled:
                raise LookupError("unknown")
            return model
    for entries in catalogue.values():
        if any(entry.get("config_name") == name for entry in entries):
            raise LookupError("pool")
    raise LookupError("unknown")


def default_model(catalogue: dict[str, list[dict[str, Any]]]) -> AgentModel:
    """The account default: the ``is_default`` entry of the first pool (else its first entry)."""
    pool, entries = next(iter(catalogue.items()))
    chosen = next((e for e in entries if e.get("is_default")), entries[0])
    return _as_model(pool, chosen)
