"""Today's Trae out of the box (issue 10): a gateway given only the account variables and the
simulator's URLs lists the §7 catalogue, chats on every model, maps reasoning effort, clamps
max_tokens, and says clearly when IDE_VERSION_CODE selects an empty table. Real sockets, the
official SDK."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest

from conftest import CLIENT_KEY, Gateway, GatewayProcess, free_port, new_user_env, sdk, wait_for
from simkit import sim_fixtures
from trae2api.config import load_settings
from trae2api.testing import SimulatedTrae

shared_sim, sim, token = sim_fixtures()

STALE = (
    "Trae returned an empty model table for IDE_VERSION_CODE=20250325; raise IDE_VERSION_CODE "
    "(and IDE_VERSION)"
)
# The simulator's 2026 table (testing/agent_tables.py): visible models of chat_v3, then
# solo_work_remote, then solo_work_lite (the default TRAE_FUNCTION order), and "auto".
VISIBLE = [
    "auto",
    "glm-5.2",
    "claude-sonnet-4.5",
    "gpt-5.1",
    "deepseek-v3.2",
    "kimi-k2",
    "qwen3-coder",
    "doubao-1.5-lite",
    "glm-5.3",
    "solo-remote-max",
    "solo-pro",
    "solo-fast",
]
HIDDEN = {
    "gemini-2.0-flash",
    "gpt-5.2-preview",
    "summary",
    "title_generation",
    "fast_apply",
    "file_search_agent",
    "explore_sub_agent_v2",
    "browser_use_subagent",
    "computer_use_subagent",
    "custom_model_x",
}


def minimal_values(sim: SimulatedTrae, data_dir: Path, **extra: Any) -> dict[str, Any]:
    """Only what a new user sets: the three account values and the (simulated) hosts."""
    account = sim.account
    return {
        "refresh_token": account.refresh_token,
        "client_id": account.client_id,
        "user_id": account.user_id,
        "base_url": sim.url,
        "refresh_token_url": sim.url,
        "data_dir": data_dir,
        "auth_token": CLIENT_KEY,
        **extra,
    }


@pytest.fixture
def today(sim: SimulatedTrae, tmp_path: Path) -> Iterator[Any]:
    """Start in-process gateways configured like a new user's."""
    started: list[Gateway] = []

    def start(**extra: Any) -> Gateway:
        values = minimal_values(sim, tmp_path / f"data{len(started)}", **extra)
        gateway = Gateway(load_settings(None, **values)).start()
        started.append(gateway)
        return gateway

    yield start
    for gateway in started:
        gateway.stop()


@pytest.mark.slow
def test_new_user_gets_todays_catalogue(sim: SimulatedTrae, tmp_path: Path) -> None:
    """`trae2api serve` with only REFRESH_TOKEN/CLIENT_ID/USER_ID and URLs lists the union of
    pools without hidden entries, with limits, and logs the dialect it chose."""
    env = new_user_env(sim, tmp_path / "data")
    gateway = GatewayProcess(env, free_port(), tmp_path / "gateway.log").start()
    try:
        with sdk(gateway.url, "any-key") as client:
            models = {model.id: model for model in client.models.list()}
        status = httpx.get(f"{gateway.url}/status", timeout=10).json()
    finally:
        gateway.stop()
    assert list(models) == VISIBLE
    assert not HIDDEN & set(models)
    claude = models["claude-sonnet-4.5"].model_dump()
    # chat_v3 lists it first: its limits (context from context_window_tokens.dev) win.
    assert (claude["context_length"], claude["max_tokens"], claude["pool"]) == (
        200000,
        32000,
        "chat_v3",
    )
    assert models["glm-5.3"].model_dump()["pool"] == "solo_work_remote"
    assert models["doubao-1.5-lite"].model_dump()["context_length"] == 8000
    assert status["dialect"] == "agent"
    assert status["dialect_choice"]["host"] == sim.url
    lines = [orjson.loads(line) for line in (tmp_path / "gateway.log").read_bytes().splitlines()]
    chosen = [line for line in lines if line.get("event") == "upstream.dialect_chosen"]
    assert [(line["dialect"], line["host"]) for line in chosen] == [("agent", sim.url)]
    assert "agent catalogue answers" in chosen[0]["reason"]


@pytest.mark.slow
def test_stale_code_is_logged_at_start_up(sim: SimulatedTrae, tmp_path: Path) -> None:
    """With an old IDE_VERSION_CODE the start-up log names the empty table and the fix."""
    env = new_user_env(sim, tmp_path / "data", IDE_VERSION_CODE="20250325")
    log_path = tmp_path / "gateway.log"
    gateway = GatewayProcess(env, free_port(), log_path).start()

    def logged() -> list[dict[str, Any]]:
        lines = [orjson.loads(line) for line in log_path.read_bytes().splitlines()]
        return [line for line in lines if line.get("event") == "upstream.model_table_empty"]

    try:
        assert wait_for(lambda: bool(logged()), timeout=15)
    finally:
        gateway.stop()
    [line] = logged()
    assert line["fix"] == STALE
    assert line["level"] == "error"


