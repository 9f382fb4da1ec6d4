"""The Anthropic Messages API end to end with the official ``anthropic`` SDK, on both dialects."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import anthropic
import httpx
import orjson
import pytest

from conftest import CLIENT_KEY, Gateway, closed_after_test, model_for
from pngkit import png
from trae2api.testing import SimulatedTrae

pytestmark = pytest.mark.timeout(30)

WEATHER = {
    "name": "get_weather",
    "description": "Current weather for a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


def claude(gateway: Gateway, key: str = CLIENT_KEY) -> anthropic.Anthropic:
    """The official Anthropic client for ``gateway``, without its own retries."""
    made = anthropic.Anthropic(base_url=gateway.url, api_key=key, max_retries=0)
    return closed_after_test(made)  # type: ignore[no-any-return]


def call_directive(dialect: str, name: str, arguments: dict[str, Any]) -> str:
    kind = "call" if dialect == "agent" else "bridge-call"
    return f"[sim:{kind} {name} {json.dumps(arguments)}]"


def raw_events(gateway: Gateway, body: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The SSE events of a streamed ``/v1/messages`` as (event name, data) pairs."""
    headers = {"x-api-key": CLIENT_KEY, "anthropic-version": "2023-06-01"}
    with (
        httpx.Client(base_url=gateway.url, timeout=30) as http,
        http.stream("POST", "/v1/messages", json={**body, "stream": True}, headers=headers) as r,
    ):
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        text = r.read().decode()
    assert "[DONE]" not in text
    events = []
    for frame in text.split("\n\n"):
        if not frame.strip():
            continue
        name_line, data_line = frame.split("\n")
        assert name_line.startswith("event: ")
        assert data_line.startswith("data: ")
        data = orjson.loads(data_line[6:])
        assert data["type"] == name_line[7:]
        events.append((name_line[7:], data))
    return events


def test_create_plain_message(gw: Gateway, dialect: str) -> None:
    """messages.create answers with one text block, end_turn and usage."""
    message = claude(gw).messages.create(
        model=model_for(dialect),
        max_tokens=1024,
        system=[{"type": "text", "text": "be brief"}],
        messages=[{"role": "user", "content": "hi"}],
    )
    assert message.type == "message"
    assert message.role == "assistant"
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text.startswith("Hello! You said: hi (turn ")  # type: ignore[union-attr]
    assert message.stop_reason == "end_turn"
    assert message.stop_sequence is None
    assert message.usage.input_tokens > 0
    assert message.usage.output_tokens > 0
    assert message.model == model_for(dialect)
    assert message.id.startswith("msg_")


def test_stream_event_grammar(gw: Gateway, dialect: str) -> None:
    """A streamed answer follows Anthropic's event order, and the SDK folds it."""
    body = {
        "model": model_for(dialect),
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "hello there"}],
    }
    events = raw_events(gw, body)
    names = [name for name, _ in events]
    deltas = names.count("content_block_delta")
    assert deltas >= 2
    assert names == [
        "message_start",
        "ping",
        "content_block_start",
        *["content_block_delta"] * deltas,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start = events[0][1]["message"]
    assert start["content"] == []
    assert start["stop_reason"] is None
    assert start["usage"]["input_tokens"] > 0
    assert events[2][1] == {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "text", "text": ""},
    }
    text = "".join(data["delta"]["text"] for name, data in events if name == "content_block_delta")
    assert text == "Hello! You said: hello there (turn 0)"
    assert events[-2][1]["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert events[-2][1]["usage"]["output_tokens"] > 0
    with claude(gw).messages.stream(**body) as stream:  # type: ignore[arg-type]
        streamed = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert streamed == text == final.content[0].text  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn"


@pytest.mark.parametrize("stream", [False, True])
def test_tool_loop(gw: Gateway, dialect: str, sim: SimulatedTrae, stream: bool) -> None:
    """The model calls a tool, the client sends its result, the model answers with it."""
    client = claude(gw)
    ask = f"Weather in Paris? {call_directive(dialect, 'get_weather', {'city': 'Paris'})}"
    messages: list[Any] = [{"role": "user", "content": ask}]
    kwargs: dict[str, Any] = {"model": model_for(dialect), "max_tokens": 500, "tools": [WEATHER]}
    if stream:
        with client.messages.stream(messages=messages, **kwargs) as events:
            first = events.get_final_message()
    else:
        first = client.messages.create(messages=messages, **kwargs)
    assert first.stop_reason == "tool_use"
    uses = [block for block in first.content if block.type == "tool_use"]
    assert [(use.name, use.input) for use in uses] == [("get_weather", {"city": "Paris"})]
    messages += [
        {"role": "assistant", "content": [block.model_dump() for block in first.content]},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": uses[0].id, "content": "sunny, 21 C"}
            ],
        },
    ]
    second = client.messages.create(messages=messages, **kwargs)
    assert second.stop_reason == "end_turn"
    assert "get_weather → sunny, 21 C" in second.content[0].text  # type: ignore[union-attr]
    assert "sunny, 21 C" in json.dumps(sim.control.last_chat()["body"], ensure_ascii=False)


