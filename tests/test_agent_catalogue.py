"""Table tests of the pure parts of dialect §7: catalogue filtering, limits, pools, reasoning
levels, the dialect probe, version-code and pool settings, and the exchange-host fallback rule."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from trae2api.config import load_settings
from trae2api.errors import ConfigError
from trae2api.upstream.exchange import may_fall_back
from trae2api.wire.agent_body import (
    build_agent_body,
    catalogue_items,
    classify_probe,
    declared_levels,
    effort_level,
    hidden,
    parse_catalogue,
    union_of_pools,
)
from trae2api.wire.translate import ChatRequest, Turn


def item(name: str, **extra: Any) -> dict[str, Any]:
    """A config_info_list entry in the shape of dialect §3."""
    entry: dict[str, Any] = {
        "config_name": name,
        "is_default": False,
        "config_switch": True,
        "usage": "chat_completion",
        "display_config": {"display_name": name.upper(), "multimodal": False},
        "model_detail_list": [{"model_name": f"{name}__dev", "max_tokens": 4000}],
    }
    entry.update(extra)
    return entry


HIDDEN: list[tuple[str, dict[str, Any], bool]] = [
    ("plain model", item("glm-5.2"), False),
    ("summary", item("summary"), True),
    ("title_generation", item("title_generation"), True),
    ("fast_apply", item("fast_apply"), True),
    ("an agent", item("file_search_agent"), True),
    ("a sub agent", item("explore_sub_agent_v2"), True),
    ("a subagent", item("browser_use_subagent"), True),
    ("custom usage", item("my-own", usage="custom_model"), True),
    ("custom id", item("custom_model_42"), True),
    ("invisible true", item("gpt-5.2-preview", invisible=True), True),
    ("invisible false", item("gpt-5.1", invisible=False), False),
    ("invisible a string", item("gpt-5.1", invisible="true"), False),
    ("switch false", item("gemini", config_switch=False), True),
    ("switch missing", {k: v for k, v in item("qwen").items() if k != "config_switch"}, False),
    ("switch zero", item("qwen", config_switch=0), False),
    ("switch null", item("qwen", config_switch=None), False),
]


@pytest.mark.parametrize(("case", "entry", "expected"), HIDDEN, ids=[c[0] for c in HIDDEN])
def test_hidden_entries(case: str, entry: dict[str, Any], expected: bool) -> None:
    """Dialect §7 hides internal agents, custom models, strict invisible and strict switch-off."""
    assert hidden(entry) is expected


LIMITS: list[tuple[str, dict[str, Any], int | None, int | None]] = [
    ("prompt_max_tokens", item("a", model_detail_list=[{"prompt_max_tokens": 9000}]), None, 9000),
    (
        "context window wins",
        item(
            "b",
            context_window_tokens={"dev": 200000},
            model_detail_list=[{"max_tokens": 32000, "prompt_max_tokens": 180000}],
        ),
        32000,
        200000,
    ),
    ("no details", item("c", model_detail_list=[]), None, None),
    (
        "odd values",
        item("d", model_detail_list=[{"max_tokens": "8k", "prompt_max_tokens": -1}]),
        None,
        None,
    ),
    (
        "window not a number",
        item(
            "e", context_window_tokens={"dev": "x"}, model_detail_list=[{"prompt_max_tokens": 700}]
        ),
        None,
        700,
    ),
]


@pytest.mark.parametrize(("case", "entry", "output", "context"), LIMITS, ids=[c[0] for c in LIMITS])
def test_limits(case: str, entry: dict[str, Any], output: int | None, context: int | None) -> None:
    """Context window from context_window_tokens.dev, else prompt_max_tokens; output max_tokens."""
    [parsed] = parse_catalogue({"config_info_list": [entry]}, "chat_v3")
    assert (parsed["max_tokens"], parsed["context_length"]) == (output, context)
    assert parsed["pool"] == "chat_v3"


def test_parse_keeps_visible_in_order() -> None:
    """Only visible entries are listed, in the catalogue's order, each with its pool."""
    payload = {
        "config_info_list": [
            item("glm-5.2"),
            item("summary"),
            item("kimi-k2"),
            "junk",
            {"config_name": ""},
        ]
    }
    names = [entry["name"] for entry in parse_catalogue(payload, "solo_work_remote")]
    assert names == ["glm-5.2", "kimi-k2"]


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"config_info_list": [{"config_name": "a"}]}, [{"config_name": "a"}]),
        ({"code": 0, "data": {"config_info_list": []}}, []),
        ({"data": {"config_info_list": [{"config_name": "b"}]}}, [{"config_name": "b"}]),
        ({"data": {"models": []}}, None),
        ({"config_info_list": "nope"}, None),
        ([], None),
        (None, None),
    ],
)
def test_catalogue_items_with_or_without_envelope(payload: Any, expected: Any) -> None:
    """The config_info_list is found at the top or inside a ``data`` envelope, else None."""
    assert catalogue_items(payload) == expected


