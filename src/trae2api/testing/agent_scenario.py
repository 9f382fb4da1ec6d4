"""What an agent-dialect chat answers (agent dialect §5): the event order, the deterministic
reply, and tool calls streamed as fragments, as a ``Plan``.

Pure: turns a validated ``AgentChat`` into timed frames; must not do I/O or sleep.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from itertools import pairwise, zip_longest
from typing import Any

from trae2api.testing.agent_validation import AgentChat
from trae2api.testing.scenario import (
    COMMON_FLAGS,
    LEAD_IN,
    Directives,
    Frame,
    Plan,
    error_frame,
    parse_directives,
    queue_frames,
    snapshots,
    transient_failure,
    with_wait,
    word_count,
    words,
)
from trae2api.testing.tool_text import ScriptedCall, results_answer

AGENT_FLAGS = COMMON_FLAGS | {
    "empty",
    "interleave",
    "fragment-variant",
    "solo-extras",
    "text-then-call",
    "cumulative-args",
}
AGENT_COMPLETION_BASE = 8_000_000_000
SOLO_NAMESPACE = "solo_default"


@dataclass(frozen=True)
class Answer:
    """What the model "says": reasoning text, answer text and tool calls (in order)."""

    reasoning: str
    text: str
    calls: tuple[ScriptedCall, ...]
    pieces: tuple[str, ...] | None = None  # exact deltas of ``text`` ([sim:pieces])


def last_user_text(chat: AgentChat) -> str:
    """The text of the last ``user`` message (directives live there), or ""."""
    return next((m.text for m in reversed(chat.messages) if m.role == "user"), "")


def plan_agent_chat(
    chat: AgentChat, *, ordinal: int, request_id: str, too_old: bool, attempt: int = 1
) -> Plan:
    """The whole answer to a valid agent chat; ``ordinal`` numbers the chat (from 1),
    ``attempt`` the chats with this same last user text (from 1, for ``[sim:transient]``)."""
    found, cleaned = parse_directives(last_user_text(chat), AGENT_FLAGS, "call")
    if found.http is not None:
        return Plan(http_status=found.http)
    if "reset" in found.flags:
        return Plan(reset=True)
    if "empty" in found.flags:
        return Plan((), agent=True)
    variant = "msg-variant" in found.flags
    problem: Frame | None = None
    if too_old:
        problem = error_frame(4120, msg_variant=variant, message="")
    elif found.unknown:
        message = f"unknown sim directive {', '.join(found.unknown)}"
        problem = error_frame(4001, msg_variant=variant, message=message)
    elif found.calls and not chat.tools:
        problem = error_frame(4001, msg_variant=variant, message="[sim:call] needs tools")
    if problem is not None:
        return Plan((problem,), agent=True)
    metadata = {"prompt_completion_id": AGENT_COMPLETION_BASE + ordinal}
    failing = transient_failure(found, attempt, metadata)
    if failing:
        return Plan(tuple(failing), agent=True)
    frames = _stream_frames(chat, found, cleaned, ordinal, request_id)
    return Plan(with_wait(frames, found.wait), agent=True)


def _stream_frames(
    chat: AgentChat, found: Directives, cleaned: str, ordinal: int, request_id: str
) -> list[Frame]:
    variant = "msg-variant" in found.flags
    if found.error is not None:
        return [error_frame(found.error, msg_variant=variant)]
    frames = [
        Frame("metadata", {"prompt_completion_id": AGENT_COMPLETION_BASE + ordinal}),
        Frame("timing_cost", {"provider_model_name": chat.model.served}),
        *queue_frames(found.queue),
        Frame("progress_notice", raw='"Thinking..."'),
    ]
    answer = decide_answer(chat, found, cleaned)
    outputs = _output_frames(answer, found, ordinal)
    if found.midstream_error is not None:
        kept = outputs[: max(1, len(outputs) // 2)]
        return [*frames, *kept, error_frame(found.midstream_error, msg_variant=variant)]
    frames += outputs
    frames.append(Frame("extra_info", {"request_id": request_id}))
    if "nousage" not in found.flags:
        frames.append(Frame("token_usage", usage(chat, answer)))
    frames.append(Frame("notify_usage"))  # its data: ``with_credits`` once the chat is charged
    if "nodone" not in found.flags:
        empty = "done-empty" in found.flags
        frames.append(Frame("done", {} if empty else {"finish_reason": found.finish or "stop"}))
    return frames


def notify_usage(ide_credits: int, work_credits: int) -> dict[str, Any]:
    """``notify_usage`` data in the shape of dialect §7."""
    remain = {"ide_credits": ide_credits, "work_credits": work_credits}
    return {"billing_mode": "credits", "cn_credits_remain_info": remain}


def charges(plan: Plan) -> bool:
    """Whether the plan ends a chat that costs credits (it holds a ``notify_usage`` event)."""
    return any(frame.event == "notify_usage" for frame in plan.frames)


def with_credits(plan: Plan, remaining: tuple[int, int]) -> Plan:
    """The plan with its ``notify_usage`` data saying ``(ide_credits, work_credits)`` remain."""
    data = notify_usage(*remaining)
    frames = tuple(
        replace(frame, data=data) if frame.event == "notify_usage" else frame
        for frame in plan.frames
    )
    return replace(plan, frames=frames)


def tool_results(chat: AgentChat) -> list[tuple[str, str]]:
    """``(tool name, content)`` of the trailing ``tool`` messages (empty unless the chat ends
    with tool results)."""
    names: dict[str, str] = {}
    for message in chat.messages:
        names.update(message.call_names)
    trailing: list[tuple[str, str]] = []
    for message in reversed(chat.messages):
        if message.role != "tool":
            break
        trailing.append((names.get(message.tool_call_id, ""), message.text))
    return trailing[::-1]


def _forced_calls(chat: AgentChat) -> tuple[ScriptedCall, ...]:
    choice = chat.tool_choice
    if not chat.tools or choice in (None, "auto"):
        return ()
    return (ScriptedCall(chat.tools[0] if choice == "required" else str(choice), {}),)


def decide_answer(chat: AgentChat, found: Directives, cleaned: str) -> Answer:
    """Tool results answered with text; else the ``[sim:call]`` calls; else a forced
    ``tool_choice``; else the ``[sim:pieces]``, ``[sim:long]`` or default text."""
    reasoning = f"Let me think about {cleaned or 'this'}." if chat.model.reasoning else ""
    if chat.effort_level is not None:  # dialect §7: make the level visible to tests
        reasoning = f"Let me think about {cleaned or 'this'} with {chat.effort_level} effort."
    results = tool_results(chat)
    if results:
        return Answer(reasoning, results_answer(results), ())
    calls = tuple(found.calls) or _forced_calls(chat)
    if calls:
        lead = LEAD_IN if "text-then-call" in found.flags else ""
        return Answer(reasoning, lead, calls)
    if found.pieces is not None:
        return Answer(reasoning, "".join(found.pieces), (), found.pieces)
    if found.long is not None:
        return Answer(reasoning, " ".join(f"word{i}" for i in range(1, found.long + 1)), ())
    turn = len(chat.messages) - 1
    return Answer(reasoning, f"Hello! You said: {cleaned} (turn {turn}){chat.image_note}", ())


def _output(response: str, reasoning: str, calls: Any, gap: float) -> Frame:
    data = {"response": response, "reasoning_content": reasoning, "tool_calls": calls}
    return Frame("output", data, gap)


def _output_frames(answer: Answer, found: Directives, ordinal: int) -> list[Frame]:
    gap = found.slow_ms / 1000
    thoughts = words(answer.reasoning)
    pieces = list(answer.pieces) if answer.pieces is not None else words(answer.text)
    if "cumulative" in found.flags:  # dialect §7: whole text so far, per field
        thoughts, pieces = snapshots(thoughts), snapshots(pieces)
    frames = [_output("", piece, None, gap) for piece in thoughts]
    frames += [_output(piece, "", None, gap) for piece in pieces]
    variant = "fragment-variant" in found.flags
    solo = "solo-extras" in found.flags
    per_call = [
        call_fragments(index, f"call_{ordinal}_{index}", call, variant=variant, solo=solo)
        for index, call in enumerate(answer.calls)
    ]
    if "cumulative-args" in found.flags:
        per_call = [cumulative_arguments(fragments) for fragments in per_call]
    if "interleave" in found.flags:
        ordered = [f for group in zip_longest(*per_call) for f in group if f is not None]
    else:
        ordered = [fragment for fragments in per_call for fragment in fragments]
    frames += [_output("", "", f if variant else [f], gap) for f in ordered]
    return frames


def split_arguments(text: str) -> list[str]:
    """At least three fragments joining back to ``text``: ``["", "{", "}"]`` for ``{}``, else
    three (four from 12 characters on) near-equal, non-empty pieces."""
    if len(text) < 3:
        return ["", *text] if len(text) == 2 else ["", "", text]
    count = 3 if len(text) < 12 else 4
    edges = [len(text) * n // count for n in range(count + 1)]
    return [text[a:b] for a, b in pairwise(edges)]


def call_fragments(
    index: int, call_id: str, call: ScriptedCall, *, variant: bool, solo: bool
) -> list[dict[str, Any]]:
    """The ``tool_calls`` items of one call: the first with ``id``, ``type`` and the name, the
    others with empty ``id``/``name``; ``variant`` uses ``function``, ``solo`` adds the
    ``namespace``/``partial_arguments`` keys (on the item and inside the function object)."""
    fragments: list[dict[str, Any]] = []
    so_far = ""
    for number, piece in enumerate(split_arguments(call.arguments_json())):
        first = number == 0
        inner: dict[str, Any] = {"name": call.name if first else "", "arguments": piece}
        fragment: dict[str, Any] = {"index": index, "id": call_id if first else ""}
        if first:
            fragment["type"] = "function"
        fragment["function" if variant else "function_call"] = inner
        if solo:
            so_far += piece
            for target in (fragment, inner):
                target["namespace"] = SOLO_NAMESPACE
                target["partial_arguments"] = so_far
        fragments.append(fragment)
    return fragments


def cumulative_arguments(fragments: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``[sim:cumulative-args]``: each fragment's ``arguments`` become the call's arguments so
    far, and the last fragment is sent once more as a continuation (empty ``id``/``name``)."""
    so_far = ""
    result = []
    for fragment in fragments:
        key = "function" if "function" in fragment else "function_call"
        so_far += fragment[key]["arguments"]
        result.append({**fragment, key: {**fragment[key], "arguments": so_far}})
    last = result[-1]
    key = "function" if "function" in last else "function_call"
    repeat = {**last, "id": "", key: {**last[key], "name": ""}}
    repeat.pop("type", None)
    return [*result, repeat]


def usage(chat: AgentChat, answer: Answer) -> dict[str, int]:
    """Deterministic ``token_usage``: words of every message (the earlier ones count as cached),
    words of the answer, reasoning and calls."""
    prompt = sum(word_count(m.text) for m in chat.messages)
    cached = sum(word_count(m.text) for m in chat.messages[:-1])
    call_words = sum(1 + word_count(c.arguments_json()) for c in answer.calls)
    reasoning = word_count(answer.reasoning)
    completion = word_count(answer.text) + reasoning + call_words
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "reasoning_tokens": reasoning,
        "cache_read_input_tokens": cached,
    }
