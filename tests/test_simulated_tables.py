"""The simulated upstream's 2026 model table: version gate, pools, hidden entries and limits."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

import simkit
from simkit import AGENT_CHAT, CATALOGUE, Body, agent_chat_body, agent_headers, catalogue_body
from trae2api.testing import SimulatedTrae
from trae2api.testing.agent_catalog import agent_entry, find_model, table_selected
from trae2api.testing.agent_tables import INTERNAL_AGENTS, default_agent_models

shared_sim, sim, token = simkit.sim_fixtures()
shared_client, client = simkit.client_fixtures()


def listing(
    client: httpx.Client, sim: SimulatedTrae, token: str, pool: str = "chat_v3", **headers: Any
) -> dict[str, Body]:
    merged = {**agent_headers(sim, token), **headers}
    merged = {k: v for k, v in merged.items() if v is not None}
    response = client.post(CATALOGUE, headers=merged, json=catalogue_body(pool))
    assert response.status_code == 200
    return {e["config_name"]: e for e in response.json()["config_info_list"]}


def chat(
    client: httpx.Client, sim: SimulatedTrae, token: str, body: Body, **headers: Any
) -> list[tuple[str, Any]]:
    merged = {**agent_headers(sim, token), **headers}
    merged = {k: v for k, v in merged.items() if v is not None}
    response = client.post(AGENT_CHAT, headers=merged, content=orjson.dumps(body))
    assert response.status_code == 200
    return simkit.parse_sse(response.text)


@pytest.mark.parametrize(
    ("code", "selected"),
    [
        ("20260801", True),
        ("20260811", True),
        ("20260820", True),
        ("20310101", True),
        ("20260731", False),
        ("20250325", False),
        ("107", False),
        ("", False),
        (None, False),
        ("2026081", False),
        ("202608110", False),
        ("20261301", False),
        ("20260231", False),
        ("2026-08-11", False),
    ],
)
def test_table_selected(code: str | None, selected: bool) -> None:
    """Only an 8-digit real date from 20260801 on selects the model table."""
    assert table_selected(code) is selected


def test_table_floor_is_a_parameter() -> None:
    """A raised floor turns a once-current code stale."""
    assert table_selected("20260811", 20260901) is False
    assert table_selected("20260901", 20260901) is True


@pytest.mark.parametrize(
    ("name", "pool", "window", "output", "levels"),
    [
        ("glm-5.2", "chat_v3", 100000, 16000, ("light", "high", "extra_high")),
        ("claude-sonnet-4.5", "chat_v3", 200000, 32000, ()),
        ("claude-sonnet-4.5", "solo_work_remote", 1000000, 64000, ()),
        ("deepseek-v3.2", "chat_v3", 128000, 8192, ("light", "high")),
        ("doubao-1.5-lite", "chat_v3", 8000, 2000, ()),
        ("glm-5.3", "solo_work_remote", 200000, 32000, ()),
    ],
)
def test_model_limits_and_levels(
    name: str, pool: str, window: int, output: int, levels: tuple[str, ...]
) -> None:
    """context_window_tokens.dev wins over prompt_max_tokens; levels come from either place."""
    model = find_model(default_agent_models(), pool, name)
    assert (model.context_window, model.max_tokens, model.effort_levels) == (
        window,
        output,
        levels,
    )


def test_entry_leaves_out_none_keys() -> None:
    """switch=None and invisible=None leave config_switch and invisible out of the entry."""
    entry = agent_entry("m", "M", served="m-1", switch=None)
    assert "config_switch" not in entry
    assert "invisible" not in entry
    assert agent_entry("m", "M", served="m-1", invisible=True)["invisible"] is True


@pytest.mark.parametrize("code", ["20250325", "107", "20260731", None])
def test_stale_code_selects_the_empty_table(
    sim: SimulatedTrae, client: httpx.Client, token: str, code: str | None
) -> None:
    """An old, non-date or missing version code lists nothing and every chat is 4001."""
    headers = {"x-ide-version-code": code, "x-app-version-code": code}
    for pool in ("chat_v3", "solo_work_lite", "solo_work_remote"):
        assert listing(client, sim, token, pool, **headers) == {}
    for body in (agent_chat_body("hi"), agent_chat_body("hi", None)):
        events = chat(client, sim, token, body, **headers)
        assert events == [("error", {"code": 4001, "message": "param is invalid"})]


def test_current_code_selects_the_table(
    sim: SimulatedTrae, client: httpx.Client, token: str
) -> None:
    """20260820 lists every pool and chats; raising table_code_floor empties it again."""
    headers = {"x-ide-version-code": "20260820", "x-app-version-code": "20260820"}
    assert "glm-5.2" in listing(client, sim, token, **headers)
    assert chat(client, sim, token, agent_chat_body("hi"), **headers)[-1][0] == "done"
    sim.control.configure(table_code_floor=20260901)
    assert listing(client, sim, token, **headers) == {}
    assert chat(client, sim, token, agent_chat_body("hi"), **headers)[0][1]["code"] == 4001
    assert sim.control.stats()["table_code_floor"] == 20260901


def test_pools_and_the_clash(sim: SimulatedTrae, client: httpx.Client, token: str) -> None:
    """solo_work_remote holds glm-5.3 alone and claude-sonnet-4.5 with other limits."""
    v3 = listing(client, sim, token)
    remote = listing(client, sim, token, "solo_work_remote")
    lite = listing(client, sim, token, "solo_work_lite")
    assert "glm-5.3" in remote
    assert "glm-5.3" not in v3
    assert "glm-5.3" not in lite
    assert set(v3) & set(remote) == {"claude-sonnet-4.5"}
    first = v3["claude-sonnet-4.5"]["model_detail_list"][0]["max_tokens"]
    second = remote["claude-sonnet-4.5"]["model_detail_list"][0]["max_tokens"]
    assert (first, second) == (32000, 64000)


@pytest.mark.parametrize(
    ("model", "pool", "code"),
    [
        ("glm-5.3", "solo_work_remote", None),
        ("glm-5.3", "chat_v3", 4001),
        ("solo-pro", "solo_work_remote", 4001),
        ("claude-sonnet-4.5", "solo_work_remote", None),
        ("claude-sonnet-4.5", "chat_v3", None),
        ("gpt-5.2-preview", "chat_v3", None),
        ("file_search_agent", "chat_v3", None),
        ("custom_model_x", "chat_v3", None),
        ("qwen3-coder", "chat_v3", None),
        ("gemini-2.0-flash", "chat_v3", 4023),
        ("no-such-model", "solo_work_remote", 4023),
    ],
)
def test_model_is_valid_only_in_its_pool(
    sim: SimulatedTrae, client: httpx.Client, token: str, model: str, pool: str, code: int | None
) -> None:
    """A model chats in the pool that lists it; another pool is 4001, switched off 4023."""
    events = chat(client, sim, token, agent_chat_body("hi", model, pool))
    if code is None:
        assert events[-1] == ("done", {"finish_reason": "stop"})
    else:
        assert [(n, d["code"]) for n, d in events] == [("error", code)]


def test_served_model_tells_the_pool(sim: SimulatedTrae, client: httpx.Client, token: str) -> None:
    """The clashing name is served by a different model in each pool."""
    served = {
        pool: dict(chat(client, sim, token, agent_chat_body("hi", "claude-sonnet-4.5", pool)))
        for pool in ("chat_v3", "solo_work_remote")
    }
    assert served["chat_v3"]["timing_cost"]["provider_model_name"] == "claude-sonnet-4-5-20250929"
    remote = served["solo_work_remote"]["timing_cost"]["provider_model_name"]
    assert remote == "claude-sonnet-4-5-remote"


def test_hidden_entries_are_in_the_table(
    sim: SimulatedTrae, client: httpx.Client, token: str
) -> None:
    """chat_v3 carries each kind of entry a gateway must hide, and the three-state visible ones."""
    v3 = listing(client, sim, token)
    assert set(INTERNAL_AGENTS) <= set(v3)
    assert v3["custom_model_x"]["usage"] == "custom_model"
    assert v3["gpt-5.2-preview"]["invisible"] is True
    assert v3["gpt-5.1"]["invisible"] is False
    assert "invisible" not in v3["kimi-k2"]
    assert "config_switch" not in v3["qwen3-coder"]
    assert v3["gemini-2.0-flash"]["config_switch"] is False
    assert "context_window_tokens" not in v3["glm-5.2"]
    assert v3["claude-sonnet-4.5"]["context_window_tokens"] == {"dev": 200000}
    assert v3["glm-5.2"]["reasoning_effort_levels"] == ["light", "high", "extra_high"]
    extra = orjson.loads(v3["deepseek-v3.2"]["extra_config"])
    assert extra["reasoning_effort_levels"] == ["light", "high"]


@pytest.mark.parametrize(
    ("model", "max_tokens", "code"),
    [("doubao-1.5-lite", 2000, None), ("doubao-1.5-lite", 2001, 4001), ("glm-5.2", 16001, 4001)],
)
def test_max_tokens_above_output_limit_is_4001(
    sim: SimulatedTrae,
    client: httpx.Client,
    token: str,
    model: str,
    max_tokens: int,
    code: int | None,
) -> None:
    """max_tokens up to the model's output limit passes; one more is 4001."""
    body = {**agent_chat_body("hi", model), "max_tokens": max_tokens}
    events = chat(client, sim, token, body)
    assert (events[0][1].get("code") if events[0][0] == "error" else None) == code


