"""Unit tests of the neutral answer stream: the adapter's events, the fold, OpenAI's renderer."""

from __future__ import annotations

import itertools

import orjson
import pytest

from trae2api.chat.answer import Answer
from trae2api.chat.answer_events import (
    AnswerEvent,
    AnswerFold,
    Failed,
    Finish,
    Keepalive,
    Queued,
    ReasoningDelta,
    Started,
    Steps,
    TextDelta,
    ToolCallArgs,
    ToolCallEnd,
    ToolCallStart,
)
from trae2api.errors import UpstreamUnavailable
from trae2api.faces.openai_render import OpenAIChatRenderer, completion_from
from trae2api.wire import events as wire
from trae2api.wire.events import Delta, Finished, ToolFragment
from trae2api.wire.translate import ChatRequest, ReasoningMode, Turn


def make(
    *, stops: tuple[str, ...] = (), mode: ReasoningMode = "reasoning_content", bridged: bool = False
) -> Answer:
    ids = (f"call_{n}" for n in itertools.count())
    request = ChatRequest(
        model="m", turns=[Turn("user", "hi")], stops=list(stops), reasoning_mode=mode
    )
    return Answer(
        request, bridged=bridged, queue_timeout=60, clock=lambda: 0.0, new_call_id=lambda: next(ids)
    )


def run(answer: Answer, batches: list[list[wire.Item] | None]) -> Steps:
    steps: Steps = []
    for batch in batches:
        steps += answer.steps(batch)
    return [*steps, answer.closing("hi")]


def flat(steps: Steps) -> list[AnswerEvent]:
    return [event for step in steps for event in step]


def test_text_and_reasoning_events_start_once_and_end_with_finish() -> None:
    """Started comes once before the first delta; the last event is Finish with usage."""
    events = flat(run(make(), [[Delta("", "hm")], [Delta("Hi", "")], [Finished("stop")]]))
    assert events[:3] == [Started(), ReasoningDelta("hm"), TextDelta("Hi")]
    assert isinstance(events[-1], Finish)
    assert events[-1].reason == "stop"
    assert events[-1].usage["total_tokens"] > 0
    assert events.count(Started()) == 1


def test_stop_sequence_is_named_in_finish() -> None:
    """A stop string split across deltas cuts the text and is named in Finish."""
    events = flat(run(make(stops=("END",)), [[Delta("one E", "")], [Delta("ND two", "")]]))
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "one "
    assert events[-1] == Finish("stop", events[-1].usage, "END")  # type: ignore[union-attr]


def test_tool_calls_stream_one_at_a_time_with_their_ends() -> None:
    """The live call streams, ends before held calls start; each start has args after it."""
    live = [ToolFragment(0, "a", "f", '{"x"'), ToolFragment(1, "b", "g", "{}")]
    steps = run(
        make(),
        [
            [Delta("", "", None, tuple(live))],
            [Delta("", "", None, (ToolFragment(0, "", "", ":1}"),))],
        ],
    )
    tools = [e for e in flat(steps) if isinstance(e, ToolCallStart | ToolCallArgs | ToolCallEnd)]
    assert tools == [
        ToolCallStart(0, "a", "f"),
        ToolCallArgs(0, '{"x"'),
        ToolCallArgs(0, ":1}"),
        ToolCallEnd(0),
        ToolCallStart(1, "b", "g"),
        ToolCallArgs(1, "{}"),
        ToolCallEnd(1),
    ]
    assert flat(steps)[-1].reason == "tool_calls"  # type: ignore[union-attr]


def test_bridged_call_becomes_tool_events() -> None:
    """On the legacy bridge a call block in the text becomes start, args and end events."""
    steps = run(
        make(bridged=True),
        [[Delta('Ok <tool_call>{"name": "f", "arguments": {}}</tool_call>', "")]],
    )
    events = flat(steps)
    assert TextDelta("Ok ") in events
    assert ToolCallStart(0, "call_0", "f") in events
    assert events.index(ToolCallEnd(0)) > events.index(ToolCallStart(0, "call_0", "f"))


def test_silence_and_queue_are_events() -> None:
    """A tick of silence is Keepalive; Trae's queue report is Queued with its position."""
    answer = make()
    assert answer.steps(None) == [[Keepalive()]]
    assert answer.steps([wire.Queued(4)]) == [[Queued(4)]]


