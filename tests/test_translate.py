"""Table-driven tests of the pure translation (protocol §5, §6) and rendering (OpenAI spec)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from trae2api.chat.shaping import OutputShaper, StopMatcher
from trae2api.errors import InvalidRequest
from trae2api.faces.openai_render import ChunkRenderer
from trae2api.wire.events import (
    Delta,
    Failure,
    Finished,
    Queued,
    ServedModel,
    ToolFragment,
    UsageReport,
    estimate_tokens,
    interpret,
    map_finish_reason,
    usage_payload,
)
from trae2api.wire.sse import SSEEvent
from trae2api.wire.translate import (
    ImagePart,
    LegacyContext,
    ToolCall,
    Turn,
    build_legacy_body,
    session_id_for,
    turns_from_messages,
)

CTX = LegacyContext(
    trae_model="gpt-4o",
    session_id="sid-1",
    version_code=20250325,
    current_time="2026-01-01 00:00:00",
    system_type="Linux",
    workspace_path="/home/trae/workspace",
)


@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        ([("user", "hi")], [Turn("user", "hi")]),
        (
            [("developer", "be brief"), ("user", "x")],
            [Turn("system", "be brief"), Turn("user", "x")],
        ),
        (
            [("user", [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}])],
            [Turn("user", "a\nb")],
        ),
        ([("assistant", None), ("user", "go")], [Turn("assistant", ""), Turn("user", "go")]),
        (
            [("assistant", "<think>\nhmm\n</think>\n\nAnswer"), ("user", "more")],
            [Turn("assistant", "Answer"), Turn("user", "more")],
        ),
    ],
)
def test_turns_from_messages(messages: list[tuple[str, Any]], expected: list[Turn]) -> None:
    """OpenAI messages reduce to role and text, roles mapped and think blocks stripped."""
    assert turns_from_messages([{"role": r, "content": c} for r, c in messages]) == expected


@pytest.mark.parametrize(
    ("messages", "param"),
    [
        ([], "messages"),
        ([("function", "x")], "messages[0].role"),
        ([("tool", "x")], "messages[0].tool_call_id"),
        ([("user", "a"), ("user", [{"type": "audio"}])], "messages[1].content[0]"),
        (
            [("user", [{"type": "image_url", "image_url": {"url": "ftp://x"}}])],
            "messages[0].content[0].image_url.url",
        ),
        (
            [("assistant", [{"type": "image_url", "image_url": {"url": "data:x"}}])],
            "messages[0].content[0]",
        ),
    ],
)
def test_turns_from_messages_rejects(messages: list[tuple[str, Any]], param: str) -> None:
    """Unsupported messages raise InvalidRequest naming the offending parameter."""
    with pytest.raises(InvalidRequest) as caught:
        turns_from_messages([{"role": r, "content": c} for r, c in messages])
    assert caught.value.param == param
    assert caught.value.status == 400


def test_image_parts_are_collected_with_their_place() -> None:
    """Image parts of a user message are kept in order with the parameter path they came from."""
    turns = turns_from_messages(
        [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "look"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}},
                    {"type": "image_url", "image_url": "https://example.com/a.png"},
                ],
            }
        ]
    )
    assert turns[0].text == "look"
    assert turns[0].images == (
        ImagePart("data:image/png;base64,AA==", "messages[0].content[1]"),
        ImagePart("https://example.com/a.png", "messages[0].content[2]"),
    )


def test_tool_messages_keep_calls_and_ids() -> None:
    """Assistant tool calls and tool results survive normalisation with ids and arguments."""
    turns = turns_from_messages(
        [
            {"role": "user", "content": "weather?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "w", "arguments": "{}"}},
                    {
                        "id": "c2",
                        "type": "function",
                        "function": {"name": "x", "arguments": {"a": 1}},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        ]
    )
    assert turns[1].tool_calls == (ToolCall("c1", "w", "{}"), ToolCall("c2", "x", '{"a":1}'))
    assert turns[2] == Turn("tool", "sunny", tool_call_id="c1")


def test_legacy_body_single_turn() -> None:
    """A one-message conversation has empty history and no last_llm_response_info."""
    body = build_legacy_body([Turn("user", "hello")], CTX)
    variables = orjson.loads(body["variables"])
    assert body["user_input"] == "hello"
    assert body["chat_history"] == []
    assert body["current_turn"] == 0
    assert body["valid_turns"] == []
    assert "last_llm_response_info" not in body
    assert variables["input"] == variables["raw_input"] == "hello"
    assert variables["version_code"] == 20250325
    assert variables["last_turn_session"] == ""
    assert body["session_id"] == body["conversation_id"] == "sid-1"
    assert body["intent_name"] == "general_qa_intent"
    assert body["is_preset"] is True


def test_legacy_body_multi_turn() -> None:
    """History carries earlier messages; an assistant last turn fills last_llm_response_info."""
    turns = [Turn("system", "sys"), Turn("user", "q1"), Turn("assistant", "a1")]
    turns.append(Turn("user", "q2"))
    body = build_legacy_body(turns, CTX)
    assert [(h["role"], h["content"]) for h in body["chat_history"]] == [
        ("system", "sys"),
        ("user", "q1"),
        ("assistant", "a1"),
    ]
    assert all(
        h["status"] == "success" and h["session_id"] == "sid-1" for h in body["chat_history"]
    )
    assert body["current_turn"] == 3
    assert body["valid_turns"] == [0, 1, 2]
    assert body["last_llm_response_info"] == {"turn": 2, "is_error": False, "response": "a1"}
    assert orjson.loads(body["variables"])["last_turn_session"] == "sid-1"


def test_legacy_body_chinese_locale() -> None:
    """Chinese text selects the zh-cn locale for the turn and its history."""
    body = build_legacy_body(
        [Turn("user", "你好"), Turn("assistant", "嗨"), Turn("user", "再见")], CTX
    )
    assert orjson.loads(body["variables"])["locale"] == "zh-cn"
    assert body["chat_history"][0]["locale"] == "zh-cn"


def test_session_id_is_stable_per_conversation_and_client() -> None:
    """The session id depends on the first message and the client, nothing else."""
    a = session_id_for([Turn("user", "x"), Turn("assistant", "y")], "key-1")
    assert a == session_id_for([Turn("user", "x")], "key-1")
    assert a != session_id_for([Turn("user", "x")], "key-2")
    assert a != session_id_for([Turn("user", "z")], "key-1")


@pytest.mark.parametrize(
    ("event", "data", "expected"),
    [
        ("output", '{"response": "hi", "reasoning_content": ""}', Delta("hi", "")),
        ("output", '{"response": "", "reasoning_content": "hm"}', Delta("", "hm")),
        ("output", '{"response": "", "reasoning_content": ""}', None),
        ("output", '{"response": "x", "finish_reason": "max_tokens"}', Delta("x", "", "length")),
        ("done", '{"finish_reason": "stop"}', Finished("stop")),
        ("done", "{}", Finished(None)),
        ("done", "", Finished(None)),
        ("done", '{"finish_reason": "max_tokens"}', Finished("length")),
        ("done", '{"finish_reason": "weird"}', Finished("stop")),
        ("request_wait_in_queue", '{"position": 12, "message": "m"}', Queued(12)),
        ("request_wait_in_queue", '{"queue_position": 3}', Queued(3)),
        ("request_wait_in_queue", '{"message": "you are number 7 in line"}', Queued(7)),
        ("queue_begin", '{"position": 4}', Queued(4)),
        ("queue_end", "{}", None),
        (
            "token_usage",
            '{"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}',
            UsageReport(3, 4, 7, None),
        ),
        (
            "token_usage",
            '{"prompt_tokens": 3, "completion_tokens": 4, "reasoning_tokens": 2}',
            UsageReport(3, 4, 7, 2),
        ),
        (
            "token_usage",
            '{"prompt_tokens": 9, "completion_tokens": 1, "cache_read_input_tokens": 5}',
            UsageReport(9, 1, 10, None, 5),
        ),
        ("error", '{"code": 4011, "message": "slow down"}', Failure(4011, "slow down")),
        ("error", '{"code": "4008", "msg": "quota"}', Failure(4008, "quota")),
        ("metadata", '{"prompt_completion_id": 1}', None),
        ("progress_notice", '"working"', None),
        ("heartbeat", "", None),
        ("output", "not json", None),
        ("output", '"bare text"', Delta("bare text", "")),
        ("output", "[1]", None),
        ("error", '"plain failure"', Failure(0, "plain failure")),
        ("timing_cost", '{"provider_model_name": "glm-5.2-0915"}', ServedModel("glm-5.2-0915")),
        ("timing_cost", "{}", None),
        (
            "output",
            '{"response": "", "tool_calls": [{"index": 0, "id": "c1", "type": "function",'
            ' "function_call": {"name": "w", "arguments": "{\\"a"}}]}',
            Delta("", "", None, (ToolFragment(0, "c1", "w", '{"a'),)),
        ),
        (
            "output",
            '{"tool_calls": {"index": 1, "id": "", "function": {"name": "", "arguments": "1}"},'
            ' "namespace": "x", "partial_arguments": "y"}}',
            Delta("", "", None, (ToolFragment(1, "", "", "1}"),)),
        ),
        ("output", '{"response": "", "tool_calls": null}', None),
    ],
)
def test_interpret(event: str, data: str, expected: object) -> None:
    """Each upstream event kind maps to its meaning, ignorable ones to None."""
    assert interpret(SSEEvent(event=event, data=data, id=None)) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("stop", "stop"),
        ("length", "length"),
        ("max_tokens", "length"),
        ("content_filter", "content_filter"),
        ("tool_calls", "tool_calls"),
        ("end_turn", "stop"),
        (None, "stop"),
        (3, "stop"),
    ],
)
def test_map_finish_reason(value: object, expected: str) -> None:
    """Finish reasons stay OpenAI values; unknown ones become stop."""
    assert map_finish_reason(value) == expected


def test_usage_from_trae_is_passed_through() -> None:
    """Trae's own usage counts are reported as they are, reasoning in the details."""
    usage = usage_payload(UsageReport(10, 5, 15, 2, 4), "ignored", "ignored")
    assert usage == {
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "total_tokens": 15,
        "completion_tokens_details": {"reasoning_tokens": 2},
        "prompt_tokens_details": {"cached_tokens": 4},
    }


