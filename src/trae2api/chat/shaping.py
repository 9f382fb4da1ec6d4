"""Pure shaping of the answer's text: the request's reasoning mode and its stop strings.

No I/O. The dialect adapter (``chat.answer``) applies it once, for every face.
"""

from __future__ import annotations

from collections.abc import Sequence

from trae2api.wire.translate import THINK_CLOSE, THINK_OPEN, ReasoningMode


class StopMatcher:
    """Local ``stop`` emulation: pass text through until a stop string appears, then cut.

    Text that could be the start of a stop string is held back until it is decided, so a
    stop string split across upstream deltas is still caught and never reaches the client.
    """

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = [stop for stop in stops if stop]
        self._held = ""
        self.stopped = False
        self.matched: str | None = None  # the stop string that ended the text

    def push(self, text: str) -> str:
        if self.stopped:
            return ""
        if not self._stops:
            return text
        buffer = self._held + text
        found = [(i, stop) for stop in self._stops if (i := buffer.find(stop)) >= 0]
        if found:
            cut, self.matched = min(found, key=lambda pair: pair[0])
            self.stopped, self._held = True, ""
            return buffer[:cut]
        keep = self._longest_partial(buffer)
        self._held = buffer[len(buffer) - keep :]
        return buffer[: len(buffer) - keep]

    def flush(self) -> str:
        held, self._held = self._held, ""
        return "" if self.stopped else held

    def _longest_partial(self, buffer: str) -> int:
        longest = 0
        for stop in self._stops:
            for size in range(min(len(stop) - 1, len(buffer)), longest, -1):
                if buffer.endswith(stop[:size]):
                    longest = size
                    break
        return longest


class OutputShaper:
    """Applies the reasoning mode and stop strings to upstream deltas, in order."""

    def __init__(self, mode: ReasoningMode, stops: Sequence[str] = ()) -> None:
        self.mode = mode
        self._stop = StopMatcher(stops)
        self._think_open = False

    @property
    def stopped(self) -> bool:
        return self._stop.stopped

    @property
    def stop_sequence(self) -> str | None:
        return self._stop.matched

    def push(self, content: str, reasoning: str) -> tuple[str, str]:
        """What to emit now as ``(content, reasoning_content)``."""
        if self._stop.stopped:
            return "", ""
        if self.mode == "drop":
            return self._stop.push(content), ""
        if self.mode == "reasoning_content":
            return self._stop.push(content), reasoning
        return self._fold(self._stop.push(content) if content else "", reasoning), ""

    def flush(self) -> str:
        """Content still held back at the end (a partial stop string, an open think tag)."""
        tail = self._stop.flush()
        if self._think_open:
            self._think_open = False
            return THINK_CLOSE + tail
        return tail

    def _fold(self, content: str, reasoning: str) -> str:
        # think mode: reasoning travels inside <think>…</think> at the start of the content.
        out = []
        if reasoning:
            if not self._think_open:
                out.append(THINK_OPEN)
                self._think_open = True
            out.append(reasoning)
        if content and self._think_open:
            out.append(THINK_CLOSE)
            self._think_open = False
        out.append(content)
        return "".join(out)
