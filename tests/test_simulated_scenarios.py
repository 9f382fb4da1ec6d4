"""The simulated upstream's dialect §7 scenarios: transient failures and business error codes."""

from __future__ import annotations

from itertools import pairwise
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
from trae2api.testing.agent_scenario import AGENT_FLAGS, cumulative_arguments
from trae2api.testing.scenario import parse_directives, snapshots

shared_sim, sim, token = simkit.sim_fixtures()
shared_client, client = simkit.client_fixtures()
Events = list[tuple[str, Any]]
SAID_HI = "Hello! You said: hi (turn 0)"
WEATHER = {
    "type": "function",
    "function": {"name": "get_weather", "parameters": '{"type": "object"}'},
}


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


def responses(events: Events) -> list[str]:
    return [data["response"] for name, data in events if name == "output"]


def thoughts(events: Events) -> list[str]:
    return [data["reasoning_content"] for name, data in events if name == "output"]


@pytest.mark.parametrize(
    ("pieces", "expected"),
    [
        ([], []),
        (["a"], ["a", "a"]),
        (["ha", "ha", "ha"], ["ha", "haha", "hahaha", "hahaha"]),
        (["x", "", "y"], ["x", "x", "xy", "xy"]),
    ],
)
def test_snapshots(pieces: list[str], expected: list[str]) -> None:
    """Each piece becomes the text so far, and the last snapshot is repeated once."""
    assert snapshots(pieces) == expected


@pytest.mark.parametrize(
    ("text", "pieces", "cumulative"),
    [
        ("[sim:pieces ha|ha|ha]", ("ha", "ha", "ha"), False),
        ("[sim:pieces a b|c] [sim:cumulative]", ("a b", "c"), True),
        ("[sim:pieces]", None, False),
    ],
)
def test_pieces_directive_parses(
    text: str, pieces: tuple[str, ...] | None, cumulative: bool
) -> None:
    """[sim:pieces a|b] splits on "|"; [sim:cumulative] is a flag; pieces need an argument."""
    found, _ = parse_directives(text, AGENT_FLAGS, "call")
    assert found.pieces == pieces
    assert ("cumulative" in found.flags) is cumulative
    assert bool(found.unknown) is (pieces is None)


def test_cumulative_agent_stream(sim: SimulatedTrae, client: httpx.Client, token: str) -> None:
    """[sim:cumulative] sends growing snapshots of reasoning and answer, the last one twice."""
    events = agent(client, sim, token, agent_chat_body("hi [sim:cumulative]", "glm-5.2"))
    thinking = [t for t in thoughts(events) if t]
    said = [r for r in responses(events) if r]
    for series, final in ((thinking, "Let me think about hi."), (said, SAID_HI)):
        assert series[-1] == series[-2] == final
        assert len(series) > 3
        assert all(b.startswith(a) and len(b) > len(a) for a, b in pairwise(series[:-1]))
    outs = [d for n, d in events if n == "output"]
    assert all(not (o["response"] and o["reasoning_content"]) for o in outs)
    assert names(events)[-1] == "done"


def test_cumulative_with_tool_calls(sim: SimulatedTrae, client: httpx.Client, token: str) -> None:
    """Under [sim:cumulative] the lead-in text is snapshots while call arguments stay fragments."""
    message = '[sim:cumulative] [sim:text-then-call] [sim:call get_weather {"city": "Paris"}]'
    body = {**agent_chat_body(message), "tools": [WEATHER]}
    events = agent(client, sim, token, body)
    said = [r for r in responses(events) if r]
    assert said[-1] == said[-2] == "Let me use a tool for that."
    calls = [d["tool_calls"][0] for n, d in events if n == "output" and d["tool_calls"]]
    assert "".join(c["function_call"]["arguments"] for c in calls) == '{"city": "Paris"}'
    assert all(d["response"] == "" for n, d in events if n == "output" and d["tool_calls"])


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("[sim:pieces ha|ha|ha]", ["ha", "ha", "ha"]),
        ("[sim:pieces ha|ha|ha] [sim:cumulative]", ["ha", "haha", "hahaha", "hahaha"]),
        ("[sim:pieces a|a|ab|b]", ["a", "a", "ab", "b"]),
    ],
)
def test_pieces_are_sent_exactly(
    sim: SimulatedTrae, client: httpx.Client, token: str, message: str, expected: list[str]
) -> None:
    """[sim:pieces] streams exactly the given deltas (or their snapshots) on both dialects."""
    assert responses(agent(client, sim, token, agent_chat_body(message))) == expected
    assert responses(legacy(client, sim, token, message)) == expected


def test_cumulative_on_legacy(sim: SimulatedTrae, client: httpx.Client, token: str) -> None:
    """The legacy chat sends snapshots too under [sim:cumulative]."""
    said = responses(legacy(client, sim, token, "hi [sim:cumulative]"))
    assert said[-1] == said[-2] == SAID_HI
    assert all(b.startswith(a) for a, b in pairwise(said))


def test_cumulative_arguments_unit() -> None:
    """Arguments become running totals and the last fragment repeats as a continuation."""
    fragments = [
        {
            "index": 0,
            "id": "c",
            "type": "function",
            "function_call": {"name": "f", "arguments": "{"},
        },
        {"index": 0, "id": "", "function_call": {"name": "", "arguments": '"a": 1'}},
        {"index": 0, "id": "", "function_call": {"name": "", "arguments": "}"}},
    ]
    result = cumulative_arguments(fragments)
    assert [f["function_call"]["arguments"] for f in result] == [
        "{",
        '{"a": 1',
        '{"a": 1}',
        '{"a": 1}',
    ]
    assert result[0]["id"] == "c"
    assert result[0]["function_call"]["name"] == "f"
    assert result[-1] == {
        "index": 0,
        "id": "",
        "function_call": {"name": "", "arguments": '{"a": 1}'},
    }
    assert fragments[0]["function_call"]["arguments"] == "{"


def test_cumulative_args_stream(sim: SimulatedTrae, client: httpx.Client, token: str) -> None:
    """[sim:cumulative-args] streams growing argument snapshots per call, parallel calls too."""
    message = (
        '[sim:cumulative] [sim:cumulative-args] [sim:call get_weather {"city": "Paris"}] '
        '[sim:call get_time {"tz": "UTC"}]'
    )
    tools = [WEATHER, {"type": "function", "function": {"name": "get_time"}}]
    events = agent(client, sim, token, {**agent_chat_body(message), "tools": tools})
    calls = [d["tool_calls"][0] for n, d in events if n == "output" and d["tool_calls"]]
    for index, expected in ((0, '{"city": "Paris"}'), (1, '{"tz": "UTC"}')):
        series = [c["function_call"]["arguments"] for c in calls if c["index"] == index]
        assert series[-1] == series[-2] == expected
        assert all(b.startswith(a) for a, b in pairwise(series))
    assert [c["function_call"]["name"] for c in calls if c["id"]] == ["get_weather", "get_time"]
    assert names(events)[-1] == "done"


def test_cumulative_args_is_agent_only(
    sim: SimulatedTrae, client: httpx.Client, token: str
) -> None:
    """[sim:cumulative-args] is unknown on the legacy chat."""
    assert legacy(client, sim, token, "[sim:cumulative-args]")[0][1]["code"] == 4001
