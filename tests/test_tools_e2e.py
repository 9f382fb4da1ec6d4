"""Tool calling end to end with the openai SDK: native on the agent dialect, bridged on legacy."""

from __future__ import annotations

import json
from typing import Any

import httpx
import orjson
import pytest

from conftest import Gateway, model_for
from trae2api.testing import SimulatedTrae

pytestmark = pytest.mark.timeout(30)

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "Local time in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
TOOLS: list[Any] = [WEATHER, TIME]


def call_directive(dialect: str, name: str, arguments: dict[str, Any]) -> str:
    kind = "call" if dialect == "agent" else "bridge-call"
    return f"[sim:{kind} {name} {json.dumps(arguments)}]"


def raw_chunks(gateway: Gateway, body: dict[str, Any]) -> list[dict[str, Any]]:
    with (
        gateway.http() as http,
        http.stream("POST", "/v1/chat/completions", json={"stream": True, **body}) as response,
    ):
        assert response.status_code == 200
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    return [orjson.loads(line[6:]) for line in lines[:-1]]


def run_tool(name: str, arguments: str) -> str:
    city = json.loads(arguments).get("city", "?")
    return json.dumps({"city": city, "temp": 21} if name == "get_weather" else {"time": "12:00"})


@pytest.mark.slow
@pytest.mark.parametrize("stream", [False, True])
def test_complete_tool_loop(gw: Gateway, dialect: str, stream: bool) -> None:
    """The model calls a tool, the client runs it and sends the result, the model answers."""
    client = gw.client()
    ask = f"Weather in Paris? {call_directive(dialect, 'get_weather', {'city': 'Paris'})}"
    messages: list[Any] = [{"role": "user", "content": ask}]
    if stream:
        with client.chat.completions.stream(
            model=model_for(dialect), messages=messages, tools=TOOLS
        ) as events:
            first = events.get_final_completion()
    else:
        first = client.chat.completions.create(
            model=model_for(dialect), messages=messages, tools=TOOLS
        )
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls or []
    assert [(c.function.name, json.loads(c.function.arguments)) for c in calls] == [  # type: ignore[union-attr]
        ("get_weather", {"city": "Paris"})
    ]
    assert calls[0].id
    if not stream:
        assert not choice.message.content
    messages.append(choice.message.model_dump(exclude_none=True))
    messages.append(
        {
            "role": "tool",
            "tool_call_id": calls[0].id,
            "content": run_tool("get_weather", calls[0].function.arguments),  # type: ignore[union-attr]
        }
    )
    final = client.chat.completions.create(model=model_for(dialect), messages=messages, tools=TOOLS)
    assert final.choices[0].finish_reason == "stop"
    content = final.choices[0].message.content or ""
    assert content.startswith("Tool results: get_weather")
    assert '"temp": 21' in content


@pytest.mark.slow
def test_parallel_calls_stream_contiguously(gw: Gateway, dialect: str) -> None:
    """Parallel calls arrive one after another, every tool-call delta carrying an index."""
    directives = call_directive(dialect, "get_weather", {"city": "Oslo"}) + call_directive(
        dialect, "get_time", {"city": "Lima"}
    )
    if dialect == "agent":
        directives += " [sim:interleave]"
    chunks = raw_chunks(
        gw,
        {
            "model": model_for(dialect),
            "messages": [{"role": "user", "content": f"both {directives}"}],
            "tools": TOOLS,
        },
    )
    deltas = [
        call
        for chunk in chunks
        if chunk["choices"]
        for call in chunk["choices"][0]["delta"].get("tool_calls", [])
    ]
    assert all("index" in delta for delta in deltas)
    indexes = [delta["index"] for delta in deltas]
    assert indexes == sorted(indexes)
    firsts = [delta for delta in deltas if "id" in delta]
    assert [d["function"]["name"] for d in firsts] == ["get_weather", "get_time"]
    for index, expected in ((0, {"city": "Oslo"}), (1, {"city": "Lima"})):
        joined = "".join(d["function"]["arguments"] for d in deltas if d["index"] == index)
        assert json.loads(joined) == expected
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


