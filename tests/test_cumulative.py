"""Table-driven tests of the cumulative-snapshot policy (dialect §7), fed fragment by fragment."""

from __future__ import annotations

import itertools

import pytest

from trae2api.chat.answer import Answer
from trae2api.wire.cumulative import EVIDENCE_CHARS, DeltaReconciler, Snapshots, reconcile
from trae2api.wire.events import Delta, ToolFragment
from trae2api.wire.translate import THINK_CLOSE, THINK_OPEN, ChatRequest, Turn

LONG = "Hello there"  # longer than EVIDENCE_CHARS


@pytest.mark.parametrize(
    ("fragments", "text"),
    [
        (["Hel", "lo", " world"], "Hello world"),
        (["ha", "ha", "ha"], "hahaha"),
        (["ha", "ha", "ha", "!"], "hahaha!"),
        (["-", "-", "-", "\n"], "---\n"),
        (["a", "ab"], "ab"),
        (["Hello", "Hello world"], "Hello world"),
        (["Hel", "lo", "Hello world"], "Hello world"),
        (["Yes", "Yes."], "Yes."),
        (["Hi", "Hi there"], "Hi there"),
        (["Hi", "Hi", "Hi there"], "HiHiHi there"),  # an early repeat is a delta
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
        (["a", "ab", "x"], "abx"),
        (["a", "a", "ab", "abc"], "aaababc"),  # a repeat before any extension is a delta
    ],
)
def test_channel_text(fragments: list[str], text: str) -> None:
    """Each fragment sequence adds up to the text a client must see, each character once."""
    assert reconcile(fragments) == text


@pytest.mark.parametrize(
    ("fragments", "emitted", "mode"),
    [
        (["H", "He", "Hel", "Hello"], ["H", "e", "l", "lo"], "cumulative"),
        (["ha", "ha", "ha", " ho"], ["ha", "ha", "ha", " ho"], "undecided"),
        (["To", "day"], ["To", "day"], "undecided"),
        ([LONG, LONG + "!"], [LONG, "!"], "cumulative"),
        (["Hi", "Hi there", "Hi there"], ["Hi", " there", ""], "undecided"),
    ],
)
def test_channel_emits_at_once(fragments: list[str], emitted: list[str], mode: str) -> None:
    """Each fragment is judged when it arrives: nothing is held back."""
    channel = Snapshots()
    assert [channel.push(fragment) for fragment in fragments] == emitted
    assert channel.mode == mode


def test_evidence_threshold_is_the_boundary() -> None:
    """An exact repeat of a text at the threshold is a snapshot; just under it, a delta."""
    short, enough = "x" * (EVIDENCE_CHARS - 1), "y" * EVIDENCE_CHARS
    below, at = Snapshots(), Snapshots()
    below.push(short)
    at.push(enough)
    assert below.push(short) == short
    assert at.push(enough) == ""


def test_reasoning_and_response_are_reconciled_apart() -> None:
    """A cumulative response and a delta reasoning stream do not influence each other."""
    reconciler = DeltaReconciler()
    steps = [("", "ok"), ("", "ok"), ("A", "."), ("AB", ""), ("ABC", "")]
    out = [reconciler.push(Delta(content, reasoning))[:2] for content, reasoning in steps]
    assert "".join(c for c, _ in out) == "ABC"
    assert "".join(r for _, r in out) == "okok."


def test_short_reasoning_snapshots_before_the_answer() -> None:
    """Two short reasoning snapshots, then the answer: each character reaches the client once."""
    reconciler = DeltaReconciler()
    assert reconciler.push(Delta("", "Ok"))[:2] == ("", "Ok")
    assert reconciler.push(Delta("", "Ok so"))[:2] == ("", " so")
    assert reconciler.push(Delta("Yes", ""))[:2] == ("Yes", "")


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