@pytest.mark.parametrize(("chars", "code"), [(31_900, None), (32_100, 4006)])
def test_prompt_beyond_the_window_is_4006(
    sim: SimulatedTrae, client: httpx.Client, token: str, chars: int, code: int | None
) -> None:
    """A prompt over the 8000-token window (chars / 4) of doubao-1.5-lite is in-stream 4006."""
    events = chat(client, sim, token, agent_chat_body("x" * chars, "doubao-1.5-lite"))
    if code is None:
        assert events[-1][0] == "done"
    else:
        assert events[0][0] == "error"
        assert events[0][1]["code"] == 4006
        assert "context window" in events[0][1]["message"]


def test_non_numeric_code_is_still_a_400(
    sim: SimulatedTrae, client: httpx.Client, token: str
) -> None:
    """A version code that is not digits is a header error, not a table choice."""
    headers = {
        **agent_headers(sim, token),
        "x-ide-version-code": "v2026",
        "x-app-version-code": "v2026",
    }
    response = client.post(CATALOGUE, headers=headers, json=catalogue_body())
    assert response.status_code == 400
    assert response.json()["header"] == "x-ide-version-code"


def reasoning_of(events: list[tuple[str, Any]]) -> str:
    return "".join(d["reasoning_content"] for n, d in events if n == "output")


