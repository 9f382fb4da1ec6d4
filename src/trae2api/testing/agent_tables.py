"""The simulator's default model table of 2026 (agent dialect §3, §7): three pools, with every
kind of entry a gateway must hide or keep.

Pure data; ``SimState`` copies it (``agent_models``) and an older ``x-ide-version-code`` selects
the empty table instead (``agent_catalog.table_selected``). Must not hold state or do I/O.

What is in it, for tests of a gateway (names are ``config_name``):
- ``chat_v3`` (the account's own pool, first): ``glm-5.2`` (default, reasoning, levels
  light/high/extra_high as a top-level ``reasoning_effort_levels`` list, 16000 out / 100000
  context from ``prompt_max_tokens``), ``claude-sonnet-4.5`` (multimodal, 32000 out, context
  200000 from ``context_window_tokens.dev`` which wins over its ``prompt_max_tokens`` 180000),
  ``gpt-5.1`` (``invisible: false``), ``deepseek-v3.2`` (reasoning, levels light/high inside the
  ``extra_config`` JSON string), ``kimi-k2`` (no ``invisible`` key), ``qwen3-coder`` (no
  ``config_switch`` key), ``doubao-1.5-lite`` (a small window: 2000 out, context 8000 from
  ``context_window_tokens.dev``; prompt_max_tokens 6000); hidden: ``gemini-2.0-flash``
  (``config_switch: false``), ``gpt-5.2-preview`` (``invisible: true``), the internal agents,
  and ``custom_model_x`` (``usage: "custom_model"``).
- ``solo_work_lite``: ``solo-pro`` (default), ``solo-fast``; no name shared with ``chat_v3``.
- ``solo_work_remote``: ``glm-5.3`` (reasoning, no levels; only here), ``solo-remote-max``, and
  ``claude-sonnet-4.5`` again with other limits (64000 out, context 1000000): the first pool
  listing a name wins.
"""

from __future__ import annotations

from typing import Any

from trae2api.testing.agent_catalog import EFFORT_LEVELS, Catalogue, agent_entry

INTERNAL_AGENTS = (
    "summary",
    "title_generation",
    "fast_apply",
    "file_search_agent",
    "explore_sub_agent_v2",
    "browser_use_subagent",
    "computer_use_subagent",
)
CUSTOM_MODEL = "custom_model_x"


def _hidden() -> list[dict[str, Any]]:
    internal = [agent_entry(n, n, served=f"{n}-sim", usage=n) for n in INTERNAL_AGENTS]
    return [
        agent_entry(
            "gemini-2.0-flash", "Gemini-2.0-Flash", served="gemini-2.0-flash", switch=False
        ),
        agent_entry("gpt-5.2-preview", "GPT-5.2 Preview", served="gpt-5.2-preview", invisible=True),
        *internal,
        agent_entry(CUSTOM_MODEL, "My model", served="my-own-endpoint", usage="custom_model"),
    ]


def _chat_v3() -> list[dict[str, Any]]:
    return [
        agent_entry(
            "glm-5.2",
            "GLM-5.2",
            served="glm-5.2-0915",
            reasoning=True,
            default=True,
            max_tokens=16000,
            prompt_max_tokens=100000,
            extra={"reasoning_effort_levels": list(EFFORT_LEVELS)},
        ),
        agent_entry(
            "claude-sonnet-4.5",
            "Claude-Sonnet-4.5",
            served="claude-sonnet-4-5-20250929",
            multimodal=True,
            max_tokens=32000,
            prompt_max_tokens=180000,
            context_window=200000,
        ),
        agent_entry(
            "gpt-5.1", "GPT-5.1", served="gpt-5.1-2025-11-13", max_tokens=32000, invisible=False
        ),
        agent_entry(
            "deepseek-v3.2",
            "DeepSeek-V3.2",
            served="deepseek-v3.2-exp",
            reasoning=True,
            extra_config={"reasoning_effort_levels": ["light", "high"]},
        ),
        agent_entry("kimi-k2", "Kimi-K2", served="kimi-k2-0905-preview"),
        agent_entry("qwen3-coder", "Qwen3-Coder", served="qwen3-coder-480b", switch=None),
        agent_entry(
            "doubao-1.5-lite",
            "Doubao-1.5-Lite",
            served="doubao-1-5-lite-32k",
            max_tokens=2000,
            prompt_max_tokens=6000,
            context_window=8000,
        ),
        *_hidden(),
    ]


def default_agent_models() -> Catalogue:
    """The three pools of dialect §7, ``chat_v3`` first (the account's own pool)."""
    solo = [
        agent_entry("solo-pro", "SOLO Pro", served="solo-pro-0801", default=True, max_tokens=20000),
        agent_entry("solo-fast", "SOLO Fast", served="solo-fast-0801"),
    ]
    remote = [
        agent_entry(
            "glm-5.3",
            "GLM-5.3",
            served="glm-5.3-0901",
            reasoning=True,
            default=True,
            max_tokens=32000,
            prompt_max_tokens=200000,
        ),
        agent_entry("solo-remote-max", "SOLO Remote Max", served="solo-remote-max-0820"),
        agent_entry(
            "claude-sonnet-4.5",
            "Claude-Sonnet-4.5 (remote)",
            served="claude-sonnet-4-5-remote",
            multimodal=True,
            max_tokens=64000,
            prompt_max_tokens=1000000,
        ),
    ]
    return {"chat_v3": _chat_v3(), "solo_work_lite": solo, "solo_work_remote": remote}
