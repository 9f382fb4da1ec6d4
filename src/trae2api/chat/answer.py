"""The dialect adapter's output side: upstream items in, the neutral answer events out.

Every policy is applied here, once, for every face: cumulative reconciliation (dialect §7), the
legacy tool bridge, the request's reasoning mode and stop strings, tool-call ordering, queue
timeouts. Shared by the streamed and aggregated paths and by both dialects; no I/O (clock and
id factory are passed in).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from trae2api.chat.answer_events import (
    AnswerEvent,
    Finish,
    Keepalive,
    ReasoningDelta,
    Started,
    Step,
    Steps,
    TextDelta,
    ToolCallArgs,
    ToolCallEnd,
    ToolCallStart,
)
from trae2api.chat.answer_events import Queued as QueuedEvent
from trae2api.chat.shaping import OutputShaper
from trae2api.errors import QueueTimeout
from trae2api.wire.bridge import CallPiece, Piece, ToolCallParser
from trae2api.wire.cumulative import DeltaReconciler
from trae2api.wire.events import (
    Delta,
    Finished,
    Item,
    Queued,
    ServedModel,
    ToolFragment,
    UsageReport,
    usage_payload,
)
from trae2api.wire.toolcalls import ToolCallAssembler
from trae2api.wire.translate import ChatRequest


class Answer:
    """Everything known about one completion while its events arrive."""

    def __init__(
        self,
        request: ChatRequest,
        *,
        bridged: bool,
        queue_timeout: float,
        clock: Callable[[], float],
        new_call_id: Callable[[], str],
    ) -> None:
        self.shaper = OutputShaper(request.reasoning_mode, request.stops)
        self.tools = ToolCallAssembler(new_call_id)
        self._snapshots = DeltaReconciler()  # dialect §7: cumulative snapshots, both dialects
        self._parser = ToolCallParser() if bridged else None
        self._bridged_calls = 0
        self._clock = clock
        self._queue_timeout = queue_timeout
        self.queued_since: float | None = None
        self._queued_for: float | None = None  # seconds queued before the current wait
        self.upstream_finish: str | None = None
        self.usage: UsageReport | None = None
        self.served_model: str | None = None
        self.raw_text: list[str] = []
        self.done = False
        self.started = False

    @property
    def finish_reason(self) -> str:
        # Dialect §5: Trae says "stop" even after tool calls; OpenAI clients need tool_calls.
        return "tool_calls" if self.tools.saw_call else (self.upstream_finish or "stop")

    @property
    def queue_wait(self) -> float | None:
        """Seconds spent in Trae's queue so far (a wait in progress included); None if never."""
        if self.queued_since is None:
            return self._queued_for
        return (self._queued_for or 0.0) + self._clock() - self.queued_since

    def delta(self, item: Delta) -> tuple[str, str, list[ToolFragment]]:
        """What to emit now for ``item``: ``(content, reasoning_content, tool fragments)``."""
        if self.queued_since is not None:
            self._queued_for = (self._queued_for or 0.0) + self._clock() - self.queued_since
            self.queued_since = None
        emitted = self._emit(*self._snapshots.push(item))
        if item.finish:
            self.upstream_finish = item.finish
        if self.shaper.stopped:
            self.upstream_finish, self.done = "stop", True
        return emitted

    def _emit(
        self, content: str, reasoning: str, fragments: list[ToolFragment]
    ) -> tuple[str, str, list[ToolFragment]]:
        # Reconciled text only from here on: bridge parser, reasoning mode, stop strings.
        self.raw_text += (content, reasoning)
        if self._parser is not None and content:
            content, bridged = self._split(self._parser.feed(content))
            fragments = fragments + bridged
        text, reasoning = self.shaper.push(content, reasoning) if content or reasoning else ("", "")
        return text, reasoning, self.tools.push(fragments) if fragments else []

    def note(self, item: Item | None) -> None:
        """Book-keeping for everything but deltas; raises ``QueueTimeout`` when due."""
        if isinstance(item, Queued) and self.queued_since is None:
            self.queued_since = self._clock()
        elif isinstance(item, Finished):
            # Protocol §6: done's finish_reason wins; an empty done keeps what output said.
            self.upstream_finish = item.reason or self.upstream_finish
            self.done = True
        elif isinstance(item, UsageReport):
            self.usage = item
        elif isinstance(item, ServedModel):
            self.served_model = item.name
        if (
            self.queued_since is not None
            and self._clock() - self.queued_since > self._queue_timeout
        ):
            raise QueueTimeout(
                f"Trae kept the request queued for more than {self._queue_timeout:g} s "
                f"(QUEUE_TIMEOUT); try again later"
            )

    def ending(self) -> tuple[str, str, list[ToolFragment]]:
        """What is still held back when the turn ends: text, reasoning, then the tool calls."""
        text, reasoning, fragments = "", "", []
        if self._parser is not None:
            closing, bridged = self._split(self._parser.close())
            text += self.shaper.push(closing, "")[0] if closing else ""
            fragments += self.tools.push(bridged) if bridged else []
        return text + self.shaper.flush(), reasoning, fragments + self.tools.finish()

    def usage_payload(self, prompt_text: str) -> dict[str, Any]:
        return usage_payload(self.usage, prompt_text, "".join(self.raw_text))

    def _split(self, pieces: list[Piece]) -> tuple[str, list[ToolFragment]]:
        texts, fragments = [], []
        for piece in pieces:
            if isinstance(piece, CallPiece):
                fragments.append(ToolFragment(self._bridged_calls, "", piece.name, piece.arguments))
                self._bridged_calls += 1
            else:
                texts.append(piece.text)
        return "".join(texts), fragments

    # -- the neutral events (chat.answer_events) -----------------------------------------------

    def steps(self, batch: list[Item] | None) -> Steps:
        """The events for one upstream read (``None``: a tick of silence), one step per item."""
        if batch is None:
            self.note(None)
            return [[Keepalive()]]
        steps: Steps = []
        for item in batch:
            if isinstance(item, Delta):
                step = self._start()
                self._events(step, *self.delta(item))
                if step:
                    steps.append(step)
            else:
                self.note(item)
                if isinstance(item, Queued):
                    steps.append([QueuedEvent(item.position)])
            if self.done:
                break
        return steps

    def closing(self, prompt_text: str) -> Step:
        """The last step: what was held back, every call's end, then ``Finish``."""
        step = self._start()
        text, reasoning, fragments = self.ending()
        self._events(step, text, reasoning, [])
        open_call = self.tools.live_index  # calls stream one at a time, the live one first
        for fragment in fragments:
            if open_call is not None and fragment.index != open_call:
                step.append(ToolCallEnd(open_call))
            open_call = fragment.index
            self._events(step, "", "", [fragment])
        if open_call is not None:
            step.append(ToolCallEnd(open_call))
        usage = self.usage_payload(prompt_text)
        step.append(Finish(self.finish_reason, usage, self.shaper.stop_sequence))
        return step

    def _start(self) -> Step:
        if self.started:
            return []
        self.started = True
        return [Started()]

    @staticmethod
    def _events(
        step: list[AnswerEvent], text: str, reasoning: str, fragments: list[ToolFragment]
    ) -> None:
        if text:
            step.append(TextDelta(text))
        if reasoning:
            step.append(ReasoningDelta(reasoning))
        for fragment in fragments:
            if fragment.id:
                step.append(ToolCallStart(fragment.index, fragment.id, fragment.name))
            step.append(ToolCallArgs(fragment.index, fragment.arguments))
