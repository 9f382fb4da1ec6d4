"""The agent dialect's model catalogue (agent dialect §3, §7): entry shape, the version gate and
lookups over the pools.

Pure data and queries; the mutable copy lives in ``SimState`` (``agent_models``), the default
tables in ``agent_tables``; this module must not hold state or do I/O.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

import orjson

PRODUCT_APP_ID = "6eefa01c-1036-4c7e-9ca5-d891f63bfcd8"
INLINE_FUNCTION = "inline_chat"
TABLE_CODE_FLOOR = 20260801  # dialect §7: codes from 2026-08-01 on select the non-empty table
EFFORT_LEVELS = ("light", "high", "extra_high")  # dialect §7
Catalogue = dict[str, list[dict[str, Any]]]


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
    switch: bool | None = True,
    invisible: bool | None = None,
    usage: str = "chat_completion",
    max_tokens: int = 8192,
    prompt_max_tokens: int = 128000,
    context_window: int | None = None,
    extra: dict[str, Any] | None = None,
    extra_config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One ``config_info_list`` item in the shape of dialect §3/§7. ``switch``/``invisible``
    None leave the key out; ``context_window`` adds ``context_window_tokens: {"dev": N}``;
    ``extra`` adds top-level keys and ``extra_config`` keys inside the ``extra_config`` string."""
    capability = "reasoning_model" if reasoning else "chat_model"
    entry: dict[str, Any] = {"config_name": name, "is_default": default}
    if switch is not None:
        entry["config_switch"] = switch
    if invisible is not None:
        entry["invisible"] = invisible
    entry["usage"] = usage
    entry["display_config"] = {
        "display_name": display,
        "multimodal": multimodal,
        "model_capability": capability,
        "icon": f"https://sim.invalid/icons/{name}.png",
    }
    entry["display_contact_config"] = _json({"contact": "", "badge": "sim"})
    entry["extra_config"] = _json({"tier": "sim", "region": "sg", **(extra_config or {})})
    entry["model_detail_list"] = [
        {
            "model_name": f"{name}__dev",
            "max_tokens": max_tokens,
            "prompt_max_tokens": prompt_max_tokens,
            "provider_model_name": served,
        }
    ]
    if context_window is not None:
        entry["context_window_tokens"] = {"dev": context_window}
    entry.update(extra or {})
    return entry


def table_selected(code: str | None, floor: int = TABLE_CODE_FLOOR) -> bool:
    """Whether ``x-ide-version-code`` selects the non-empty model table (dialect §7): an
    8-digit real date ``YYYYMMDD`` not before ``floor``; anything else selects the empty one."""
    if code is None or len(code) != 8 or not code.isdigit():
        return False
    try:
        datetime.date(int(code[:4]), int(code[4:6]), int(code[6:]))
    except ValueError:
        return False
    return int(code) >= floor


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
    context_window: int = 128000
    effort_levels: tuple[str, ...] = ()


def _levels(entry: dict[str, Any]) -> tuple[str, ...]:
    """Declared reasoning effort levels: a top-level ``reasoning_effort_levels`` list, else
    the same key inside the ``extra_config`` JSON string (where the real one lives is UNKNOWN)."""
    levels = entry.get("reasoning_effort_levels")
    if levels is None and isinstance(entry.get("extra_config"), str):
        try:
            config = orjson.loads(entry["extra_config"])
        except orjson.JSONDecodeError:
            config = {}
        levels = config.get("reasoning_effort_levels") if isinstance(config, dict) else None
    if not isinstance(levels, list):
        return ()
    return tuple(str(level) for level in levels)


def _as_model(pool: str, entry: dict[str, Any]) -> AgentModel:
    details = entry.get("model_detail_list") or [{}]
    detail = details[0] if isinstance(details[0], dict) else {}
    name = str(entry.get("config_name"))
    display = entry.get("display_config") or {}
    window = (entry.get("context_window_tokens") or {}).get("dev")
    return AgentModel(
        config_name=name,
        pool=pool,
        served=str(detail.get("provider_model_name") or f"{name}-sim"),
        reasoning=display.get("model_capability") == "reasoning_model",
        max_tokens=int(detail.get("max_tokens") or 8192),
        enabled=entry.get("config_switch") is not False,
        multimodal=display.get("multimodal") is True,
        context_window=int(window or detail.get("prompt_max_tokens") or 128000),
        effort_levels=_levels(entry),
    )


def find_model(catalogue: Catalogue, pool: str, name: str) -> AgentModel:
    """The model ``name`` of ``pool``, or ``LookupError("pool")`` when it is only listed in
    another pool, or ``LookupError("unknown")`` when no pool lists it (or it is switched off).
    Hidden entries (internal agents, custom models, ``invisible: true``) stay chat-able in their
    own pool: hiding them is the gateway's job (a CHOICE of the simulator)."""
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


def default_model(catalogue: Catalogue) -> AgentModel:
    """The account default: the ``is_default`` entry of the first pool (else its first entry)."""
    pool, entries = next(iter(catalogue.items()))
    chosen = next((e for e in entries if e.get("is_default")), entries[0])
    return _as_model(pool, chosen)
