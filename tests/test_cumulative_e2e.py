"""Cumulative snapshots (dialect §7) end to end: each character reaches the openai SDK once."""

from __future__ import annotations

import json
from typing import Any

import pytest

from conftest import Gateway, model_for

pytestmark = pytest.mark.timeout(60)

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def answer(gateway: Gateway, text: str, model: str, *, stream: bool) -> tuple[str, str]:
    """``(content, reasoning_content)`` of one chat, streamed or not."""
    messages: Any = [{"role": "user", "content": text}]
    with gateway.client() as client:
        if not stream:
            reply = client.chat.completions.create(model=model, messages=messages)
            message = reply.choices[0].message
            return message.content or "", getattr(message, "reasoning_content", None) or ""
        content, reasoning = [], []
        for chunk in client.chat.completions.create(model=model, messages=messages, stream=True):
            if chunk.choices:
                delta = chunk.choices[0].delta
                content.append(delta.content or "")
                reasoning.append(getattr(delta, "reasoning_content", None) or "")
        return "".join(content), "".join(reasoning)


@pytest.mark.slow
@pytest.mark.parametrize("stream", [False, True])
def test_cumulative_answer_equals_the_delta_answer(gw: Gateway, dialect: str, stream: bool) -> None:
    """Snapshots of the answer (and of the reasoning) read exactly like the delta stream."""
    model = model_for(dialect)
    expected = answer(gw, "tell me", model, stream=stream)
    got = answer(gw, "tell me [sim:cumulative]", model, stream=stream)
    assert got == expected
    assert expected[0].startswith("Hello! You said: tell me")
    if dialect == "agent":
        assert expected[1]  # a reasoning model: the reasoning path was exercised too


@pytest.mark.slow
@pytest.mark.parametrize(
    ("directive", "text"),
    [
        ("[sim:pieces ha|ha|ha]", "hahaha"),
        ("[sim:pieces ha|ha|ha] [sim:cumulative]", "hahaha"),
        ("[sim:pieces a|a|ab|b]", "aaabb"),
        ("[sim:pieces a|ab]", "ab"),  # a held strict extension reads as a snapshot
        ("[sim:pieces Hi|Hi there]", "Hi there"),
        ("[sim:pieces Hel|lo| wor|ld]", "Hello world"),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
def test_genuine_deltas_that_repeat_are_kept_and_short_snapshots_reconciled(
    start_gateway: Any, directive: str, text: str, stream: bool
) -> None:
    """Genuine repeats are never collapsed; a short snapshot stream is still reconciled."""
    gateway = start_gateway(upstream_dialect="agent")
    assert answer(gateway, f"x {directive}", "kimi-k2", stream=stream)[0] == text


@pytest.mark.slow
@pytest.mark.parametrize("stream", [False, True])
def test_cumulative_tool_arguments_arrive_once(start_gateway: Any, stream: bool) -> None:
    """Text and tool-call arguments sent as snapshots each reach the client once."""
    gateway = start_gateway(upstream_dialect="agent")
    ask = (
        "Weather? [sim:cumulative] [sim:cumulative-args] [sim:text-then-call] "
        '[sim:call get_weather {"city": "Paris"}] [sim:call get_weather {"city": "Rome"}]'
    )
    messages: Any = [{"role": "user", "content": ask}]
    with gateway.client() as client:
        if stream:
            with client.beta.chat.completions.stream(
                model="glm-5.2", messages=messages, tools=[WEATHER]
            ) as events:
                final = events.get_final_completion()
        else:
            final = client.chat.completions.create(
                model="glm-5.2", messages=messages, tools=[WEATHER]
            )
    message = final.choices[0].message
    calls = message.tool_calls or []
    assert [json.loads(call.function.arguments) for call in calls] == [
        {"city": "Paris"},
        {"city": "Rome"},
    ]
    assert [call.function.name for call in calls] == ["get_weather", "get_weather"]
    assert message.content == "Let me use a tool for that."
    assert final.choices[0].finish_reason == "tool_calls"
