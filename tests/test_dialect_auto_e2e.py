"""UPSTREAM_DIALECT=auto against real simulators: it prefers the agent dialect, finds it on the
region's agent host, falls back to legacy only where the agent catalogue is absent, and looks
again when the upstream changes its mind; fixed modes say so on /status."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest

from conftest import Gateway, GatewayProcess, free_port, new_user_env, wait_for
from trae2api.testing import SimulatedTrae


def dead_url() -> str:
    """A loopback URL nothing listens on (connections are refused)."""
    return f"http://127.0.0.1:{free_port()}"


def status(gateway: Gateway) -> dict[str, Any]:
    with gateway.http() as http:
        result: dict[str, Any] = http.get("/status").json()
    return result


def say(gateway: Gateway, model: str, text: str = "hi") -> str:
    """One chat through the official SDK; the reply text."""
    with gateway.client() as client:
        reply = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": text}]
        )
    return reply.choices[0].message.content or ""


@pytest.fixture
def legacy_only() -> Iterator[SimulatedTrae]:
    """A second simulator that serves only the legacy dialect (the original's BASE_URL)."""
    with SimulatedTrae() as other:
        other.control.configure(agent_endpoints=False)
        yield other


@pytest.mark.slow
def test_auto_prefers_agent_on_base_url(sim: SimulatedTrae, start_gateway: Any) -> None:
    """Both dialects on BASE_URL: auto chooses the agent dialect there and says why."""
    gateway = start_gateway(upstream_dialect="auto", agent_base_url=dead_url())
    assert "You said: hi" in say(gateway, "glm-5.2")
    choice = status(gateway)["dialect_choice"]
    assert (choice["mode"], choice["dialect"], choice["host"]) == ("auto", "agent", sim.url)
    assert "agent catalogue answers" in choice["reason"]
    assert sim.control.last_chat()["dialect"] == "agent"


@pytest.mark.slow
def test_auto_finds_the_region_agent_host(
    sim: SimulatedTrae, legacy_only: SimulatedTrae, start_gateway: Any
) -> None:
    """The original's BASE_URL lacks the agent dialect: auto chats on AGENT_BASE_URL instead."""
    gateway = start_gateway(
        upstream_dialect="auto", base_url=legacy_only.url, agent_base_url=sim.url
    )
    assert "You said: hi" in say(gateway, "claude-sonnet-4.5")
    choice = status(gateway)["dialect_choice"]
    assert (choice["dialect"], choice["host"]) == ("agent", sim.url)
    assert legacy_only.control.stats()["chats"] == 0
    with gateway.client() as client:
        assert "glm-5.3" in {model.id for model in client.models.list()}


@pytest.mark.slow
def test_auto_falls_back_to_legacy_where_agent_is_absent(
    sim: SimulatedTrae, start_gateway: Any
) -> None:
    """No agent catalogue on either host: auto speaks legacy on BASE_URL and says why."""
    sim.control.configure(agent_endpoints=False)
    dead = dead_url()
    gateway = start_gateway(upstream_dialect="auto", agent_base_url=dead)
    assert "You said: hi" in say(gateway, "gpt-4o")
    choice = status(gateway)["dialect_choice"]
    assert (choice["dialect"], choice["host"]) == ("legacy", sim.url)
    assert "absent" in choice["reason"]
    assert dead in choice["reason"]
    assert status(gateway)["dialect"] == "legacy"


@pytest.mark.slow
def test_legacy_fallback_without_app_id_says_so(sim: SimulatedTrae, tmp_path: Path) -> None:
    """A legacy fallback with no APP_ID set logs that APP_ID is needed and where it is."""
    sim.control.configure(agent_endpoints=False)
    env = new_user_env(sim, tmp_path / "data", AGENT_BASE_URL=dead_url())
    log_path = tmp_path / "gateway.log"
    gateway = GatewayProcess(env, free_port(), log_path).start()

    def events() -> list[str]:
        return [orjson.loads(line).get("event") for line in log_path.read_bytes().splitlines()]

    try:
        assert wait_for(lambda: "upstream.legacy_without_app_id" in events(), timeout=15)
    finally:
        gateway.stop()
    assert "upstream.dialect_chosen" in events()


@pytest.mark.slow
def test_auto_moves_to_agent_when_legacy_dies(sim: SimulatedTrae, start_gateway: Any) -> None:
    """Legacy answering 3003 on every request makes auto look again and move to agent."""
    sim.control.configure(agent_endpoints=False)
    gateway = start_gateway(
        upstream_dialect="auto", agent_base_url=dead_url(), dialect_recheck_interval=0
    )
    assert "You said" in say(gateway, "gpt-4o")
    assert status(gateway)["dialect"] == "legacy"
    sim.control.configure(agent_endpoints=True, legacy_chat="busy")
    for _ in range(3):
        with pytest.raises(openai.APIStatusError):
            say(gateway, "gpt-4o")
        if status(gateway)["dialect"] == "agent":
            break
    assert wait_for(lambda: status(gateway)["dialect"] == "agent", timeout=10)
    assert "You said: back" in say(gateway, "glm-5.2", "back")
    with gateway.client() as client:
        assert "glm-5.2" in {model.id for model in client.models.list()}


@pytest.mark.slow
def test_auto_moves_to_legacy_when_agent_disappears(sim: SimulatedTrae, start_gateway: Any) -> None:
    """Agent routes starting to answer 404 make auto look again and fall back to legacy."""
    gateway = start_gateway(
        upstream_dialect="auto", agent_base_url=dead_url(), dialect_recheck_interval=0
    )
    assert "You said" in say(gateway, "kimi-k2")
    assert status(gateway)["dialect"] == "agent"
    sim.control.configure(agent_endpoints=False)
    for _ in range(3):
        with pytest.raises(openai.APIStatusError):
            say(gateway, "kimi-k2")
    assert wait_for(lambda: status(gateway)["dialect"] == "legacy", timeout=10)
    assert "You said: again" in say(gateway, "gpt-4o", "again")


@pytest.mark.slow
def test_rechecks_are_rate_limited(sim: SimulatedTrae, start_gateway: Any) -> None:
    """Within DIALECT_RECHECK_INTERVAL a failing dialect is kept (no probe storm)."""
    gateway = start_gateway(
        upstream_dialect="auto", agent_base_url=dead_url(), dialect_recheck_interval=3600
    )
    assert "You said" in say(gateway, "kimi-k2")
    sim.control.configure(agent_endpoints=False)
    for _ in range(4):
        with pytest.raises(openai.APIStatusError):
            say(gateway, "kimi-k2")
    assert status(gateway)["dialect"] == "agent"


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["agent", "legacy"])
def test_status_names_a_fixed_dialect(start_gateway: Any, mode: str) -> None:
    """UPSTREAM_DIALECT=agent|legacy is what /status shows (it said legacy for both before)."""
    gateway = start_gateway(upstream_dialect=mode)
    with gateway.http() as http:
        assert http.get("/readyz").status_code == 200
    choice = status(gateway)["dialect_choice"]
    assert (choice["mode"], choice["dialect"]) == (mode, mode)
    assert choice["reason"] == f"UPSTREAM_DIALECT={mode}"
    assert status(gateway)["dialect"] == mode


