"""Table-driven tests of the prompt-level tool-calling bridge: instruction, rendering, parser."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from trae2api.wire.bridge import (
    CallPiece,
    Piece,
    TextPiece,
    ToolCallParser,
    render_assistant_calls,
    render_tool_results,
    tool_instruction,
)

T = TextPiece
OPEN, CLOSE = "<tool_call>", "</tool_call>"
WEATHER = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
PARIS = CallPiece("get_weather", '{"city":"Paris"}')


def merged(pieces: list[Piece]) -> list[Piece]:
    """Adjacent text pieces joined, so differently split feeds compare equal."""
    out: list[Piece] = []
    for piece in pieces:
        if isinstance(piece, TextPiece) and out and isinstance(out[-1], TextPiece):
            out[-1] = TextPiece(out[-1].text + piece.text)
        elif not (isinstance(piece, TextPiece) and not piece.text):
            out.append(piece)
    return out


def run(chunks: list[str]) -> list[Piece]:
    """Feeds the chunks then closes, returning every piece emitted."""
    parser = ToolCallParser()
    pieces = [piece for chunk in chunks for piece in parser.feed(chunk)]
    return pieces + parser.close()


def random_splits(text: str, seed: int) -> list[str]:
    """The text cut at seeded random points."""
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(text)), min(len(text) - 1, rng.randint(1, 8))))
    return [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]


CASES: list[tuple[str, str, list[Piece]]] = [
    ("plain", "hello world", [T("hello world")]),
    (
        "angle brackets",
        "a < b, <div>, <tool>, <tool_calls> and <tool_call_x>",
        [T("a < b, <div>, <tool>, <tool_calls> and <tool_call_x>")],
    ),
    ("stray close marker", "x </tool_call> y", [T("x </tool_call> y")]),
    ("partial marker at end", "see <tool_ca", [T("see <tool_ca")]),
    ("one call", WEATHER, [PARIS]),
    (
        "text before and after",
        f"Let me check.\n{WEATHER}\nDone.",
        [T("Let me check.\n"), PARIS, T("\nDone.")],
    ),
    ("two calls", f"{WEATHER}\n{WEATHER}", [PARIS, PARIS]),
    ("whitespace between calls dropped", f"{WEATHER}\n \t\n{WEATHER}", [PARIS, PARIS]),
    ("text between calls kept", f"{WEATHER} and {WEATHER}", [PARIS, T(" and "), PARIS]),
    ("leading whitespace kept", f"\n{WEATHER}", [T("\n"), PARIS]),
    ("trailing whitespace kept", f"{WEATHER}\n", [PARIS, T("\n")]),
    ("double open bracket", f"<{WEATHER}", [T("<"), PARIS]),
    (
        "compact json no spaces",
        '<tool_call>{"name":"f","arguments":{}}</tool_call>',
        [CallPiece("f", "{}")],
    ),
    (
        "string arguments",
        '<tool_call>{"name": "f", "arguments": "{\\"a\\": [1, 2]}"}</tool_call>',
        [CallPiece("f", '{"a":[1,2]}')],
    ),
    ("missing arguments", '<tool_call>{"name": "f"}</tool_call>', [CallPiece("f", "{}")]),
    ("extra keys ignored", '<tool_call>{"name":"f","id":"x"}</tool_call>', [CallPiece("f", "{}")]),
    (
        "unicode arguments",
        '<tool_call>{"name": "f", "arguments": {"q": "café ☕"}}</tool_call>',
        [CallPiece("f", '{"q":"café ☕"}')],
    ),
    (
        "close marker inside a string is escaped",
        '<tool_call>{"name": "f", "arguments": {"s": "<\\/tool_call>"}}</tool_call>',
        [CallPiece("f", '{"s":"</tool_call>"}')],
    ),
    *(
        (f"malformed: {label}", f"x {OPEN}{body}{CLOSE} y", [T(f"x {OPEN}{body}{CLOSE} y")])
        for label, body in [
            ("invalid json", '{"name": "f", '),
            ("missing name", '{"arguments": {}}'),
            ("empty name", '{"name": " ", "arguments": {}}'),
            ("name not a string", '{"name": 3}'),
            ("arguments a list", '{"name": "f", "arguments": [1]}'),
            ("arguments null", '{"name": "f", "arguments": null}'),
            ("string arguments not an object", '{"name": "f", "arguments": "[1]"}'),
            ("string arguments invalid", '{"name": "f", "arguments": "{oops"}'),
            ("trailing junk", '{"name": "f"} and more'),
            ("not an object", '["f"]'),
            ("empty", "\n"),
            ("NaN", '{"name": "f", "arguments": {"x": NaN}}'),
        ]
    ),
    (
        "whitespace before a malformed block is kept",
        f"{WEATHER}\n{OPEN}nope{CLOSE}",
        [PARIS, T(f"\n{OPEN}nope{CLOSE}")],
    ),
    (
        "unterminated block is text at close",
        'x <tool_call>{"name": "f"',
        [T('x <tool_call>{"name": "f"')],
    ),
    (
        "unterminated close marker",
        f'{OPEN}{{"name": "f"}}</tool_ca',
        [T(f'{OPEN}{{"name": "f"}}</tool_ca')],
    ),
    (
        "reopened block: abandoned start is text",
        f'{OPEN}{{"name": {WEATHER} ok',
        [T(f'{OPEN}{{"name": '), PARIS, T(" ok")],
    ),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_parser_is_split_independent(text: str, expected: list[Piece]) -> None:
    """Whole, one-char-at-a-time and random splits all yield exactly the expected pieces."""
    feeds = [[text], list(text), *(random_splits(text, seed) for seed in range(20))]
    for chunks in feeds:
        assert merged(run(chunks)) == expected, chunks


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_no_marker_fragment_leaks(text: str, expected: list[Piece]) -> None:
    """Fed one char at a time, the emitted text is exactly the expected text, no stray fragments."""
    parser = ToolCallParser()
    emitted = "".join(
        piece.text for char in text for piece in parser.feed(char) if isinstance(piece, TextPiece)
    )
    emitted += "".join(p.text for p in parser.close() if isinstance(p, TextPiece))
    assert emitted == "".join(p.text for p in expected if isinstance(p, TextPiece))
    assert parser.saw_call == any(isinstance(p, CallPiece) for p in expected)


@pytest.mark.parametrize(
    ("chunks", "released"),
    [
        (["hello"], ["hello"]),
        (["a < b"], ["a < b"]),
        (["a <", "b"], ["a ", "<b"]),
        (["<", "tool", "_x"], ["", "", "<tool_x"]),
        (["<tool_call", "s>"], ["", "<tool_calls>"]),
        (["x<tool_ca", "ll>"], ["x", ""]),
        (["x", "<", "/"], ["x", "", "</"]),
        ([WEATHER, "\n", "\n", "ok"], ["", "", "", "\n\nok"]),
    ],
)
def test_release_timing(chunks: list[str], released: list[str]) -> None:
    """Text is released in the same feed unless it may begin a marker or sits between calls."""
    parser = ToolCallParser()
    got = [
        "".join(p.text for p in parser.feed(chunk) if isinstance(p, TextPiece)) for chunk in chunks
    ]
    assert got == released


def test_call_is_emitted_when_its_block_closes() -> None:
    """A call comes out in the feed that completes its closing marker, split or not."""
    parser = ToolCallParser()
    assert parser.feed(WEATHER[:-4]) == []
    assert parser.feed(WEATHER[-4:]) == [PARIS]
    assert parser.saw_call


TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    },
    {"type": "function", "function": {"name": "list_files"}},
]


@pytest.mark.parametrize(
    ("choice", "parallel", "phrase"),
    [
        (None, True, "only when it helps"),
        ("auto", True, "only when it helps"),
        ("required", True, "must call at least one tool"),
        (
            {"type": "function", "function": {"name": "list_files"}},
            True,
            "call the tool list_files",
        ),
        ("auto", False, "at most one call per reply"),
    ],
)
def test_tool_instruction(choice: str | dict[str, Any] | None, parallel: bool, phrase: str) -> None:
    """The instruction names every tool, its schema, the block format and the choice rule."""
    text = tool_instruction(TOOLS, choice, parallel)
    for needle in (
        "get_weather",
        "Current weather for a city.",
        '{"type":"object","properties":{"city":{"type":"string"}}}',
        "list_files",
        OPEN,
        CLOSE,
        "<tool_response",
        phrase,
    ):
        assert needle in text
    assert text == tool_instruction(TOOLS, choice, parallel)


@pytest.mark.parametrize(
    ("results", "expected"),
    [
        ([], ""),
        (
            [("call_abc", "get_weather", '{"temp": 21}')],
            '<tool_response name="get_weather" id="call_abc">\n{"temp": 21}\n</tool_response>',
        ),
        (
            [("c1", "a", "one"), ("c2", 'b"<', "two")],
            '<tool_response name="a" id="c1">\none\n</tool_response>\n'
            '<tool_response name="b&quot;&lt;" id="c2">\ntwo\n</tool_response>',
        ),
    ],
)
def test_render_tool_results(results: list[tuple[str, str, str]], expected: str) -> None:
    """Results become one text with one block each, in order, attributes escaped."""
    assert render_tool_results(results) == expected


def _call(name: str, arguments: str) -> dict[str, Any]:
    return {"id": "call_1", "type": "function", "function": {"name": name, "arguments": arguments}}


@pytest.mark.parametrize(
    ("content", "calls", "text"),
    [
        (None, [_call("get_weather", '{"city": "Paris"}')], ""),
        ("Checking.", [_call("a", "{}"), _call("b", '{"x": [1, {"y": null}]}')], "Checking.\n"),
        ("", [_call("f", '{"s": "</tool_call> and ☕"}')], ""),
        (None, [_call("f", "")], ""),
    ],
)
def test_render_round_trip(content: str | None, calls: list[dict[str, Any]], text: str) -> None:
    """Rendered assistant calls parse back to the same calls, with the content as text."""
    rendered = render_assistant_calls(content, calls)
    for chunks in ([rendered], list(rendered)):
        pieces = merged(run(chunks))
        got = [(p.name, json.loads(p.arguments)) for p in pieces if isinstance(p, CallPiece)]
        want = [
            (c["function"]["name"], json.loads(c["function"]["arguments"] or "{}")) for c in calls
        ]
        assert got == want
        assert "".join(p.text for p in pieces if isinstance(p, TextPiece)) == text


def test_render_keeps_unparseable_history_arguments_visible() -> None:
    """History arguments that are not a JSON object are shown as written, not dropped."""
    rendered = render_assistant_calls(None, [_call("f", "{oops")])
    assert '"arguments": "{oops"' in rendered