@pytest.mark.parametrize(
    ("mode", "content", "reasoning"),
    [
        ("reasoning_content", "Yes.", "so"),
        ("think", "<think>\nso\n</think>\n\nYes.", ""),
        ("drop", "Yes.", ""),
    ],
)
def test_fold_equals_the_concatenated_stream(
    mode: ReasoningMode, content: str, reasoning: str
) -> None:
    """The one fold gives what the stream's deltas add up to, in every reasoning mode."""
    fold = AnswerFold()
    for event in flat(run(make(mode=mode), [[Delta("", "so")], [Delta("Yes.", "")]])):
        fold.push(event)
    assert (fold.text, fold.thought) == (content, reasoning)
    assert fold.finish is not None
    assert fold.finish.reason == "stop"


def test_fold_collects_calls_in_index_order() -> None:
    """Folded tool calls carry id, name and all their argument fragments, by index."""
    fold = AnswerFold()
    for event in [
        ToolCallStart(1, "b", "g"),
        ToolCallArgs(1, "{}"),
        ToolCallStart(0, "a", "f"),
        ToolCallArgs(0, '{"x"'),
        ToolCallArgs(0, ":1}"),
        Finish("tool_calls", {}),
    ]:
        fold.push(event)
    body = completion_from(fold, completion_id="c", created=1, model="m")
    calls = body["choices"][0]["message"]["tool_calls"]
    assert [(c["id"], c["function"]["arguments"]) for c in calls] == [("a", '{"x":1}'), ("b", "{}")]
    assert body["choices"][0]["message"]["content"] is None


def test_fold_raises_a_failure() -> None:
    """A Failed event in the fold raises its error (non-streamed requests answer with it)."""
    with pytest.raises(UpstreamUnavailable):
        AnswerFold().push(Failed(UpstreamUnavailable("gone")))


def parse(raw: bytes) -> list[object]:
    frames = [f for f in raw.decode().split("\n\n") if f]
    return [f if not f.startswith("data: {") else orjson.loads(f[6:]) for f in frames]


@pytest.mark.parametrize("include_usage", [True, False])
def test_openai_renderer_shape(include_usage: bool) -> None:
    """Role first, one step's text and reasoning in one chunk, one finish, usage gated, DONE."""
    renderer = OpenAIChatRenderer("id", 1, "m", include_usage)
    raw = renderer.render([[Keepalive()], [Started(), TextDelta("a"), ReasoningDelta("b")]])
    raw += renderer.render([[Finish("stop", {"total_tokens": 3})]])
    frames = parse(raw)
    assert frames[0] == ": keepalive"
    assert frames[1]["choices"][0]["delta"] == {"role": "assistant", "content": ""}  # type: ignore[index]
    assert frames[2]["choices"][0]["delta"] == {"content": "a", "reasoning_content": "b"}  # type: ignore[index]
    assert frames[3]["choices"][0]["finish_reason"] == "stop"  # type: ignore[index]
    assert frames[-1] == "data: [DONE]"
    assert len(frames) == (6 if include_usage else 5)


def test_openai_renderer_puts_a_steps_calls_in_one_chunk() -> None:
    """Held calls of one step share a tool_calls chunk; id and name only on each call's first."""
    renderer = OpenAIChatRenderer("id", 1, "m", include_usage=False)
    step: list[AnswerEvent] = [
        ToolCallStart(0, "a", "f"),
        ToolCallArgs(0, "{"),
        ToolCallArgs(0, "}"),
        ToolCallEnd(0),
        ToolCallStart(1, "b", "g"),
        ToolCallArgs(1, "{}"),
    ]
    (chunk,) = parse(renderer.render([step]))
    calls = chunk["choices"][0]["delta"]["tool_calls"]  # type: ignore[index]
    assert calls == [
        {"index": 0, "id": "a", "type": "function", "function": {"name": "f", "arguments": "{"}},
        {"index": 0, "function": {"arguments": "}"}},
        {"index": 1, "id": "b", "type": "function", "function": {"name": "g", "arguments": "{}"}},
    ]


def test_openai_renderer_failure_is_in_band() -> None:
    """Failed renders OpenAI's error envelope as a data line, then DONE."""
    renderer = OpenAIChatRenderer("id", 1, "m", include_usage=False)
    frames = parse(renderer.render([[Failed(UpstreamUnavailable("gone"))]]))
    assert frames[0]["error"]["message"] == "gone"  # type: ignore[index]
    assert frames[1] == "data: [DONE]"
