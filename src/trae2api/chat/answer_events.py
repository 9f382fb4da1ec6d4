"""The neutral answer stream: what every face renders, and the one fold for whole answers.

No I/O. The dialect adapter (``chat.answer.Answer``) has applied every policy already (stop
strings, the tool bridge, cumulative reconciliation, the request's reasoning mode), so a face
only renders. The service yields ``Steps``: per upstream read, one list of events per upstream
item (events in one step happened at once; OpenAI's renderer puts them in one chunk).

Order: ``Started`` before the first delta; text and reasoning deltas; tool calls one at a time
(``ToolCallStart``, ``ToolCallArgs``…, ``ToolCallEnd``; a call's start is always followed by an
args event, maybe empty); ``Keepalive``/``Queued`` during silence; then exactly one of
``Finish`` (last) or ``Failed`` (an error once something was sent).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from trae2api.errors import ApiError


@dataclass(slots=True)
class Started:
    """The answer begins (before its first delta, or at the end of an empty one)."""


@dataclass(slots=True)
class TextDelta:
    text: str


@dataclass(slots=True)
class ReasoningDelta:
    text: str


@dataclass(slots=True)
class ToolCallStart:
    index: int
    id: str
    name: str


@dataclass(slots=True)
class ToolCallArgs:
    index: int
    arguments: str  # a fragment of the call's JSON arguments


@dataclass(slots=True)
class ToolCallEnd:
    index: int


@dataclass(slots=True)
class Keepalive:
    """Upstream silence for a keepalive interval."""


@dataclass(slots=True)
class Queued:
    """Trae queued the request (protocol §6); ``position`` when it said."""

    position: int | None


@dataclass(slots=True)
class Finish:
    """The end: ``reason`` in OpenAI's words (stop, length, tool_calls, content_filter).

    ``stop_sequence`` is the stop string that ended the text, if one did; ``usage`` has
    ``prompt_tokens``, ``completion_tokens`` and ``total_tokens`` (as reported or estimated).
    """

    reason: str
    usage: dict[str, Any]
    stop_sequence: str | None = None


@dataclass(slots=True)
class Failed:
    """An error after something was sent: rendered in-band, and the stream ends."""

    error: ApiError


AnswerEvent = (
    Started
    | TextDelta
    | ReasoningDelta
    | ToolCallStart
    | ToolCallArgs
    | ToolCallEnd
    | Keepalive
    | Queued
    | Finish
    | Failed
)
Step = list[AnswerEvent]
Steps = list[Step]


@dataclass
class FoldedCall:
    index: int
    id: str
    name: str
    arguments: str = ""


@dataclass
class AnswerFold:
    """The complete answer, folded from the events (the non-streamed path of every face)."""

    content: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    calls: dict[int, FoldedCall] = field(default_factory=dict)
    finish: Finish | None = None

    def push(self, event: AnswerEvent) -> None:
        if isinstance(event, TextDelta):
            self.content.append(event.text)
        elif isinstance(event, ReasoningDelta):
            self.reasoning.append(event.text)
        elif isinstance(event, ToolCallStart):
            self.calls[event.index] = FoldedCall(event.index, event.id, event.name)
        elif isinstance(event, ToolCallArgs):
            self.calls[event.index].arguments += event.arguments
        elif isinstance(event, Finish):
            self.finish = event
        elif isinstance(event, Failed):
            raise event.error

    @property
    def text(self) -> str:
        return "".join(self.content)

    @property
    def thought(self) -> str:
        return "".join(self.reasoning)

    @property
    def tool_calls(self) -> list[FoldedCall]:
        return [self.calls[index] for index in sorted(self.calls)]