def test_union_first_pool_wins() -> None:
    """The union keeps the first pool's entry for a name listed twice (dialect §7)."""
    first = parse_catalogue({"config_info_list": [item("a"), item("shared")]}, "chat_v3")
    second = parse_catalogue(
        {"config_info_list": [item("shared", model_detail_list=[{"max_tokens": 1}]), item("b")]},
        "solo_work_remote",
    )
    merged = union_of_pools([first, second])
    assert [(e["name"], e["pool"]) for e in merged] == [
        ("a", "chat_v3"),
        ("shared", "chat_v3"),
        ("b", "solo_work_remote"),
    ]
    assert merged[1]["max_tokens"] == 4000


ALL = ["light", "high", "extra_high"]
LEVELS: list[tuple[str, dict[str, Any], tuple[str, ...]]] = [
    ("none declared", item("kimi"), ()),
    ("top level", item("glm", reasoning_effort_levels=ALL), tuple(ALL)),
    (
        "display_config",
        item("a", display_config={"effort_levels": ["light", "high"]}),
        ("light", "high"),
    ),
    (
        "extra_config string",
        item(
            "b",
            extra_config=orjson.dumps(
                {"tier": "x", "reasoning_effort_levels": ["light", "high"]}
            ).decode(),
        ),
        ("light", "high"),
    ),
    (
        "display_contact_config string",
        item(
            "c",
            display_contact_config=orjson.dumps({"reasoning": {"levels": ["extra_high"]}}).decode(),
        ),
        ("extra_high",),
    ),
    (
        "model detail",
        item("d", model_detail_list=[{"reasoning_level_list": ["light"]}]),
        ("light",),
    ),
    (
        "objects naming levels",
        item("e", reasoning_effort=[{"level": "high", "label": "H"}]),
        ("high",),
    ),
    ("unknown names only", item("f", effort_levels=["fast", "slow"]), ()),
    ("not a list", item("g", reasoning_effort_level="high"), ()),
    ("comma list", item("i", effort_levels="light, extra_high"), ("light", "extra_high")),
    (
        "a default beside the list",
        item("j", display_config={"default_effort": "high", "effort_options": ["light", "high"]}),
        ("light", "high"),
    ),
    ("broken JSON string", item("h", extra_config="{not json"), ()),
]


@pytest.mark.parametrize(("case", "entry", "expected"), LEVELS, ids=[c[0] for c in LEVELS])
def test_declared_levels(case: str, entry: dict[str, Any], expected: tuple[str, ...]) -> None:
    """Levels are found leniently wherever the entry declares them (dialect §7 CHOICE)."""
    assert declared_levels(entry) == expected


EFFORT: list[tuple[str | None, tuple[str, ...], str | None]] = [
    ("low", tuple(ALL), "light"),
    ("minimal", tuple(ALL), "light"),
    ("medium", tuple(ALL), "high"),
    ("high", tuple(ALL), "extra_high"),
    ("xhigh", tuple(ALL), "extra_high"),
    ("light", tuple(ALL), "light"),
    ("extra_high", tuple(ALL), "extra_high"),
    ("high", ("light", "high"), "high"),
    ("low", ("high", "extra_high"), "high"),
    ("none", tuple(ALL), None),
    (None, tuple(ALL), None),
    ("high", (), None),
]


@pytest.mark.parametrize(("asked", "declared", "expected"), EFFORT)
def test_effort_level(asked: str | None, declared: tuple[str, ...], expected: str | None) -> None:
    """OpenAI's effort maps to a declared Trae level; models without levels get none."""
    assert effort_level(asked, declared) == expected


def test_body_carries_pool_effort_and_clamp() -> None:
    """The agent body names the model's pool, its level, and max_tokens clamped to the limit."""
    request = ChatRequest(
        model="glm-5.3", turns=[Turn("user", "hi")], max_tokens=99999, reasoning_effort="low"
    )
    body = build_agent_body(request, "glm-5.3", "solo_work_remote", 32000, None, "light")
    assert body["function"] == "solo_work_remote"
    assert body["reasoning_effort_level"] == "light"
    assert body["max_tokens"] == 32000
    assert "reasoning_effort_level" not in build_agent_body(request, "glm-5.3", "p", None)


