"""Tool-call text shared by both dialects: ``[sim:call ...]``-style directives, the legacy
prompt-bridge blocks (``<tool_call>``/``<tool_response>``) and the "Tool results" answer.

Pure text functions; they must not know about frames, HTTP or state.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass
from typing import Any

_NAME = re.compile(r"[A-Za-z0-9_.:-]+")
_RESPONSE = re.compile(r"<tool_response\b([^>]*)>(.*?)</tool_response>", re.DOTALL | re.IGNORECASE)
_NAME_ATTR = re.compile(r"""\bname\s*=\s*(?:"([^"]*)"|'([^']*)')""")
_DECODER = json.JSONDecoder()
JSON_PIECE = 11
MALFORMED_BLOCK = '<tool_call>\n{"name": "get_weather", "arguments": {broken\n</tool_call>'
UNTERMINATED_BLOCK = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n'


@dataclass(frozen=True)
class ScriptedCall:
    """A tool call a directive asks for: the tool's name and its arguments object."""

    name: str
    arguments: dict[str, Any]

    def arguments_json(self) -> str:
        """The arguments as JSON text, ``json.dumps`` style (spaces after ``:`` and ``,``)."""
        return json.dumps(self.arguments, ensure_ascii=False)


def extract_calls(text: str, directive: str) -> tuple[list[ScriptedCall], str, list[str]]:
    """Find every ``[sim:<directive> NAME {json object}]`` in ``text``.

    Returns the calls in order, the text without them, and the malformed ones (verbatim up to
    where parsing failed), which the caller reports as unknown directives.
    """
    opener = f"[sim:{directive}"
    calls: list[ScriptedCall] = []
    errors: list[str] = []
    kept: list[str] = []
    position = 0
    while (start := text.find(opener, position)) >= 0:
        kept.append(text[position:start])
        call, end = _parse_call(text, start + len(opener))
        if call is None:
            errors.append(text[start:end])
        else:
            calls.append(call)
        position = end
    kept.append(text[position:])
    return calls, "".join(kept), errors


def _parse_call(text: str, index: int) -> tuple[ScriptedCall | None, int]:
    """Parse `` NAME {json}]`` at ``index``; on failure return None and where to resume."""
    fail_end = text.find("]", index) + 1 or len(text)
    if index >= len(text) or not text[index].isspace():
        return None, fail_end
    rest = len(text) - len(text[index:].lstrip())
    name_match = _NAME.match(text, rest)
    if name_match is None:
        return None, fail_end
    brace = len(text) - len(text[name_match.end() :].lstrip())
    try:
        arguments, after = _DECODER.raw_decode(text, brace)
    except json.JSONDecodeError:
        return None, fail_end
    close = len(text) - len(text[after:].lstrip())
    if not isinstance(arguments, dict) or not text.startswith("]", close):
        return None, max(fail_end, after)
    return ScriptedCall(name_match.group(0), arguments), close + 1


def bridge_block(call: ScriptedCall) -> str:
    """The prompt-bridge call block, exactly as the gateway's bridge instruction asks for it."""
    payload = json.dumps({"name": call.name, "arguments": call.arguments}, ensure_ascii=False)
    return f"<tool_call>\n{payload}\n</tool_call>"


def awkward_pieces(block: str) -> list[str]:
    """Split one block at awkward places: inside ``<tool_call>`` (``<to`` + ``ol_call>``), every
    ``JSON_PIECE`` characters of the JSON and inside ``</tool_call>`` (``</tool_`` + ``call>``);
    the pieces join back to ``block``."""
    cuts = {3}
    body_start = block.find("\n") + 1
    closing = block.rfind("</tool_call>")
    body_end = closing if closing > body_start else len(block)
    cuts |= set(range(body_start + JSON_PIECE, body_end, JSON_PIECE))
    if closing > 0:
        cuts.add(closing + len("</tool_"))
    edges = [0, *sorted(c for c in cuts if 0 < c < len(block)), len(block)]
    return [block[a:b] for a, b in itertools.pairwise(edges) if b > a]


def tool_responses(text: str) -> list[tuple[str, str]]:
    """``(name, content)`` of every ``<tool_response name="...">content</tool_response>``."""
    found: list[tuple[str, str]] = []
    for match in _RESPONSE.finditer(text):
        attr = _NAME_ATTR.search(match.group(1))
        name = (attr.group(1) if attr.group(1) is not None else attr.group(2)) if attr else ""
        found.append((name, match.group(2).strip()))
    return found


def without_tool_responses(text: str) -> str:
    """``text`` with the ``<tool_response>`` blocks cut out (directives are read from the rest)."""
    return _RESPONSE.sub(" ", text)


def results_answer(results: list[tuple[str, str]]) -> str:
    """``Tool results: get_weather → {"temp": 21}; other → ...`` quoting each result."""
    return "Tool results: " + "; ".join(f"{name} → {content}" for name, content in results)