def test_chats_on_every_listed_model_with_its_pool(sim: SimulatedTrae, today: Any) -> None:
    """Every listed model answers; each is sent with its own pool and max_tokens clamped."""
    gateway = today()
    with gateway.client() as client:
        listed = [model.id for model in client.models.list()]
        for model in listed:
            raw = client.chat.completions.with_raw_response.create(
                model=model,
                messages=[{"role": "user", "content": f"hello {model}"}],
                max_tokens=1_000_000,
            )
            reply = raw.parse()
            assert f"You said: hello {model}" in (reply.choices[0].message.content or "")
            body = sim.control.last_agent_chat()["body"]
            if model == "auto":
                assert (body["function"], body.get("config_name")) == ("inline_chat", None)
                continue
            expected = client.models.retrieve(model).model_dump()
            assert (body["config_name"], body["function"]) == (model, expected["pool"])
            assert body["max_tokens"] == expected["max_tokens"]
            if model == "claude-sonnet-4.5":
                assert raw.headers["x-trae-served-model"] == "claude-sonnet-4-5-20250929"
    assert len(listed) == len(VISIBLE)


def test_single_model_shows_limits(today: Any) -> None:
    """GET /v1/models/{id} carries context_length and max_tokens too."""
    with today().client() as client:
        model = client.models.retrieve("glm-5.2").model_dump()
    assert (model["context_length"], model["max_tokens"]) == (100000, 16000)
    assert model["reasoning_effort_levels"] == ["light", "high", "extra_high"]


EFFORTS = [
    ("glm-5.2", "low", "light"),
    ("glm-5.2", "medium", "high"),
    ("glm-5.2", "high", "extra_high"),
    ("glm-5.2", "extra_high", "extra_high"),
    ("glm-5.2", "minimal", "light"),
    ("deepseek-v3.2", "high", "high"),  # declares light/high only: the nearest level
    ("kimi-k2", "high", None),  # declares none: dropped, not an error
    ("glm-5.3", "low", None),
]


@pytest.mark.parametrize(("model", "asked", "level"), EFFORTS)
def test_reasoning_effort_maps_to_declared_levels(
    sim: SimulatedTrae, today: Any, model: str, asked: str, level: str | None
) -> None:
    """OpenAI reasoning_effort becomes reasoning_effort_level only for models with levels."""
    with today().client() as client:
        reply = client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": "think"}],
            extra_body={"reasoning_effort": asked},
        )
    body = sim.control.last_agent_chat()["body"]
    assert body.get("reasoning_effort_level") == level
    assert reply.choices[0].message.content


def test_unknown_reasoning_effort_is_a_400(today: Any) -> None:
    """A reasoning_effort that is neither OpenAI's nor Trae's is refused with a 400."""
    with today().client() as client, pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model="glm-5.2",
            messages=[{"role": "user", "content": "think"}],
            extra_body={"reasoning_effort": "turbo"},
        )


@pytest.mark.parametrize("stream", [False, True])
def test_stale_version_code_fails_clearly(today: Any, stream: bool) -> None:
    """An old IDE_VERSION_CODE: /readyz not ready and chats fail, both naming the fix."""
    gateway = today(ide_version_code="20250325", ide_version="1.2.10")
    with gateway.http() as http:
        ready = http.get("/readyz")
        status = http.get("/status").json()
    assert ready.status_code == 503
    assert ready.json()["upstream"] == STALE
    assert status["model_table"] == STALE
    with gateway.client() as client:
        assert list(client.models.list()) == []
        with pytest.raises(openai.APIStatusError) as info:
            chat(client, stream)
    assert info.value.status_code == 502
    assert STALE in info.value.message
    assert "4001" in info.value.message


def chat(client: openai.OpenAI, stream: bool) -> str:
    """One chat, streamed or not; the reply text."""
    messages: Any = [{"role": "user", "content": "hi"}]
    if not stream:
        reply = client.chat.completions.create(model="glm-5.2", messages=messages)
        return reply.choices[0].message.content or ""
    chunks = client.chat.completions.create(model="glm-5.2", messages=messages, stream=True)
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def test_wrong_app_id_is_not_called_a_stale_version(today: Any) -> None:
    """A 4001 naming the app id on every pool is reported as such, not as an empty table."""
    gateway = today(app_id="not-the-app-id")
    with gateway.http() as http:
        ready = http.get("/readyz")
    assert ready.status_code == 503
    assert "app_id" in ready.json()["upstream"]
    assert "empty model table" not in ready.json()["upstream"]


def test_current_code_is_ready(today: Any) -> None:
    """With the default (current) version code /readyz is ready."""
    with today().http() as http:
        ready = http.get("/readyz")
    assert ready.status_code == 200, ready.text


def test_agent_calls_carry_current_version_headers(sim: SimulatedTrae, today: Any) -> None:
    """Agent calls send the §7 version code, version and a matching User-Agent."""
    with today().client() as client:
        client.chat.completions.create(model="kimi-k2", messages=[{"role": "user", "content": "x"}])
    headers = sim.control.last_agent_chat()["headers"]
    assert headers["x-ide-version-code"] == headers["x-app-version-code"] == "20260820"
    assert headers["x-ide-version"] == "0.1.61"
    assert headers["user-agent"] == "Trae/0.1.61"


@pytest.mark.slow
@pytest.mark.parametrize("code", ["107", "2026082", "20261301"])
def test_malformed_version_code_refused_at_start(tmp_path: Path, code: str) -> None:
    """`trae2api serve` with a malformed IDE_VERSION_CODE exits 2 naming the variable."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "REFRESH_TOKEN": "rt",
        "CLIENT_ID": "ono9krqynydwx5",
        "DATA_DIR": str(tmp_path / "data"),
        "IDE_VERSION_CODE": code,
    }
    done = subprocess.run(
        [sys.executable, "-m", "trae2api", "serve", "--env-file", "/dev/null"],
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    err = done.stderr.decode()
    assert "IDE_VERSION_CODE" in err
    assert "YYYYMMDD" in err
    assert "Traceback" not in err
