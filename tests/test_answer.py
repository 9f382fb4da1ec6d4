"""Unit tests of the answer state shared by both dialects and both response shapes."""

from __future__ import annotations

import itertools

import pytest

from trae2api.chat.answer import Answer
from trae2api.errors import QueueTimeout
from trae2api.wire.events import Delta, Finished, Queued, ServedModel, ToolFragment
from trae2api.wire.toolcalls import ToolCallAssembler
from trae2api.wire.translate import ChatRequest, Turn

REQUEST = ChatRequest(model="m", turns=[Turn("user", "hi")])


def make(bridged: bool = False, clock: list[float] | None = None) -> Answer:
    now = clock if clock is not None else [0.0]
    ids = (f"call_{n}" for n in itertools.count())
    return Answer(
        REQUEST,
        bridged=bridged,
        queue_timeout=5,
        clock=lambda: now[0],
        new_call_id=lambda: next(ids),
    )


@pytest.mark.parametrize(
    ("output_finish", "done", "expected"),
    [
        (None, None, "stop"),
        ("length", None, "length"),
        ("length", "stop", "stop"),
        (None, "length", "length"),
    ],
)
def test_finish_reason_precedence(
    output_finish: str | None, done: str | None, expected: str
) -> None:
    """done's stated reason wins; an empty done keeps the output's; stop is the default."""
    answer = make()
    answer.delta(Delta("x", "", output_finish))
    answer.note(Finished(done))
    assert answer.finish_reason == expected


def test_tool_calls_override_stop() -> None:
    """Any emitted call makes the finish reason tool_calls, whatever Trae said."""
    answer = make()
    answer.delta(Delta("", "", None, (ToolFragment(0, "c", "f", "{}"),)))
    answer.note(Finished("stop"))
    assert answer.finish_reason == "tool_calls"


def test_bridged_calls_become_fragments() -> None:
    """On the bridge, call blocks in the text become calls and the rest stays text."""
    answer = make(bridged=True)
    text1, _, frags1 = answer.delta(Delta('Sure. <tool_call>{"name": "f", "argu', ""))
    text2, _, frags2 = answer.delta(Delta('ments": {"a": 1}}</tool_call>', ""))
    tail, _, held = answer.ending()
    assert text1 + text2 + tail == "Sure. "
    assert frags1 == []
    assert frags2 == [ToolFragment(0, "call_0", "f", '{"a":1}')]
    assert held == []
    assert answer.finish_reason == "tool_calls"


def test_queue_timeout_is_raised_by_the_clock() -> None:
    """Queued longer than the timeout raises QueueTimeout on the next item or tick."""
    now = [0.0]
    answer = make(clock=now)
    answer.note(Queued(3))
    now[0] = 4.0
    answer.note(None)
    now[0] = 5.5
    with pytest.raises(QueueTimeout):
        answer.note(None)


def test_output_clears_the_queue_clock() -> None:
    """Output after a queue wait stops the queue clock."""
    now = [0.0]
    answer = make(clock=now)
    answer.note(Queued(1))
    answer.delta(Delta("x", ""))
    now[0] = 100.0
    answer.note(None)
    assert answer.queued_since is None


def test_served_model_is_recorded() -> None:
    """timing_cost's served model is kept for the response header."""
    answer = make()
    answer.note(ServedModel("glm-5.2-0915"))
    assert answer.served_model == "glm-5.2-0915"


def test_assembler_holds_later_calls_until_the_end() -> None:
    """Interleaved fragments: the first call streams live, the second comes whole at the end."""
    ids = iter(["gen"])
    assembler = ToolCallAssembler(lambda: next(ids))
    live = assembler.push(
        [
            ToolFragment(0, "a", "f", '{"x'),
            ToolFragment(1, "", "g", "{"),
            ToolFragment(0, "", "", '":1}'),
            ToolFragment(1, "", "", "}"),
        ]
    )
    assert live == [ToolFragment(0, "a", "f", '{"x'), ToolFragment(0, "", "", '":1}')]
    assert assembler.finish() == [ToolFragment(1, "gen", "g", "{}")]
    assert [c.openai()["function"] for c in assembler.calls] == [
        {"name": "f", "arguments": '{"x":1}'},
        {"name": "g", "arguments": "{}"},
    ]
