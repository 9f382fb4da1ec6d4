"""The pure Anthropic modules: request conversion and the SSE renderer, table-driven."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from trae2api.chat.answer_events import (
    AnswerFold,
    Failed,
    Finish,
    Keepalive,
    ReasoningDelta,
    Started,
    TextDelta,
    ToolCallArgs,
    ToolCallEnd,
    ToolCallStart,
)
from trae2api.errors import ApiError, InvalidRequest, QueueTimeout, RateLimited
from trae2api.faces.anthropic_render import (
    AnthropicStreamRenderer,
    error_body,
    message_from,
    sign_thinking,
)
from trae2api.faces.anthropic_request import (
    MessagesRequest,
    prompt_tokens_estimate,
    to_chat_request,
)
from trae2api.wire.translate import ImagePart, ToolCall, Turn

KEY = b"k" * 32
TOOL = {"name": "Bash", "input_schema": {"type": "object"}}


def convert(**fields: Any) -> Any:
    body = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "q"}]}
    return to_chat_request(MessagesRequest.model_validate({**body, **fields}), "c")


@pytest.mark.parametrize(
    ("fields", "turns"),
    [
        ({"system": "be brief"}, [Turn("system", "be brief"), Turn("user", "q")]),
        (
            {
                "system": "be brief",
                "messages": [{"role": "user", "content": "q"}, {"role": "system", "content": "s"}],
            },
            [Turn("system", "be brief\n\ns"), Turn("user", "q")],
        ),
        (
            {"system": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
            [Turn("system", "a\nb"), Turn("user", "q")],
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": "q"},
                    {
                        "role": "assistant",
                        "content": [
                            {"type": "thinking", "thinking": "t", "signature": ""},
                            {"type": "text", "text": "let me"},
                            {"type": "tool_use", "id": "u1", "name": "Bash", "input": {"a": 1}},
                        ],
                    },
                    {
                        "role": "user",
                        "content": [
                            {"type": "tool_result", "tool_use_id": "u1", "content": "out"},
                            {"type": "text", "text": "next"},
                        ],
                    },
                ]
            },
            [
                Turn("user", "q"),
                Turn("assistant", "let me", (ToolCall("u1", "Bash", '{"a":1}'),)),
                Turn("tool", "out", tool_call_id="u1"),
                Turn("user", "next"),
            ],
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "tool_result",
                                "tool_use_id": "u1",
                                "is_error": True,
                                "content": [
                                    {"type": "text", "text": "boom"},
                                    {
                                        "type": "image",
                                        "source": {"type": "url", "url": "https://x/i.png"},
                                    },
                                ],
                            }
                        ],
                    }
                ]
            },
            [
                Turn("tool", "Error: boom", tool_call_id="u1"),
                Turn(
                    "user",
                    "",
                    images=(ImagePart("https://x/i.png", "messages[0].content[0].content[1]"),),
                ),
            ],
        ),
        (
            {"messages": [{"role": "user", "content": "q"}, {"role": "system", "content": "s"}]},
            [Turn("system", "s"), Turn("user", "q")],
        ),
    ],
)
def test_turns(fields: dict[str, Any], turns: list[Turn]) -> None:
    """System, history, tool use and results become the neutral turns."""
    assert convert(**fields).turns == turns


def test_base64_image_becomes_data_url() -> None:
    """A base64 image source becomes a data: URL on the user turn."""
    source = {"type": "base64", "media_type": "image/png", "data": "AAAA"}
    request = convert(messages=[{"role": "user", "content": [{"type": "image", "source": source}]}])
    assert request.turns[0].images[0].url == "data:image/png;base64,AAAA"


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        (None, "auto"),
        ({"type": "auto"}, "auto"),
        ({"type": "any"}, "required"),
        ({"type": "none"}, "none"),
        ({"type": "tool", "name": "Bash"}, "Bash"),
    ],
)
def test_tool_choice(choice: dict[str, Any] | None, expected: str) -> None:
    """Anthropic's tool_choice kinds map to the use case's."""
    request = convert(tools=[TOOL], tool_choice=choice)
    assert request.tool_choice == expected
    assert request.tools[0]["function"]["name"] == "Bash"


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"tool_choice": {"type": "tool", "name": "nope"}, "tools": [TOOL]}, "tool_choice"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        (
            {"messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}]},
            "messages[0].content[0]",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}]},
            "messages[0].content[0].source",
        ),
        ({"messages": []}, "messages"),
    ],
)
def test_invalid_requests_name_the_field(fields: dict[str, Any], param: str) -> None:
    """Bad requests raise InvalidRequest naming the parameter."""
    with pytest.raises(InvalidRequest) as caught:
        convert(**fields)
    assert caught.value.param == param


def test_thinking_modes_and_clamp_passthrough() -> None:
    """Thinking on gives raw reasoning, off drops it; max_tokens and stops pass through."""
    assert convert(thinking={"type": "adaptive"}).reasoning_mode == "reasoning_content"
    assert convert(thinking={"type": "enabled", "budget_tokens": 5}).reasoning_mode == (
        "reasoning_content"
    )
    assert convert().reasoning_mode == "drop"
    request = convert(max_tokens=64000, stop_sequences=["END"])
    assert (request.max_tokens, request.stops) == (64000, ("END",))


def test_estimate_counts_tools_and_system() -> None:
    """The input estimate grows with the system prompt and the tool definitions."""
    plain = prompt_tokens_estimate(convert())
    assert prompt_tokens_estimate(convert(system="x" * 400)) == plain + 100
    assert prompt_tokens_estimate(convert(tools=[TOOL])) > plain


def frames(data: bytes) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for frame in data.decode().split("\n\n")[:-1]:
        name, payload = frame.split("\n")
        out.append((name.removeprefix("event: "), orjson.loads(payload.removeprefix("data: "))))
    return out


def test_renderer_grammar_for_thinking_text_and_tool() -> None:
    """Thinking, text and a tool call become three blocks in order, then delta and stop."""
    renderer = AnthropicStreamRenderer(message_id="msg_1", model="m", input_estimate=7, key=KEY)
    usage = {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}
    out = renderer.render([[Started(), ReasoningDelta("hm")], [TextDelta("hi")]])
    out += renderer.render([[Keepalive()]])
    out += renderer.render(
        [
            [
                ToolCallStart(0, "call_1", "Bash"),
                ToolCallArgs(0, '{"command"'),
                ToolCallArgs(0, ":1}"),
            ],
            [ToolCallEnd(0), Finish("tool_calls", usage)],
        ]
    )
    events = frames(out)
    assert [(name, data.get("index")) for name, data in events] == [
        ("message_start", None),
        ("ping", None),
        ("content_block_start", 0),
        ("content_block_delta", 0),
        ("content_block_delta", 0),
        ("content_block_stop", 0),
        ("content_block_start", 1),
        ("content_block_delta", 1),
        ("ping", None),
        ("content_block_stop", 1),
        ("content_block_start", 2),
        ("content_block_delta", 2),
        ("content_block_delta", 2),
        ("content_block_stop", 2),
        ("message_delta", None),
        ("message_stop", None),
    ]
    assert events[0][1]["message"]["usage"] == {"input_tokens": 7, "output_tokens": 0}
    assert events[4][1]["delta"] == {
        "type": "signature_delta",
        "signature": sign_thinking(KEY, "hm"),
    }
    assert events[10][1]["content_block"] == {
        "type": "tool_use",
        "id": "call_1",
        "name": "Bash",
        "input": {},
    }
    assert events[-2][1]["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}
    assert events[-2][1]["usage"] == {"input_tokens": 9, "output_tokens": 4}


@pytest.mark.parametrize(
    ("finish", "reason"),
    [
        (Finish("stop", {}), "end_turn"),
        (Finish("length", {}), "max_tokens"),
        (Finish("stop", {}, "END"), "stop_sequence"),
        (Finish("tool_calls", {}), "tool_use"),
    ],
)
def test_message_object_stop_reasons(finish: Finish, reason: str) -> None:
    """The non-streamed message carries the mapped stop reason and the estimate when estimated."""
    fold = AnswerFold()
    for event in (TextDelta("a"), finish):
        fold.push(event)
    message = message_from(fold, message_id="msg_1", model="m", input_estimate=3, key=KEY)
    assert message["stop_reason"] == reason
    assert message["stop_sequence"] == finish.stop_sequence
    assert message["content"] == [{"type": "text", "text": "a"}]
    assert message["usage"] == {"input_tokens": 3, "output_tokens": 0}


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (InvalidRequest("x"), "invalid_request_error"),
        (ApiError("x", status=401), "authentication_error"),
        (ApiError("x", status=404), "not_found_error"),
        (RateLimited("x"), "rate_limit_error"),
        (QueueTimeout("x"), "overloaded_error"),
        (ApiError("x", status=502), "api_error"),
    ],
)
def test_error_types(error: ApiError, kind: str) -> None:
    """Our errors map to Anthropic's error types by status."""
    assert error_body(error) == {"type": "error", "error": {"type": kind, "message": "x"}}


def test_failure_mid_stream_is_an_error_event() -> None:
    """A failure after output closes the open block and ends with an error event."""
    renderer = AnthropicStreamRenderer(message_id="msg_1", model="m", input_estimate=1, key=KEY)
    events = frames(renderer.render([[TextDelta("a")], [Failed(ApiError("gone", status=502))]]))
    assert [name for name, _ in events][-2:] == ["content_block_stop", "error"]
    assert events[-1][1]["error"] == {"type": "api_error", "message": "gone"}