def test_tool_error_result_and_choice(start_gateway: Any, sim: SimulatedTrae) -> None:
    """An is_error tool result reaches Trae marked; tool_choice tool forces that tool."""
    client = claude(start_gateway(upstream_dialect="agent"))
    forced = client.messages.create(
        model="glm-5.2",
        max_tokens=100,
        tools=[WEATHER],
        tool_choice={"type": "tool", "name": "get_weather"},
        messages=[{"role": "user", "content": "anything"}],
    )
    assert forced.stop_reason == "tool_use"
    use = forced.content[-1]
    assert use.type == "tool_use"
    assert use.name == "get_weather"
    answer = client.messages.create(
        model="glm-5.2",
        max_tokens=100,
        tools=[WEATHER],
        messages=[
            {"role": "user", "content": "anything"},
            {"role": "assistant", "content": [use.model_dump()]},
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": use.id,
                        "is_error": True,
                        "content": [{"type": "text", "text": "city missing"}],
                    }
                ],
            },
        ],
    )
    assert "get_weather → Error: city missing" in answer.content[0].text  # type: ignore[union-attr]
    none = client.messages.create(
        model="glm-5.2",
        max_tokens=100,
        tools=[WEATHER],
        tool_choice={"type": "none"},
        messages=[{"role": "user", "content": "hi"}],
    )
    assert none.stop_reason == "end_turn"
    assert "tools" not in sim.control.last_chat()["body"]


def test_thinking_blocks_with_signature(start_gateway: Any, sim: SimulatedTrae) -> None:
    """A reasoning model's thinking streams as a signed thinking block before the text."""
    gateway = start_gateway(upstream_dialect="agent")
    body = {
        "model": "glm-5.2",
        "max_tokens": 2000,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "messages": [{"role": "user", "content": "ponder"}],
    }
    events = raw_events(gateway, body)
    kinds = [(name, data.get("delta", {}).get("type")) for name, data in events]
    sign_at = kinds.index(("content_block_delta", "signature_delta"))
    assert kinds[sign_at + 1] == ("content_block_stop", None)
    assert events[2][1]["content_block"] == {"type": "thinking", "thinking": "", "signature": ""}
    with claude(gateway).messages.stream(**body) as stream:  # type: ignore[arg-type]
        final = stream.get_final_message()
    thinking, text = final.content
    assert thinking.type == "thinking"
    assert text.type == "text"
    assert thinking.thinking == "Let me think about ponder."
    assert thinking.signature == events[sign_at][1]["delta"]["signature"]  # same text, same key
    again = claude(gateway).messages.create(
        model="glm-5.2",
        max_tokens=2000,
        messages=[
            {"role": "user", "content": "ponder"},
            {"role": "assistant", "content": [b.model_dump() for b in final.content]},
            {"role": "user", "content": "and now?"},
        ],
    )
    assert [block.type for block in again.content] == ["text"]  # thinking not asked for
    assert "Let me think" not in json.dumps(sim.control.last_chat()["body"])


def test_unsigned_thinking_history_is_accepted(start_gateway: Any) -> None:
    """Thinking blocks with an empty signature (as Claude Code echoes them) are accepted."""
    message = claude(start_gateway(upstream_dialect="agent")).messages.create(
        model="glm-5.2",
        max_tokens=100,
        thinking={"type": "adaptive"},  # type: ignore[typeddict-item]
        messages=[
            {"role": "user", "content": "a"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "hm", "signature": ""},
                    {"type": "text", "text": "b"},
                ],
            },
            {"role": "user", "content": "c"},
        ],
    )
    assert message.content[0].type == "thinking"
    assert message.content[-1].text.startswith("Hello! You said: c")  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("dialect", "model"), [("legacy", "claude-3-5-sonnet"), ("agent", "claude-sonnet-4.5")]
)
def test_base64_image_arrives(start_gateway: Any, dialect: str, model: str) -> None:
    """A base64 image block reaches Trae intact on both dialects."""
    image = png(3, 2)
    message = claude(start_gateway(upstream_dialect=dialect)).messages.create(
        model=model,
        max_tokens=100,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is this?"},
                    {
                        "type": "image",
                        "source": {
                            "type": "base64",
                            "media_type": "image/png",
                            "data": base64.b64encode(image).decode(),
                        },
                    },
                ],
            }
        ],
    )
    digest = hashlib.sha256(image).hexdigest()[:12]
    assert f"3x2 png sha256:{digest}" in message.content[0].text  # type: ignore[union-attr]