@pytest.mark.slow
def test_sdk_stream_helper_accumulates_parallel_calls(gw: Gateway, dialect: str) -> None:
    """The SDK's stream helper rebuilds both parallel calls from our chunks."""
    directives = call_directive(dialect, "get_weather", {"city": "Oslo"}) + call_directive(
        dialect, "get_time", {"city": "Lima"}
    )
    with gw.client().chat.completions.stream(
        model=model_for(dialect),
        messages=[{"role": "user", "content": f"both {directives}"}],
        tools=TOOLS,
    ) as events:
        done_events = [e for e in events if e.type == "tool_calls.function.arguments.done"]
        final = events.get_final_completion()
    assert [(e.name, json.loads(e.arguments)) for e in done_events] == [
        ("get_weather", {"city": "Oslo"}),
        ("get_time", {"city": "Lima"}),
    ]
    assert len(final.choices[0].message.tool_calls or []) == 2


@pytest.mark.slow
@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("required", "get_weather"),
        ({"type": "function", "function": {"name": "get_time"}}, "get_time"),
    ],
)
def test_forced_tool_choice_on_agent(start_gateway: Any, choice: Any, expected: str) -> None:
    """required and a named tool_choice reach Trae as strings and force a call."""
    client = start_gateway(upstream_dialect="agent").client()
    completion = client.chat.completions.create(
        model="glm-5.2",
        messages=[{"role": "user", "content": "go"}],
        tools=TOOLS,
        tool_choice=choice,
    )
    assert completion.choices[0].finish_reason == "tool_calls"
    assert completion.choices[0].message.tool_calls[0].function.name == expected  # type: ignore[index, union-attr]


@pytest.mark.slow
def test_tool_choice_none_sends_no_tools(gw: Gateway, dialect: str, sim: SimulatedTrae) -> None:
    """tool_choice none answers with text and keeps tools (and the bridge) out of the request."""
    completion = gw.client().chat.completions.create(
        model=model_for(dialect),
        messages=[{"role": "user", "content": "hi"}],
        tools=TOOLS,
        tool_choice="none",
    )
    assert completion.choices[0].message.content == "Hello! You said: hi (turn 0)"
    body = sim.control.last_chat()["body"]
    assert "tools" not in body
    assert "<tool_call>" not in json.dumps(body)


@pytest.mark.slow
def test_agent_request_is_rewritten(start_gateway: Any, sim: SimulatedTrae) -> None:
    """Agent bodies carry parts, JSON-string parameters and function_call history."""
    client = start_gateway(upstream_dialect="agent").client()
    client.chat.completions.create(
        model="glm-5.2__dev",
        messages=[
            {"role": "developer", "content": "be brief"},
            {"role": "user", "content": "weather"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": "{}"},
                    },
                    {
                        "id": "c2",
                        "type": "function",
                        "function": {"name": "get_time", "arguments": "{}"},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        ],
        tools=TOOLS,
        max_tokens=10**6,
    )
    body = sim.control.last_chat()["body"]
    assert body["config_name"] == body["model"] == "glm-5.2"
    assert body["function"] == "chat_v3"
    assert body["stream"] is True
    assert body["messages"][0] == {
        "role": "system",
        "content": [{"type": "text", "text": "be brief"}],
    }
    assert [c["id"] for c in body["messages"][2]["tool_calls"]] == ["c1"]  # c2 had no result
    assert "function_call" in body["messages"][2]["tool_calls"][0]
    assert isinstance(body["tools"][0]["function"]["parameters"], str)
    assert body["max_tokens"] == 16000  # clamped to the catalogue's limit


@pytest.mark.slow
def test_agent_catalogue_and_served_model(start_gateway: Any) -> None:
    """The agent catalogue is filtered, exposes limits and auto; replies name the served model."""
    gateway = start_gateway(upstream_dialect="agent")
    client = gateway.client()
    models = {model.id: model for model in client.models.list()}
    assert "auto" in models
    assert "glm-5.2" in models
    assert not {"title_generation", "fast_apply", "summary"} & set(models)
    assert not any(name.startswith("custom_model_") for name in models)
    extra = models["glm-5.2"].model_extra or {}
    assert extra["max_tokens"] > 0
    assert extra["context_length"] > extra["max_tokens"]
    raw = client.chat.completions.with_raw_response.create(
        model="glm-5.2", messages=[{"role": "user", "content": "hi"}]
    )
    assert raw.headers["x-trae-served-model"] != "glm-5.2"
    assert raw.parse().choices[0].message.content == "Hello! You said: hi (turn 0)"
    auto = client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "a"}])
    assert auto.choices[0].message.content == "Hello! You said: a (turn 0)"


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["[sim:fragment-variant]", "[sim:solo-extras]"])
def test_agent_fragment_variants(start_gateway: Any, variant: str) -> None:
    """`function` instead of `function_call`, single objects and SOLO extras still parse."""
    client = start_gateway(upstream_dialect="agent").client()
    text = f"x {call_directive('agent', 'get_weather', {'city': 'Rome'})} {variant}"
    completion = client.chat.completions.create(
        model="glm-5.2", messages=[{"role": "user", "content": text}], tools=TOOLS
    )
    call = completion.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert json.loads(call.function.arguments) == {"city": "Rome"}  # type: ignore[union-attr]


