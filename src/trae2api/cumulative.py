"""Cumulative snapshots reconciled into deltas (dialect §7): each character reaches the client once.

Some Trae streams send ``output.response`` (and ``reasoning_content``, and tool-call
``arguments``) as the whole text so far instead of the new part. Each of those texts is a
*channel*, reconciled on its own by a ``Snapshots`` object fed fragment by fragment. Pure: no I/O.

The rule (a **CHOICE**; dialect §7 only says "when a fragment starts with everything delivered
so far, deliver only its new tail"). A channel starts *undecided* and is judged once:

- The first fragment is delivered whole: it is the same text under either reading.
- A fragment that does not start with the text so far decides *delta* for good (deltas
  continue normally).
- A fragment that starts with the text so far (equal, or a strict extension) is ambiguous:
  ``"ha", "ha", "ha"`` is a delta stream saying "hahaha", ``"a", "ab"`` may be either. It is
  held back (nothing wrong has been sent) until the evidence is strong:
  - a strict extension of a text at least ``EVIDENCE_CHARS`` long (a delta stream does not
    repeat its whole answer so far as a prefix), or a repeat of such a text, or
  - the second strict extension in a row (``"a", "ab", "abc"``).
  Then the channel is *cumulative* for good and only the new tail is delivered. A fragment that
  breaks the chain first decides *delta* and the held fragments are delivered as they came.
  At the end of the stream, held exact repeats count as deltas, so a genuine delta stream is
  never collapsed (``"ha", "ha", "ha"`` stays "hahaha"), while held strict extensions count as
  snapshots (``"Hi", "Hi there"`` alone reads "Hi there": a delta stream whose next piece
  repeats the whole answer so far and adds to it is far rarer than a short snapshot stream).
  Likewise when a frame moves only the answer while the reasoning still holds fragments (or
  the other way round): that phase has ended, they go out first.
- Cumulative for good: a fragment extending the text so far delivers its tail; a shorter or
  equal snapshot (a frame that repeats the text while another channel moves) delivers nothing;
  a snapshot that rewrote text already sent cannot be taken back, so it becomes the new
  reference and only what lies beyond the length already delivered is sent.
"""

from __future__ import annotations

from collections.abc import Iterable

from trae2api.events import Delta, ToolFragment

# A repeated prefix this long is strong evidence of snapshots (two tokens of text or more).
EVIDENCE_CHARS = 8


class Snapshots:
    """One channel's reconciliation: ``push`` each upstream fragment, ``flush`` at the end."""

    def __init__(self) -> None:
        self.mode: str = "undecided"  # then "delta" or "cumulative", for good
        self._sent = ""  # everything delivered (undecided and cumulative modes)
        self._held: list[str] = []  # undecided: fragments that each start with the previous
        self._extensions = 0  # strict extensions among the held fragments

    def push(self, fragment: str) -> str:
        """What to deliver now for ``fragment``."""
        if not fragment or self.mode == "delta":
            return fragment
        if self.mode == "cumulative":
            return self._snapshot(fragment)
        if not self._sent and not self._held:
            self._sent = fragment
            return fragment
        tip = self._held[-1] if self._held else self._sent
        if not fragment.startswith(tip):
            self.mode = "delta"
            return self._release() + fragment
        strict = len(fragment) > len(tip)
        if len(tip) >= EVIDENCE_CHARS or (strict and self._extensions >= 1):
            self.mode, self._held = "cumulative", []
            return self._snapshot(fragment)
        self._held.append(fragment)
        self._extensions += strict
        return ""

    def flush(self) -> str:
        """At the end of the stream (or of its phase): what is still held.

        Held fragments that include a strict extension read as snapshots (a short answer sent
        as "Hi", "Hi there" is "Hi there"); held exact repeats read as deltas ("ha", "ha").
        """
        if self.mode == "undecided" and self._held:
            if self._extensions:
                self.mode, last, self._held = "cumulative", self._held[-1], []
                return self._snapshot(last)
            self.mode = "delta"
        return self._release()

    def _snapshot(self, fragment: str) -> str:
        if fragment.startswith(self._sent) or not self._sent.startswith(fragment):
            tail = fragment[len(self._sent) :]
            self._sent = fragment
            return tail
        return ""  # an older or equal snapshot: nothing new

    def _release(self) -> str:
        held, self._held = "".join(self._held), []
        return held


class DeltaReconciler:
    """Reconciles a whole answer: response, reasoning and each tool call's arguments apart."""

    def __init__(self) -> None:
        self._content = Snapshots()
        self._reasoning = Snapshots()
        self._arguments: dict[int, Snapshots] = {}

    def push(self, item: Delta) -> tuple[str, str, list[ToolFragment]]:
        """The new parts of ``item``: ``(content, reasoning, tool fragments)``."""
        fragments = []
        for fragment in item.tool_fragments:
            first = fragment.index not in self._arguments
            channel = self._arguments.setdefault(fragment.index, Snapshots())
            arguments = channel.push(fragment.arguments)
            # A snapshot frame repeats id and name: only a call's first fragment needs them.
            if first or arguments:
                fragments.append(
                    ToolFragment(fragment.index, fragment.id, fragment.name, arguments)
                )
        content, reasoning = self._content.push(item.content), self._reasoning.push(item.reasoning)
        # A frame that moves one text and leaves the other empty ends the other's phase (the
        # reasoning precedes the answer): what that one still holds goes out now, as deltas,
        # so that it is not sent after the text that followed it.
        if item.content and not item.reasoning:
            reasoning = self._reasoning.flush()
        elif item.reasoning and not item.content:
            content = self._content.flush() + content
        return content, reasoning, fragments

    def flush(self) -> tuple[str, str, list[ToolFragment]]:
        """What is still held when the turn ends, as deltas."""
        fragments = [
            ToolFragment(index, "", "", held)
            for index, channel in sorted(self._arguments.items())
            if (held := channel.flush())
        ]
        return self._content.flush(), self._reasoning.flush(), fragments


def reconcile(fragments: Iterable[str]) -> str:
    """The text a channel's fragments add up to (for tests and one-shot use)."""
    channel = Snapshots()
    return "".join(channel.push(fragment) for fragment in fragments) + channel.flush()
