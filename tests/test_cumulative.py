"""Table-driven tests of the cumulative-snapshot policy (dialect §7), fed fragment by fragment."""

from __future__ import annotations

import itertools

import pytest

from trae2api.answer import Answer
from trae2api.cumulative import EVIDENCE_CHARS, DeltaReconciler, Snapshots, reconcile
from trae2api.events import Delta, ToolFragment
from trae2api.translate import THINK_CLOSE, THINK_OPEN, ChatRequest, Turn

LONG = "Hello there"  # longer than EVIDENCE_CHARS


@pytest.mark.parametrize(
    ("fragments", "text"),
    [
        (["Hel", "lo", " world"], "Hello world"),
        (["ha", "ha", "ha"], "hahaha"),
        (["ha", "ha", "ha", "!"], "hahaha!"),
        (["-", "-", "-", "\n"], "---\n"),
        (["a", "ab"], "ab"),
        (["Hi", "Hi there"], "Hi there"),
        (["Hi", "Hi", "Hi there"], "Hi there"),
        (["ha", "ha"], "haha"),
        (["a", "ab", "abc"], "abc"),
        (["H", "He", "Hel", "Hello"], "Hello"),
        (["Hello", "Hello world", "Hello world!", "Hello world!"], "Hello world!"),
        ([LONG, LONG + " are you"], LONG + " are you"),
        ([LONG, LONG, LONG], LONG),
        (["ab", "abc", "abcd", "abc"], "abcd"),
        (["abc", "abcd", "abcde", "abXdefg"], "abcdefg"),
        (["", "Hi", "", " you"], "Hi you"),
        (["Hello", " ", "Hello"], "Hello Hello"),
        (["a", "ab", "x"], "aabx"),
        (["a", "a", "ab", "abc"], "abc"),
    ],
)
def test_channel_text(fragments: list[str], text: str) -> None:
    """Each fragment sequence adds up to the text a client must see, each character once."""
    assert reconcile(fragments) == text


@pytest.mark.parametrize(
    ("fragments", "emitted", "mode"),
    [
        (["H", "He", "Hel", "Hello"], ["H", "", "el", "lo"], "cumulative"),
        (["ha", "ha", "ha", " ho"], ["ha", "", "", "haha ho"], "delta"),
        (["To", "day"], ["To", "day"], "delta"),
        ([LONG, LONG + "!"], [LONG, "!"], "cumulative"),
    ],
)
def test_channel_emits_as_soon_as_decided(
    fragments: list[str], emitted: list[str], mode: str
) -> None:
    """Nothing is sent that a later fragment could prove wrong; the rest goes out at once."""
    channel = Snapshots()
    assert [channel.push(fragment) for fragment in fragments] == emitted
    assert channel.mode == mode


def test_evidence_threshold_is_the_boundary() -> None:
    """A strict extension of a text just under the threshold is held, at it is decisive."""
    short, enough = "x" * (EVIDENCE_CHARS - 1), "y" * EVIDENCE_CHARS
    below, at = Snapshots(), Snapshots()
    below.push(short)
    at.push(enough)
    assert below.push(short + "z") == ""
    assert at.push(enough + "z") == "z"


def test_end_of_stream_releases_held_fragments_as_deltas() -> None:
    """Without strong evidence the held fragments are deltas after all."""
    channel = Snapshots()
    assert [channel.push(f) for f in ("ha", "ha")] == ["ha", ""]
    assert channel.flush() == "ha"
    assert channel.mode == "delta"


def test_reasoning_and_response_are_reconciled_apart() -> None:
    """A cumulative response and a delta reasoning stream do not influence each other."""
    reconciler = DeltaReconciler()
    steps = [("", "ok"), ("", "ok"), ("A", "."), ("AB", ""), ("ABC", "")]
    out = [reconciler.push(Delta(content, reasoning))[:2] for content, reasoning in steps]
    flushed = reconciler.flush()
    assert "".join(c for c, _ in out) + flushed[0] == "ABC"
    assert "".join(r for _, r in out) + flushed[1] == "okok."


def test_held_reasoning_goes_out_before_the_answer() -> None:
    """Reasoning still undecided when the answer starts is released then, not after it."""
    reconciler = DeltaReconciler()
    assert reconciler.push(Delta("", "Ok"))[:2] == ("", "Ok")
    assert reconciler.push(Delta("", "Ok so"))[:2] == ("", "")
    assert reconciler.push(Delta("Yes", ""))[:2] == ("Yes", " so")
    assert reconciler.flush()[:2] == ("", "")


def test_tool_arguments_reconciled_per_call() -> None:
    """Snapshot arguments of two calls reach the client once each, names on first fragments."""
    reconciler = DeltaReconciler()
    frames = [
        [ToolFragment(0, "c0", "f", '{"a"')],
        [ToolFragment(0, "c0", "f", '{"a": 1'), ToolFragment(1, "c1", "g", "{}")],
        [ToolFragment(0, "c0", "f", '{"a": 1}'), ToolFragment(1, "c1", "g", "{}")],
    ]
    sent: list[ToolFragment] = []
    for frame in frames:
        sent += reconciler.push(Delta("", "", None, tuple(frame)))[2]
    sent += reconciler.flush()[2]
    joined = {i: "".join(f.arguments for f in sent if f.index == i) for i in (0, 1)}
    assert joined == {0: '{"a": 1}', 1: "{}{}"}  # call 1 is two equal short deltas: "{}{}"
    assert [next(f.name for f in sent if f.index == i) for i in (0, 1)] == ["f", "g"]


def test_answer_streams_cumulative_text_once_in_think_mode() -> None:
    """Through the answer (reasoning folded into <think>), snapshots become plain deltas."""
    ids = (f"call_{n}" for n in itertools.count())
    request = ChatRequest(model="m", turns=[Turn("user", "hi")], reasoning_mode="think")
    answer = Answer(
        request, bridged=False, queue_timeout=5, clock=lambda: 0.0, new_call_id=lambda: next(ids)
    )
    frames = [("", "I"), ("", "I think"), ("", "I think so"), ("Y", "I think so"), ("Yes", "")]
    frames += [("Yes.", "I think so"), ("Yes.", "")]
    texts = [answer.delta(Delta(content, reasoning))[0] for content, reasoning in frames]
    assert "".join(texts) + answer.ending()[0] == f"{THINK_OPEN}I think so{THINK_CLOSE}Yes."


def test_answer_bridge_sees_reconciled_text() -> None:
    """On the legacy bridge, a call block sent as snapshots is parsed once."""
    ids = (f"call_{n}" for n in itertools.count())
    request = ChatRequest(model="m", turns=[Turn("user", "hi")])
    answer = Answer(
        request, bridged=True, queue_timeout=5, clock=lambda: 0.0, new_call_id=lambda: next(ids)
    )
    block = '<tool_call>{"name": "f", "arguments": {"a": 1}}</tool_call>'
    cuts = [4, 9, 20, len(block)]
    calls: list[ToolFragment] = []
    for cut in cuts:
        calls += answer.delta(Delta(block[:cut], ""))[2]
    _, _, held = answer.ending()
    assert calls + held == [ToolFragment(0, "call_0", "f", '{"a":1}')]
