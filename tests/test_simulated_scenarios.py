"""The simulated upstream's dialect §7 scenarios: transient failures and business error codes."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

import simkit
from simkit import (
    AGENT_CHAT,
    CHAT,
    Body,
    agent_chat_body,
    agent_headers,
    chat_body,
    ide_headers,
    parse_sse,
)
from trae2api.testing import SimulatedTrae
from trae2api.testing.agent_scenario import AGENT_FLAGS
from trae2api.testing.scenario import parse_directives

shared_sim, sim, token = simkit.sim_fixtures()
shared_client, client = simkit.client_fixtures()
Events = list[tuple[str, Any]]


def agent(client: httpx.Client, sim: SimulatedTrae, token: str, body: Body) -> Events:
    response = client.post(
        AGENT_CHAT, headers=agent_headers(sim, token), content=orjson.dumps(body)
    )
    assert response.status_code == 200
    return parse_sse(response.text)


def legacy(client: httpx.Client, sim: SimulatedTrae, token: str, message: str) -> Events:
    response = client.post(
        CHAT, headers=ide_headers(sim, token), json=chat_body([("user", message)])
    )
    assert response.status_code == 200
    return parse_sse(response.text)


def names(events: Events) -> list[str]:
    return [name for name, _ in events]


@pytest.mark.parametrize(
    ("text", "transient", "unknown"),
    [
        ("[sim:transient 3003 2]", (3003, 2), []),
        ("[sim:transient 3003 0]", (3003, 0), []),
        ("[sim:transient 4011 1] hi", (4011, 1), []),
        ("[sim:transient 3003]", None, ["[sim:transient 3003]"]),
        ("[sim:transient]", None, ["[sim:transient]"]),
        ("[sim:transient 3003 x]", None, ["[sim:transient 3003 x]"]),
        ("[sim:transient 3003 1 2]", None, ["[sim:transient 3003 1 2]"]),
        ("[sim:transient 3003 -1]", None, ["[sim:transient 3003 -1]"]),
    ],
)
def test_transient_directive_parses(
    text: str, transient: tuple[int, int] | None, unknown: list[str]
) -> None:
    """[sim:transient CODE K] takes exactly two non-negative integers (a positive code)."""
    found, _ = parse_directives(text, AGENT_FLAGS, "call")
    assert (found.transient, found.unknown) == (transient, unknown)


def test_transient_fails_the_first_k_attempts(
    sim: SimulatedTrae, client: httpx.Client, token: str
) -> None:
    """The first K chats with the same last user text are metadata + 3003; then it answers."""
    body = agent_chat_body("hello [sim:transient 3003 3]")
    for _ in range(3):
        events = agent(client, sim, token, body)
        assert names(events) == ["metadata", "error"]
        assert events[1][1] == {"code": 3003, "message": "server is busy, please try again later"}
    events = agent(client, sim, token, body)
    assert names(events)[-1] == "done"
    assert simkit.answer(events) == "Hello! You said: hello (turn 0)"
    other = agent(client, sim, token, agent_chat_body("other [sim:transient 3003 3]"))
    assert names(other) == ["metadata", "error"]


def test_transient_counts_restart_after_reset(
    sim: SimulatedTrae, client: httpx.Client, token: str
) -> None:
    """A reset forgets the attempts, so the same text fails again."""
    body = agent_chat_body("[sim:transient 3003 1]")
    assert names(agent(client, sim, token, body)) == ["metadata", "error"]
    assert names(agent(client, sim, token, body))[-1] == "done"
    sim.control.reset()
    fresh = sim.state.mint_access_token()
    assert names(agent(client, sim, fresh, body)) == ["metadata", "error"]


def test_transient_on_legacy(sim: SimulatedTrae, client: httpx.Client, token: str) -> None:
    """The legacy chat honours [sim:transient] the same way."""
    message = "hi [sim:transient 3003 2]"
    for _ in range(2):
        events = legacy(client, sim, token, message)
        assert names(events) == ["metadata", "error"]
        assert events[1][1]["code"] == 3003
    assert names(legacy(client, sim, token, message))[-1] == "done"


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (4006, "context window"),
        (4022, "exceed"),
        (4008, "credits exhausted"),
        (4011, "rate limited"),
        (1005, "entitlement"),
        (3003, "busy"),
    ],
)
def test_error_directive_has_realistic_messages(
    sim: SimulatedTrae, client: httpx.Client, token: str, code: int, words: str
) -> None:
    """[sim:error N] answers one error event with a message that says what went wrong."""
    for events in (
        agent(client, sim, token, agent_chat_body(f"[sim:error {code}]")),
        legacy(client, sim, token, f"[sim:error {code}]"),
    ):
        assert names(events) == ["error"]
        assert events[0][1]["code"] == code
        assert words in events[0][1]["message"]