def test_count_tokens_matches_streamed_usage(gw: Gateway, dialect: str) -> None:
    """count_tokens equals the input_tokens message_start reports for the same prompt."""
    prompt: dict[str, Any] = {
        "model": model_for(dialect),
        "system": "You are terse.",
        "tools": [WEATHER],
        "messages": [{"role": "user", "content": "count these words please " * 20}],
    }
    counted = claude(gw).messages.count_tokens(**prompt)
    events = raw_events(gw, {**prompt, "max_tokens": 100})
    assert counted.input_tokens == events[0][1]["message"]["usage"]["input_tokens"]
    assert counted.input_tokens > len("count these words please " * 20) // 5


def test_errors_use_anthropic_envelope(gw: Gateway, dialect: str) -> None:
    """Validation, auth, unknown-model and upstream errors come in Anthropic's envelope."""
    model = model_for(dialect)
    user = [{"role": "user", "content": "hi"}]
    with pytest.raises(anthropic.AuthenticationError) as auth:
        claude(gw, "wrong-key").messages.create(model=model, max_tokens=10, messages=user)  # type: ignore[arg-type]
    assert auth.value.body == {
        "type": "error",
        "error": {"type": "authentication_error", "message": "Incorrect API key provided"},
    }
    with pytest.raises(anthropic.NotFoundError) as unknown:
        claude(gw).messages.create(model="no-such-model", max_tokens=10, messages=user)  # type: ignore[arg-type]
    assert unknown.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    with pytest.raises(anthropic.RateLimitError) as limited:
        claude(gw).messages.create(
            model=model, max_tokens=10, messages=[{"role": "user", "content": "[sim:error 4011]"}]
        )
    assert limited.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    with httpx.Client(base_url=gw.url, headers={"x-api-key": CLIENT_KEY}) as http:
        missing = http.post("/v1/messages", json={"model": model, "messages": user})
        broken = http.post("/v1/messages", content=b"{nope", headers={"content-type": "x"})
    assert missing.status_code == 400
    error = missing.json()
    assert error["type"] == "error"
    assert error["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in error["error"]["message"]
    assert broken.status_code == 400
    assert broken.json()["type"] == "error"


def test_overloaded_and_midstream_error(start_gateway: Any) -> None:
    """A queue timeout is 503 overloaded_error; an error mid-stream is an error event."""
    gateway = start_gateway(queue_timeout=0.3)
    with pytest.raises(anthropic.InternalServerError) as overloaded:
        claude(gateway).messages.create(
            model="gpt-4o", max_tokens=10, messages=[{"role": "user", "content": "[sim:queue 8]"}]
        )
    assert overloaded.value.status_code == 503
    assert overloaded.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]
    body = {
        "model": "gpt-4o",
        "max_tokens": 10,
        "messages": [{"role": "user", "content": "go [sim:midstream-error 5001]"}],
    }
    events = raw_events(gateway, body)
    assert events[0][0] == "message_start"
    assert events[-1][0] == "error"
    assert events[-1][1]["error"]["type"] == "api_error"
    assert "message_stop" not in [name for name, _ in events]


def test_claude_code_shaped_request(start_gateway: Any, sim: SimulatedTrae) -> None:
    """Claude Code's extra fields, beta query and headers are tolerated; max_tokens is clamped."""
    gateway = start_gateway(upstream_dialect="agent")
    body = {
        "model": "glm-5.2",
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": {}}]},
            {"role": "system", "content": "Available agent types: none"},
        ],
        "system": [{"type": "text", "text": "You are Claude Code.", "cache_control": {}}],
        "tools": [WEATHER, {"type": "web_search_20250305", "name": "web_search"}],
        "metadata": {"user_id": '{"device_id": "x"}'},
        "max_tokens": 64000,
        "thinking": {"type": "adaptive"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "output_config": {"effort": "high"},
    }
    headers = {
        "x-api-key": CLIENT_KEY,
        "anthropic-version": "2023-06-01",
        "anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14",
    }
    with httpx.Client(base_url=gateway.url, headers=headers, timeout=30) as http:
        head = http.head("/")
        answer = http.post("/v1/messages?beta=true", json=body)
    assert head.status_code == 204
    assert answer.status_code == 200, answer.text
    assert answer.json()["content"][-1]["text"].startswith("Hello! You said: hi")
    sent = sim.control.last_chat()["body"]
    assert sent["max_tokens"] == 16000  # glm-5.2's output limit
    assert [tool["function"]["name"] for tool in sent["tools"]] == ["get_weather"]


