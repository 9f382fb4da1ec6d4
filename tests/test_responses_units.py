"""Table-driven tests of the pure Responses modules: request reduction and the SSE renderer."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from trae2api.chat.answer_events import (
    AnswerFold,
    Failed,
    Finish,
    ReasoningDelta,
    TextDelta,
    ToolCallArgs,
    ToolCallEnd,
    ToolCallStart,
)
from trae2api.errors import ApiError, InvalidRequest
from trae2api.faces.responses_render import ResponseShell, ResponsesStreamRenderer, response_from
from trae2api.faces.responses_request import ResponsesRequest, to_chat_request

SHELL = ResponseShell("resp_abc", 1, "m", frozenset({"apply_patch"}))
USAGE = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}


@pytest.mark.parametrize(
    ("body", "roles"),
    [
        ({"input": "hi"}, ["user"]),
        ({"input": "hi", "instructions": "sys"}, ["system", "user"]),
        (
            {
                "input": [
                    {
                        "type": "message",
                        "role": "developer",
                        "content": [{"type": "input_text", "text": "d"}],
                    },
                    {"role": "user", "content": "q"},
                    {"type": "reasoning", "summary": [], "content": None},
                    {
                        "type": "message",
                        "role": "assistant",
                        "content": [{"type": "output_text", "text": "a"}],
                    },
                    {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
                    {
                        "type": "custom_tool_call",
                        "call_id": "c2",
                        "name": "apply_patch",
                        "input": "P",
                    },
                    {"type": "function_call_output", "call_id": "c1", "output": "r1"},
                    {"type": "custom_tool_call_output", "call_id": "c2", "output": "r2"},
                    {"type": "web_search_call"},
                ]
            },
            ["system", "user", "assistant", "tool", "tool"],
        ),
    ],
)
def test_items_become_turns(body: dict[str, Any], roles: list[str]) -> None:
    """Input items reduce to turns; calls merge into the assistant turn; others are skipped."""
    request = to_chat_request(ResponsesRequest(model="m", **body), "c", [])
    assert [turn.role for turn in request.turns] == roles
    calls = [call for turn in request.turns for call in turn.tool_calls]
    if calls:
        assert calls[1].arguments == '{"input":"P"}'


@pytest.mark.parametrize(
    ("tools", "choice", "names", "chosen"),
    [
        ([{"type": "web_search"}], "auto", [], "none"),
        ([{"type": "custom", "name": "apply_patch"}], None, ["apply_patch"], "auto"),
        (
            [{"type": "namespace", "name": "ns", "tools": [{"type": "function", "name": "f"}]}],
            {"type": "function", "name": "f"},
            ["f"],
            "f",
        ),
        ([{"type": "function", "name": "f", "parameters": {}}], "required", ["f"], "required"),
    ],
)
def test_tools_and_choice(tools: list[Any], choice: Any, names: list[str], chosen: str) -> None:
    """Function, custom and namespaced tools are offered; hosted ones are dropped."""
    body = ResponsesRequest(model="m", input="x", tools=tools, tool_choice=choice)
    request = to_chat_request(body, "c", [])
    assert [tool["function"]["name"] for tool in request.tools] == names
    assert request.tool_choice == chosen


@pytest.mark.parametrize(
    "body",
    [
        {"input": []},
        {"input": [{"role": "robot", "content": "x"}]},
        {"input": [{"type": "function_call_output", "output": "x"}]},
        {"input": "x", "tools": [{"type": "function", "name": "f"}], "tool_choice": "maybe"},
    ],
)
def test_invalid_requests(body: dict[str, Any]) -> None:
    """Malformed input is a 400 naming the parameter."""
    with pytest.raises(InvalidRequest):
        to_chat_request(ResponsesRequest(model="m", **body), "c", [])


def _render(events: list[Any]) -> list[dict[str, Any]]:
    renderer = ResponsesStreamRenderer(SHELL, 3)
    raw = b"".join(renderer.render([[event]]) for event in events)  # one event at a time
    frames = [frame for frame in raw.decode().split("\n\n") if frame]
    return [orjson.loads(frame.split("\ndata: ")[1]) for frame in frames]


def test_renderer_items_in_order() -> None:
    """Reasoning, text, a function call and a custom call render as four ordered items."""
    events = [
        ReasoningDelta("hm"),
        TextDelta("A"),
        ToolCallStart(0, "c1", "f"),
        ToolCallArgs(0, '{"a":'),
        ToolCallArgs(0, "1}"),
        ToolCallEnd(0),
        ToolCallStart(1, "c2", "apply_patch"),
        ToolCallArgs(1, '{"input":"P"}'),
        ToolCallEnd(1),
        Finish("tool_calls", USAGE),
    ]
    rendered = _render(events)
    assert [e["sequence_number"] for e in rendered] == list(range(len(rendered)))
    added = [e["output_index"] for e in rendered if e["type"] == "response.output_item.added"]
    assert added == [0, 1, 2, 3]
    final = rendered[-1]["response"]
    assert [item["type"] for item in final["output"]] == [
        "reasoning",
        "message",
        "function_call",
        "custom_tool_call",
    ]
    assert final["output"][2]["arguments"] == '{"a":1}'
    assert final["output"][3]["input"] == "P"
    assert final["usage"]["total_tokens"] == 5
    fold = AnswerFold()
    for event in events:
        fold.push(event)
    assert response_from(fold, SHELL, 3)["output"] == final["output"]


@pytest.mark.parametrize(
    ("last", "kind", "status"),
    [
        (Finish("stop", USAGE), "response.completed", "completed"),
        (Finish("length", USAGE), "response.incomplete", "incomplete"),
        (Failed(ApiError("boom")), "response.failed", "failed"),
    ],
)
def test_renderer_endings(last: Any, kind: str, status: str) -> None:
    """The stream ends completed, incomplete at the token limit, or failed."""
    rendered = _render([TextDelta("x"), last])
    assert rendered[-2]["type"] == "response.output_item.done"
    assert (rendered[-1]["type"], rendered[-1]["response"]["status"]) == (kind, status)
