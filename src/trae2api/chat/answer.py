"""The answer so far: folds upstream items into text, reasoning, tool calls, finish and usage.

Shared by the streamed and aggregated paths and by both dialects; no I/O (clock and id factory
are passed in). ``StreamWriter`` renders the same state as OpenAI SSE bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from trae2api.chat.render import ChunkRenderer, OutputShaper
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
from trae2api.wire.sse import DONE, encode_comment
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


class StreamWriter:
    """Turns item batches into SSE bytes: role first, deltas, comments, then the ending."""

    def __init__(self, renderer: ChunkRenderer, answer: Answer) -> None:
        self.renderer = renderer
        self.answer = answer
        self.sent = False
        self._role_sent = False

    def batch(self, batch: list[Item] | None) -> bytes:
        if batch is None:
            self.answer.note(None)
            self.sent = True
            return comment(None)
        out: list[bytes] = []
        for item in batch:
            if isinstance(item, Delta):
                self._role(out)
                text, reasoning, fragments = self.answer.delta(item)
                if text or reasoning:
                    out.append(self.renderer.delta(text, reasoning))
                if fragments:
                    out.append(self.renderer.tool_calls(fragments))
            else:
                self.answer.note(item)
                if isinstance(item, Queued):
                    out.append(comment(item))
            if self.answer.done:
                break
        self.sent = self.sent or bool(out)
        return b"".join(out)

    def ending(self, include_usage: bool, prompt_text: str) -> bytes:
        out: list[bytes] = []
        self._role(out)
        text, reasoning, fragments = self.answer.ending()
        if text or reasoning:
            out.append(self.renderer.delta(text, reasoning))
        if fragments:
            out.append(self.renderer.tool_calls(fragments))
        out.append(self.renderer.finish(self.answer.finish_reason))
        if include_usage:
            out.append(self.renderer.usage(self.answer.usage_payload(prompt_text)))
        out.append(DONE)
        return b"".join(out)

    def _role(self, out: list[bytes]) -> None:
        if not self._role_sent:
            out.append(self.renderer.role())
            self._role_sent = True


def comment(item: Item | None) -> bytes:
    """An SSE comment: the queue position while queued, else a keepalive."""
    if isinstance(item, Queued):
        return encode_comment(f"queued position={item.position if item.position else '?'}")
    return encode_comment("keepalive")