def test_usage_without_trae_is_estimated_and_marked() -> None:
    """Without token_usage the counts are estimated and flagged as estimated."""
    usage = usage_payload(None, "a" * 40, "你好")
    assert usage["estimated"] is True
    assert usage["prompt_tokens"] == 10
    assert usage["completion_tokens"] == 2
    assert usage["total_tokens"] == 12
    assert estimate_tokens("") == 0


@pytest.mark.parametrize(
    ("stops", "pieces", "expected", "stopped"),
    [
        ([], ["ab", "cd"], "abcd", False),
        (["END"], ["hello E", "ND tail"], "hello ", True),
        (["END"], ["hello E", "nd tail"], "hello End tail", False),
        (["\n\n", "STOP"], ["a\n", "\nb"], "a", True),
        (["xyz"], ["x", "y", "q"], "xyq", False),
        (["abc"], ["ab"], "ab", False),
    ],
)
def test_stop_matcher(stops: list[str], pieces: list[str], expected: str, stopped: bool) -> None:
    """Stop strings cut the text even when split across deltas; partial matches are released."""
    matcher = StopMatcher(stops)
    out = "".join(matcher.push(piece) for piece in pieces) + matcher.flush()
    assert out == expected
    assert matcher.stopped is stopped


@pytest.mark.parametrize(
    ("mode", "expected_content", "expected_reasoning"),
    [
        ("reasoning_content", "answer", "thinking"),
        ("think", "<think>\nthinking\n</think>\n\nanswer", ""),
        ("drop", "answer", ""),
    ],
)
def test_output_shaper_modes(mode: Any, expected_content: str, expected_reasoning: str) -> None:
    """Reasoning goes to reasoning_content, into think tags, or away, as the mode says."""
    shaper = OutputShaper(mode)
    pieces = [
        shaper.push("", "think"),
        shaper.push("", "ing"),
        shaper.push("ans", ""),
        shaper.push("wer", ""),
    ]
    content = "".join(c for c, _ in pieces) + shaper.flush()
    reasoning = "".join(r for _, r in pieces)
    assert content == expected_content
    assert reasoning == expected_reasoning