@pytest.mark.slow
@pytest.mark.parametrize("directive", ["[sim:bridge-malformed]", "[sim:bridge-unterminated]"])
@pytest.mark.parametrize("stream", [False, True])
def test_malformed_bridged_call_is_text(start_gateway: Any, directive: str, stream: bool) -> None:
    """A malformed bridged call comes back as text, never as a broken tool call."""
    gateway = start_gateway()
    body = {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": f"x {directive}"}],
        "tools": TOOLS,
    }
    if stream:
        chunks = raw_chunks(gateway, body)
        deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
        assert not any("tool_calls" in d for d in deltas)
        content = "".join(d.get("content") or "" for d in deltas)
        assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    else:
        with gateway.http() as http:
            message = http.post("/v1/chat/completions", json=body).json()["choices"][0]["message"]
        assert "tool_calls" not in message
        content = message["content"]
    assert "<tool_call>" in content


@pytest.mark.slow
def test_bridge_never_leaks_partial_markers(start_gateway: Any) -> None:
    """Bridged calls split at awkward places never leave marker pieces in streamed content."""
    gateway = start_gateway()
    text = "lead " + call_directive("legacy", "get_weather", {"city": "Nice"})
    chunks = raw_chunks(
        gateway,
        {"model": "gpt-4o", "messages": [{"role": "user", "content": text}], "tools": TOOLS},
    )
    contents = [c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]]
    assert not any("<" in piece for piece in contents)
    calls = [
        d for c in chunks if c["choices"] for d in c["choices"][0]["delta"].get("tool_calls", [])
    ]
    assert calls[0]["function"]["name"] == "get_weather"


@pytest.mark.slow
def test_bridge_instruction_reaches_legacy_trae(start_gateway: Any, sim: SimulatedTrae) -> None:
    """On legacy, the tools travel as a system instruction and tool history as text."""
    client = start_gateway().client()
    client.chat.completions.create(
        model="gpt-4o",
        messages=[
            {"role": "system", "content": "You help."},
            {"role": "user", "content": "weather"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "c9",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Bern"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "c9", "content": "cold"},
        ],
        tools=TOOLS,
    )
    body = sim.control.last_chat()["body"]
    system = body["chat_history"][0]
    assert system["role"] == "system"
    assert system["content"].startswith("You help.")
    assert "get_weather" in system["content"]
    assert "<tool_call>" in body["chat_history"][2]["content"]
    assert body["user_input"].startswith('<tool_response name="get_weather" id="c9">')


def test_invalid_tools_are_400(gw: Gateway) -> None:
    """Malformed tools and a tool_choice naming an unknown tool are 400s naming the parameter."""
    with gw.http() as http:
        bad_tool = http.post(
            "/v1/chat/completions",
            json={
                "model": "x",
                "messages": [{"role": "user", "content": "a"}],
                "tools": [{"type": "function"}],
            },
        )
        bad_choice = http.post(
            "/v1/chat/completions",
            json={
                "model": "x",
                "messages": [{"role": "user", "content": "a"}],
                "tools": TOOLS,
                "tool_choice": {"type": "function", "function": {"name": "nope"}},
            },
        )
    assert bad_tool.status_code == 400
    assert bad_tool.json()["error"]["param"] == "tools[0]"
    assert bad_choice.status_code == 400
    assert bad_choice.json()["error"]["param"] == "tool_choice"


@pytest.mark.slow
def test_agent_errors_map(start_gateway: Any) -> None:
    """Agent-dialect business errors map like the legacy ones (4023 → 404)."""
    gateway = start_gateway(upstream_dialect="agent")
    with httpx.Client(
        base_url=gateway.url, headers={"x-api-key": "test-client-key-0123456789"}
    ) as http:
        response = http.post(
            "/v1/chat/completions",
            json={"model": "no-such-model", "messages": [{"role": "user", "content": "a"}]},
        )
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "model_not_found"