@pytest.mark.slow
def test_undecided_when_the_agent_host_fails(sim: SimulatedTrae, start_gateway: Any) -> None:
    """An agent catalogue answering 5xx is not 'absent': auto does not fall back to legacy."""
    sim.control.configure(model_list_fail=True)
    gateway = start_gateway(upstream_dialect="auto", agent_base_url=dead_url())
    with gateway.http() as http:
        ready = http.get("/readyz")
        assert ready.status_code == 503
        assert "could not tell which dialect" in ready.json()["upstream"]
        assert http.get("/status").json()["dialect_choice"]["dialect"] is None
    sim.control.configure(model_list_fail=False)
    assert "You said" in say(gateway, "glm-5.2")
    assert status(gateway)["dialect"] == "agent"
    assert httpx.get(f"{gateway.url}/healthz").status_code == 200


@pytest.mark.slow
@pytest.mark.parametrize("stream", [False, True])
def test_first_chat_with_tools_after_a_legacy_fallback_is_bridged(
    sim: SimulatedTrae, start_gateway: Any, stream: bool
) -> None:
    """The first chat, with tools, waits for the dialect choice and goes through the bridge."""
    sim.control.configure(agent_endpoints=False)
    gateway = start_gateway(upstream_dialect="auto", agent_base_url=dead_url())
    tool = {
        "type": "function",
        "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}},
    }
    ask = 'Weather? [sim:bridge-call get_weather {"city": "Paris"}]'
    with gateway.client() as client:
        if stream:
            with client.chat.completions.stream(
                model="gpt-4o", messages=[{"role": "user", "content": ask}], tools=[tool]
            ) as events:
                message = events.get_final_completion().choices[0].message
        else:
            message = (
                client.chat.completions.create(
                    model="gpt-4o", messages=[{"role": "user", "content": ask}], tools=[tool]
                )
                .choices[0]
                .message
            )
    assert message.tool_calls is not None
    assert message.tool_calls[0].function.name == "get_weather"
    assert orjson.loads(message.tool_calls[0].function.arguments) == {"city": "Paris"}