def test_routes_are_documented(start_gateway: Any) -> None:
    """/docs' OpenAPI document lists the Anthropic routes."""
    with start_gateway().http() as http:
        paths = http.get("/openapi.json").json()["paths"]
    assert "/v1/messages" in paths
    assert "/v1/messages/count_tokens" in paths


def test_ping_during_upstream_silence(start_gateway: Any) -> None:
    """Upstream silence longer than the keepalive interval sends ping events."""
    gateway = start_gateway(keepalive_interval=0.2)
    body = {
        "model": "gpt-4o",
        "max_tokens": 10,
        "messages": [{"role": "user", "content": "w [sim:wait 1]"}],
    }
    names = [name for name, _ in raw_events(gateway, body)]
    assert names[:2] == ["message_start", "ping"]
    assert names.count("ping") >= 3
    assert names[-2:] == ["message_delta", "message_stop"]


def test_bearer_auth_count_tokens_404_and_413(start_gateway: Any) -> None:
    """Bearer auth works; count_tokens checks the model; a too-large body is Anthropic's 413."""
    gateway = start_gateway(max_body_bytes=2000)
    user = [{"role": "user", "content": "hi"}]
    with gateway.http() as http:  # Authorization: Bearer
        counted = http.post("/v1/messages/count_tokens", json={"model": "gpt-4o", "messages": user})
        unknown = http.post("/v1/messages/count_tokens", json={"model": "nope", "messages": user})
        large = http.post(
            "/v1/messages",
            json={
                "model": "gpt-4o",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": "x" * 4000}],
            },
        )
    assert counted.status_code == 200
    assert counted.json() == {"input_tokens": 1}
    assert unknown.status_code == 404
    assert unknown.json()["error"]["type"] == "not_found_error"
    assert large.status_code == 413
    assert large.json()["type"] == "error"
    assert large.json()["error"]["type"] == "request_too_large"


@pytest.mark.parametrize("stream", [False, True])
def test_stop_sequences(gw: Gateway, dialect: str, stream: bool) -> None:
    """A stop sequence ends the text before it, with stop_reason stop_sequence."""
    kwargs: dict[str, Any] = {
        "model": model_for(dialect),
        "max_tokens": 100,
        "stop_sequences": ["said"],
        "messages": [{"role": "user", "content": "hi"}],
    }
    if stream:
        with claude(gw).messages.stream(**kwargs) as events:
            message = events.get_final_message()
    else:
        message = claude(gw).messages.create(**kwargs)
    assert message.content[0].text == "Hello! You "  # type: ignore[union-attr]
    assert message.stop_reason == "stop_sequence"
    assert message.stop_sequence == "said"


def test_url_image_and_tool_result_image(start_gateway: Any, sim: SimulatedTrae) -> None:
    """A URL image source is passed on; an image inside a tool result reaches Trae too."""
    client = claude(start_gateway(upstream_dialect="agent", inline_remote_images=False))
    url = "https://images.example/a.png"
    message = client.messages.create(
        model="claude-sonnet-4.5",
        max_tokens=100,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "look"},
                    {"type": "image", "source": {"type": "url", "url": url}},
                ],
            }
        ],
    )
    assert f"remote {url}" in message.content[0].text  # type: ignore[union-attr]
    image = png(2, 2)
    client.messages.create(
        model="claude-sonnet-4.5",
        max_tokens=100,
        tools=[WEATHER],
        messages=[
            {"role": "user", "content": "shot"},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "t1", "name": "get_weather", "input": {}}],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "t1",
                        "content": [
                            {"type": "text", "text": "see image"},
                            {
                                "type": "image",
                                "source": {
                                    "type": "base64",
                                    "media_type": "image/png",
                                    "data": base64.b64encode(image).decode(),
                                },
                            },
                        ],
                    }
                ],
            },
        ],
    )
    sent = sim.control.last_chat()["body"]["messages"]
    assert [m["role"] for m in sent[-3:]] == ["assistant", "tool", "user"]
    assert "see image" in json.dumps(sent[-2])
    assert base64.b64encode(image).decode() in json.dumps(sent[-1])


def test_auto_model(gw: Gateway) -> None:
    """The account's default model, auto, is accepted on both dialects."""
    message = claude(gw).messages.create(
        model="auto", max_tokens=50, messages=[{"role": "user", "content": "hi"}]
    )
    assert message.content[0].text.startswith("Hello! You said: hi")  # type: ignore[union-attr]
    assert message.model == "auto"