def test_think_mode_closes_an_unfinished_block() -> None:
    """A stream that ends while reasoning still closes the think tag."""
    shaper = OutputShaper("think")
    assert shaper.push("", "only thoughts") == ("<think>\nonly thoughts", "")
    assert shaper.flush() == "\n</think>\n\n"


def _parse(chunk: bytes) -> dict[str, Any]:
    assert chunk.startswith(b"data: ")
    assert chunk.endswith(b"\n\n")
    return orjson.loads(chunk[6:-2])  # type: ignore[no-any-return]


def test_chunk_renderer_shapes() -> None:
    """Chunks share id/created/model, carry role first and one finish reason last."""
    renderer = ChunkRenderer("chatcmpl-1", 123, "gpt-4o", include_usage=True)
    role, delta, finish = renderer.role(), renderer.delta("hi", "hm"), renderer.finish("stop")
    usage = renderer.usage({"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3})
    chunks = [_parse(c) for c in (role, delta, finish, usage)]
    assert {(c["id"], c["created"], c["model"], c["object"]) for c in chunks} == {
        ("chatcmpl-1", 123, "gpt-4o", "chat.completion.chunk")
    }
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[1]["choices"][0]["delta"] == {"content": "hi", "reasoning_content": "hm"}
    assert [c["choices"][0]["finish_reason"] for c in chunks[:3]] == [None, None, "stop"]
    assert all(c["usage"] is None for c in chunks[:3])
    assert chunks[3]["choices"] == []
    assert chunks[3]["usage"]["total_tokens"] == 3


def test_chunk_renderer_without_usage_has_no_usage_key() -> None:
    """Without include_usage the chunks carry no usage field at all."""
    renderer = ChunkRenderer("c", 1, "m", include_usage=False)
    assert "usage" not in _parse(renderer.delta("x", ""))
