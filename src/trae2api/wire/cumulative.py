"""Cumulative snapshots reconciled into deltas (dialect §7): each character reaches the client once.

Some Trae streams send ``output.response`` (and ``reasoning_content``, and tool-call
``arguments``) as the whole text so far instead of the new part. Each of those texts is a
*channel*, reconciled on its own by a ``Snapshots`` object fed fragment by fragment. Pure: no I/O.

The rule (dialect §7: "when a fragment starts with everything delivered so far, deliver only
its new tail", with a **CHOICE** for the one case §7 leaves open). Each fragment is judged
against the text delivered so far, so nothing is ever held back:

- A strict extension of the text so far is a snapshot: only its new tail is delivered. This
  holds however few characters came before and after deltas too (``"Hello", "Hello world"``
  and ``"Hel", "lo", "Hello world"`` both read "Hello world").
- An exact repeat of the text so far is the open case: ``"ha", "ha", "ha"`` is a delta stream
  saying "hahaha", while a snapshot stream repeats its last snapshot when another channel
  moves. It is a repeat of a snapshot (nothing new) only right after a strict extension or
  when the text is at least ``EVIDENCE_CHARS`` long; otherwise it is a delta. So a genuine
  delta stream that repeats itself is never collapsed.
- Anything else is a delta.
- After two strict extensions (or one of a text at least ``EVIDENCE_CHARS`` long) the channel
  is *cumulative* for good: a shorter or equal snapshot delivers nothing, and a snapshot that
  rewrote text already sent (it cannot be taken back) becomes the new reference, only what lies
  beyond the length already delivered being sent.
The price of judging at once: a delta stream whose next piece repeats its whole text so far and
adds to it (``"a", "ab"``) reads as snapshots ("ab"); real token streams do not do that.
"""

from __future__ import annotations

from collections.abc import Iterable

from trae2api.wire.events import Delta, ToolFragment

# A repeated prefix this long is strong evidence of snapshots (two tokens of text or more).
EVIDENCE_CHARS = 8


class Snapshots:
    """One channel's reconciliation: ``push`` each upstream fragment, get what to deliver."""

    def __init__(self) -> None:
        self.mode: str = "undecided"  # then "cumulative", for good
        # Everything delivered, as pieces joined only when a fragment is long enough to repeat
        # it: a delta stream's fragments are shorter, so it never pays a join per chunk.
        self._pieces: list[str] = []
        self._length = 0
        self._extensions = 0  # strict extensions seen
        self._extended_last = False  # the last fragment was a strict extension

    def push(self, fragment: str) -> str:
        """What to deliver now for ``fragment``."""
        if not fragment:
            return ""
        if self.mode == "cumulative":
            return self._snapshot(fragment)
        length = self._length
        if len(fragment) < length or not length:
            return self._delta(fragment)
        sent = self._sent
        if len(fragment) > length and fragment.startswith(sent):
            self._extensions += 1
            self._extended_last = True
            if self._extensions >= 2 or length >= EVIDENCE_CHARS:
                self.mode = "cumulative"
            self._pieces, self._length = [fragment], len(fragment)
            return fragment[length:]
        if fragment == sent and (self._extended_last or length >= EVIDENCE_CHARS):
            return ""  # a snapshot repeated while another channel moved
        return self._delta(fragment)

    @property
    def _sent(self) -> str:
        if len(self._pieces) > 1:
            self._pieces = ["".join(self._pieces)]
        return self._pieces[0] if self._pieces else ""

    def _delta(self, fragment: str) -> str:
        self._extended_last = False
        self._pieces.append(fragment)
        self._length += len(fragment)
        return fragment

    def _snapshot(self, fragment: str) -> str:
        sent = self._sent
        if fragment.startswith(sent) or not sent.startswith(fragment):
            self._pieces, self._length = [fragment], len(fragment)
            return fragment[len(sent) :]
        return ""  # an older or equal snapshot: nothing new


class DeltaReconciler:
    """Reconciles a whole answer: response, reasoning and each tool call's arguments apart."""

    def __init__(self) -> None:
        self._content = Snapshots()
        self._reasoning = Snapshots()
        self._arguments: dict[int, Snapshots] = {}

    def push(self, item: Delta) -> tuple[str, str, list[ToolFragment]]:
        """The new parts of ``item``: ``(content, reasoning, tool fragments)``."""
        fragments: list[ToolFragment] = []
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
        return content, reasoning, fragments


def reconcile(fragments: Iterable[str]) -> str:
    """The text a channel's fragments add up to (for tests and one-shot use)."""
    channel = Snapshots()
    return "".join(channel.push(fragment) for fragment in fragments)
