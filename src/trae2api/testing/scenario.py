"""What a chat answers: the deterministic reply and the ``[sim:...]`` directives, as a ``Plan``.

Pure: turns a validated request into timed events (protocol §6); must not do I/O or sleep.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from trae2api.testing.tool_text import (
    MALFORMED_BLOCK,
    UNTERMINATED_BLOCK,
    ScriptedCall,
    awkward_pieces,
    bridge_block,
    extract_calls,
    results_answer,
    tool_responses,
    without_tool_responses,
)
from trae2api.testing.validation import ChatRequest

REASONING_MODELS = frozenset({"deepseek-R1"})
QUEUE_INTERVAL = 0.2
ERROR_MESSAGES = {
    1001: "not authenticated",
    1005: "your plan does not include this feature: entitlement insufficient",
    3003: "server is busy, please try again later",
    4001: "invalid parameter",
    4006: "the input is too long for the model's context window",
    4008: "credits exhausted: your ide_credits balance is 0",
    4011: "request rate limited, please try again later",
    4022: "input tokens exceed the model limit (about 1000000 tokens)",
    4017: "risk control: device or IP refused",
    4023: "model not found",
    4028: "too frequent",
    4050: "queue is full",
    4120: "",
    5001: "internal error",
}
_DIRECTIVE = re.compile(r"\[sim:([a-z-]+)(?:[ \t]+([^\]]*))?\]")
_INT_ARG = frozenset({"queue", "long", "error", "midstream-error", "http", "slow"})
COMMON_FLAGS = frozenset({"nodone", "nousage", "reset", "msg-variant", "done-empty", "cumulative"})
LEGACY_FLAGS = COMMON_FLAGS | {
    "compact",
    "noise",
    "bridge-malformed",
    "bridge-unterminated",
    "text-then-call",
}
LEAD_IN = "Let me use a tool for that."
TRANSIENT = "transient"
PIECES = "pieces"


@dataclass(frozen=True)
class Frame:
    """One event: sent ``delay`` seconds after the previous one; ``raw`` replaces JSON ``data``."""

    event: str
    data: Any = None
    delay: float = 0.0
    raw: str | None = None


@dataclass(frozen=True)
class Plan:
    """How to answer: an HTML error, a reset connection, or an event stream (``agent``: in the
    agent dialect's framing)."""

    frames: tuple[Frame, ...] = ()
    http_status: int | None = None
    reset: bool = False
    compact: bool = False
    agent: bool = False


@dataclass
class Directives:
    """The ``[sim:...]`` switches found in the last user text."""

    queue: int = 0
    wait: float = 0.0
    slow_ms: int = 0
    long: int | None = None
    error: int | None = None
    midstream_error: int | None = None
    finish: str | None = None
    http: int | None = None
    transient: tuple[int, int] | None = None  # (code, attempts that fail)
    pieces: tuple[str, ...] | None = None  # [sim:pieces a|b|c]: exact answer deltas
    flags: set[str] = field(default_factory=set)
    unknown: list[str] = field(default_factory=list)
    calls: list[ScriptedCall] = field(default_factory=list)


def parse_directives(
    text: str, flags: frozenset[str] = LEGACY_FLAGS, call_directive: str = "bridge-call"
) -> tuple[Directives, str]:
    """The directives in ``text`` (accepting these ``flags`` and ``[sim:<call_directive> NAME
    {json}]`` calls) and the text with them removed."""
    calls, text, bad_calls = extract_calls(text, call_directive)
    found = Directives(calls=calls, unknown=bad_calls)
    for match in _DIRECTIVE.finditer(text):
        name, arg = match.group(1), (match.group(2) or "").strip()
        try:
            _apply(found, name, arg, flags)
        except ValueError:
            found.unknown.append(match.group(0))
    cleaned = " ".join(_DIRECTIVE.sub(" ", text).split())
    return found, cleaned


def _apply(found: Directives, name: str, arg: str, flags: frozenset[str]) -> None:
    if name == TRANSIENT:
        code, times = (int(part) for part in arg.split())  # ValueError unless exactly two
        if code <= 0 or times < 0:
            raise ValueError(name)
        found.transient = (code, times)
    elif name == PIECES and arg:
        found.pieces = tuple(arg.split("|"))
    elif name in flags and not arg:
        found.flags.add(name)
    elif name in _INT_ARG:
        value = int(arg)
        if value < 0 or (name == "http" and not 200 <= value <= 599):
            raise ValueError(name)
        if name == "slow":
            found.slow_ms = value
        else:
            setattr(found, name.replace("-", "_"), value)
    elif name == "wait":
        found.wait = float(arg)
        if not found.wait >= 0:
            raise ValueError(name)
    elif name == "finish" and arg:
        found.finish = arg
    else:
        raise ValueError(name)


def error_frame(code: int, *, msg_variant: bool = False, message: str | None = None) -> Frame:
    """An ``error`` event; ``msg_variant`` uses the ``msg`` key seen in some captures."""
    text = ERROR_MESSAGES.get(code, "simulated error") if message is None else message
    return Frame("error", {"code": code, "msg" if msg_variant else "message": text})


def words(text: str) -> list[str]:
    """Split into word-ish pieces whose concatenation is ``text``."""
    return [piece for piece in re.split(r"(?<=\s)(?=\S)", text) if piece]


def word_count(text: str) -> int:
    return len(text.split())


def reply_text(request: ChatRequest, cleaned_input: str) -> str:
    """The default answer: echoes the last user text, says how much history arrived and
    describes the images ``multi_media`` carried."""
    turn = len(request.history)
    return f"Hello! You said: {cleaned_input} (turn {turn}){request.image_note}"


def plan_chat(
    request: ChatRequest,
    *,
    completion_id: int,
    known_model: bool,
    too_old: bool,
    attempt: int = 1,
) -> Plan:
    """The whole answer to a valid chat request; ``attempt`` counts the chats with this same
    last user text (from 1), for ``[sim:transient]``."""
    found, cleaned = parse_directives(without_tool_responses(request.user_input))
    if found.http is not None:
        return Plan(http_status=found.http)
    if "reset" in found.flags:
        return Plan(reset=True)
    variant = "msg-variant" in found.flags
    compact = "compact" in found.flags
    if too_old:
        return Plan((error_frame(4120, msg_variant=variant, message=""),), compact=compact)
    if not known_model:
        return Plan((error_frame(4023, msg_variant=variant),), compact=compact)
    if found.unknown:
        bad = ", ".join(found.unknown)
        error = error_frame(4001, msg_variant=variant, message=f"unknown sim directive {bad}")
        return Plan((error,), compact=compact)
    failing = transient_failure(found, attempt, {"prompt_completion_id": completion_id})
    if failing:
        return Plan(tuple(failing), compact=compact)
    frames = _stream_frames(request, found, cleaned, completion_id)
    return Plan(with_wait(frames, found.wait), compact=compact)


def transient_failure(found: Directives, attempt: int, metadata: dict[str, Any]) -> list[Frame]:
    """``[sim:transient CODE K]``: attempts 1..K are ``metadata`` then an ``error`` CODE,
    before any output (dialect §7 3003); later attempts (and no directive) give []."""
    if found.transient is None or attempt > found.transient[1]:
        return []
    code = found.transient[0]
    return [
        Frame("metadata", metadata),
        error_frame(code, msg_variant="msg-variant" in found.flags),
    ]


def with_wait(frames: list[Frame], wait: float) -> tuple[Frame, ...]:
    """The frames, the first one delayed by ``wait`` more seconds."""
    if frames and wait > 0:
        first = frames[0]
        frames[0] = Frame(first.event, first.data, first.delay + wait, first.raw)
    return tuple(frames)


def _stream_frames(
    request: ChatRequest, found: Directives, cleaned: str, completion_id: int
) -> list[Frame]:
    variant = "msg-variant" in found.flags
    if found.error is not None:
        return [error_frame(found.error, msg_variant=variant)]
    frames = queue_frames(found.queue)
    frames.append(Frame("metadata", {"prompt_completion_id": completion_id}))
    noise = "noise" in found.flags
    if noise:
        frames += [Frame("progress_notice", raw='"Thinking..."'), Frame("heartbeat", {})]
    reasoning, pieces = _texts(request, found, cleaned)
    answer = "".join(pieces)
    outputs = _output_frames(reasoning, pieces, found)
    if found.midstream_error is not None:
        kept = outputs[: max(1, len(outputs) // 2)]
        return [*frames, *kept, error_frame(found.midstream_error, msg_variant=variant)]
    if noise and len(outputs) > 1:
        outputs.insert(1, Frame("ping", {}))
    frames += outputs
    if noise:
        frames += [Frame("timing_cost", {"first_token_ms": 12}), Frame("extra_info", {"x": 1})]
    if "nousage" not in found.flags:
        frames.append(Frame("token_usage", _usage(request, reasoning, answer)))
    if "nodone" not in found.flags:
        empty = "done-empty" in found.flags
        frames.append(Frame("done", {} if empty else {"finish_reason": found.finish or "stop"}))
    return frames


def queue_frames(count: int) -> list[Frame]:
    """``queue_begin``, ``count`` ``request_wait_in_queue`` events 0.2 s apart, ``queue_end``."""
    if count <= 0:
        return []
    frames = [Frame("queue_begin", {"position": count})]
    for index, position in enumerate(range(count, 0, -1)):
        data = {
            "position": position,
            "message": f"You are in the queue, position {position}",
            "queue_id": "q1",
        }
        frames.append(Frame("request_wait_in_queue", data, QUEUE_INTERVAL if index else 0.0))
    frames.append(Frame("queue_end", {}, QUEUE_INTERVAL))
    return frames


def _texts(request: ChatRequest, found: Directives, cleaned: str) -> tuple[str, list[str]]:
    """The reasoning text and the answer as output pieces."""
    reasoning = ""
    if request.model_name in REASONING_MODELS:
        reasoning = f"Let me think about {cleaned or 'this'}."
    results = tool_responses(request.user_input)
    if results:
        return reasoning, words(results_answer(results))
    blocks = [bridge_block(call) for call in found.calls]
    if "bridge-malformed" in found.flags:
        blocks.append(MALFORMED_BLOCK)
    if "bridge-unterminated" in found.flags:
        blocks.append(UNTERMINATED_BLOCK)
    if blocks:
        return reasoning, _bridge_pieces(blocks, "text-then-call" in found.flags)
    if found.pieces is not None:
        return reasoning, list(found.pieces)
    if found.long is not None:
        return reasoning, words(" ".join(f"word{i}" for i in range(1, found.long + 1)))
    return reasoning, words(reply_text(request, cleaned))


def _bridge_pieces(blocks: list[str], lead_in: bool) -> list[str]:
    """Bridged call blocks (one per line, after an optional lead-in line) cut awkwardly."""
    pieces = words(LEAD_IN + "\n") if lead_in else []
    for index, block in enumerate(blocks):
        cut = awkward_pieces(block)
        if index:
            cut[0] = "\n" + cut[0]
        pieces += cut
    return pieces


def snapshots(pieces: list[str]) -> list[str]:
    """``[sim:cumulative]`` (dialect §7): each piece becomes the whole text so far, and the
    last snapshot is sent once more (a repeat that adds nothing)."""
    so_far = ""
    result = []
    for piece in pieces:
        so_far += piece
        result.append(so_far)
    return [*result, so_far] if result else []


def _output_frames(reasoning: str, pieces: list[str], found: Directives) -> list[Frame]:
    gap = found.slow_ms / 1000
    thoughts = words(reasoning)
    if "cumulative" in found.flags:
        thoughts, pieces = snapshots(thoughts), snapshots(pieces)
    frames = [
        Frame("output", {"response": "", "reasoning_content": piece}, gap) for piece in thoughts
    ]
    frames += [
        Frame("output", {"response": piece, "reasoning_content": ""}, gap) for piece in pieces
    ]
    return frames


def _usage(request: ChatRequest, reasoning: str, answer: str) -> dict[str, int]:
    prompt = word_count(request.user_input) + sum(word_count(h.content) for h in request.history)
    completion = word_count(answer) + word_count(reasoning)
    usage = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if reasoning:
        usage["reasoning_tokens"] = word_count(reasoning)
    return usage


def plan_script(items: list[dict[str, Any]]) -> Plan:
    """A plan that sends scripted events verbatim (``raw`` if given, else ``data`` as JSON)."""
    frames = tuple(
        Frame(
            str(item["event"]),
            item.get("data"),
            float(item.get("delay", 0.0)),
            None if item.get("raw") is None else str(item["raw"]),
        )
        for item in items
    )
    return Plan(frames)


def validate_script(items: Any) -> list[dict[str, Any]]:
    """The script items, or ValueError naming what is wrong."""
    if isinstance(items, dict):
        items = items.get("events")
    if not isinstance(items, list):
        raise ValueError("a script is a list of {event, data, delay?, raw?} (or {events: [...]})")
    for index, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("event"), str):
            raise ValueError(f"script[{index}] needs a string 'event'")
        delay = item.get("delay", 0)
        if type(delay) not in (int, float) or delay < 0:
            raise ValueError(f"script[{index}].delay must be a non-negative number")
        if item.get("raw") is not None and not isinstance(item["raw"], str):
            raise ValueError(f"script[{index}].raw must be a string")
    return items