PROBES: list[tuple[str, int, str, bytes, str]] = [
    ("catalogue", 200, "application/json", b'{"config_info_list": []}', "present"),
    ("business code", 200, "application/json", b'{"code": 2001, "message": "x"}', "present"),
    ("credentials refused", 401, "application/json", b'{"code": 1001}', "present"),
    ("404 page", 404, "text/html", b"<html>Not Found</html>", "absent"),
    ("405", 405, "text/plain", b"Method Not Allowed", "absent"),
    ("HTML 200", 200, "text/html", b"<html>hello</html>", "absent"),
    ("JSON without catalogue", 200, "application/json", b'{"data": {}}', "absent"),
    ("empty 200", 200, "", b"", "absent"),
    ("5xx", 503, "text/html", b"<html>busy</html>", "unknown"),
    ("429", 429, "application/json", b"{}", "unknown"),
]


@pytest.mark.parametrize(
    ("case", "status", "ctype", "content", "kind"), PROBES, ids=[c[0] for c in PROBES]
)
def test_classify_probe(case: str, status: int, ctype: str, content: bytes, kind: str) -> None:
    """A host serves the agent dialect when its catalogue route answers Trae-shaped JSON."""
    assert classify_probe(status, ctype, content).kind == kind


FALLBACK: list[tuple[str, int, bytes, bool]] = [
    ("404 page", 404, b"<html>404 Not Found</html>", True),
    ("404 empty", 404, b"", True),
    ("404 JSON without an error", 404, b'{"detail": "Not Found"}', True),
    (
        "404 with the exchange's error",
        404,
        b'{"ResponseMetadata": {"Error": {"Code": "x", "Message": "no such token"}}}',
        False,
    ),
    ("400 refusal", 400, b'{"ResponseMetadata": {"Error": {"Code": "10101"}}}', False),
    ("200", 200, b'{"Result": {"Token": "t"}}', False),
    ("502 page", 502, b"<html>bad gateway</html>", False),
]


@pytest.mark.parametrize(
    ("case", "status", "content", "expected"), FALLBACK, ids=[c[0] for c in FALLBACK]
)
def test_exchange_fallback_only_when_unseen(
    case: str, status: int, content: bytes, expected: bool
) -> None:
    """Only a 404 page proves the exchange host never handled the single-use token."""
    assert may_fall_back(status, content) is expected


CODES: list[tuple[str, bool]] = [
    ("20260820", True),
    ("20260811", True),
    ("20250325", True),  # well-formed, merely stale: Trae's table says so, not the config
    ("107", False),
    ("2026082", False),
    ("202608201", False),
    ("20261340", False),
    ("2026-8-20", False),
    ("v2026082", False),
    ("２０２６０８２０", False),
]


@pytest.mark.parametrize(("code", "valid"), CODES)
def test_version_code_must_be_a_date(code: str, valid: bool, tmp_path: Path) -> None:
    """IDE_VERSION_CODE is an 8-digit YYYYMMDD date, else a config error naming it."""
    if valid:
        assert load_settings(None, ide_version_code=code).ide_version_code == code
        return
    with pytest.raises(ConfigError) as info:
        load_settings(None, ide_version_code=code)
    assert info.value.variable == "IDE_VERSION_CODE"
    assert "YYYYMMDD" in str(info.value)


def test_defaults_are_todays_trae() -> None:
    """Without variables: auto, a 2026 version, the pools of dialect §7 and the CN hosts."""
    settings = load_settings(None)
    assert settings.upstream_dialect == "auto"
    assert (settings.ide_version, settings.ide_version_code) == ("0.1.61", "20260820")
    assert settings.pools == ("chat_v3", "solo_work_remote", "solo_work_lite")
    assert settings.agent_base_url == "https://coresg-normal.trae.ai"
    cn = load_settings(None, trae_region="cn")
    assert cn.exchange_urls == ("https://api.trae.com.cn", "https://api.trae.cn")
    assert load_settings(None, trae_function=" chat_v3 , chat_v3,x ").pools == ("chat_v3", "x")


@pytest.mark.parametrize("value", ["chat_v3,,x", ",", " "])
def test_pool_list_rejects_blanks(value: str) -> None:
    """An empty pool name in TRAE_FUNCTION is a config error naming the variable."""
    with pytest.raises(ConfigError) as info:
        load_settings(None, trae_function=value)
    assert info.value.variable == "TRAE_FUNCTION"


def test_exchange_url_list_is_checked() -> None:
    """Each REFRESH_TOKEN_URL host must be an http(s) URL."""
    with pytest.raises(ConfigError) as info:
        load_settings(None, refresh_token_url="https://a.test,ftp://b.test")
    assert info.value.variable == "REFRESH_TOKEN_URL"