@pytest.mark.parametrize(
    ("model", "pool", "level", "code"),
    [
        ("glm-5.2", "chat_v3", "light", None),
        ("glm-5.2", "chat_v3", "extra_high", None),
        ("deepseek-v3.2", "chat_v3", "high", None),
        ("deepseek-v3.2", "chat_v3", "extra_high", 4001),
        ("glm-5.2", "chat_v3", "medium", 4001),
        ("glm-5.2", "chat_v3", "HIGH", 4001),
        ("glm-5.2", "chat_v3", 2, 4001),
        ("glm-5.3", "solo_work_remote", "high", 4001),
        ("kimi-k2", "chat_v3", "high", 4001),
        (None, "chat_v3", "light", None),
    ],
)
def test_reasoning_effort_level(
    sim: SimulatedTrae,
    client: httpx.Client,
    token: str,
    model: str | None,
    pool: str,
    level: Any,
    code: int | None,
) -> None:
    """reasoning_effort_level passes only with a declared level, which the reasoning names."""
    body = {**agent_chat_body("why", model, pool), "reasoning_effort_level": level}
    events = chat(client, sim, token, body)
    if code is None:
        assert reasoning_of(events) == f"Let me think about why with {level} effort."
    else:
        assert [(n, d["code"]) for n, d in events] == [("error", code)]
        assert "reasoning_effort_level" in events[0][1]["message"]


def test_no_level_keeps_the_plain_reasoning(
    sim: SimulatedTrae, client: httpx.Client, token: str
) -> None:
    """Without reasoning_effort_level the reasoning text names no level."""
    events = chat(client, sim, token, agent_chat_body("why", "glm-5.2"))
    assert reasoning_of(events) == "Let me think about why."
