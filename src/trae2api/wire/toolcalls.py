"""Pure assembly of streamed tool calls into the order OpenAI clients rely on.

The first call seen streams live; fragments of later calls are held and emitted whole, in index
order, when the turn ends (agent dialect §5: the openai SDK finalises a call as soon as a
fragment of another index arrives). Ids come from a factory passed in; no randomness here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from trae2api.wire.events import ToolFragment


@dataclass
class AssembledCall:
    index: int
    id: str
    name: str
    arguments: str

    def openai(self) -> dict[str, object]:
        """The call as it appears in a non-streamed ``message.tool_calls``."""
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


class ToolCallAssembler:
    """Collects fragments by index and decides which may reach the client now."""

    def __init__(self, new_id: Callable[[], str]) -> None:
        self._new_id = new_id
        self._calls: dict[int, AssembledCall] = {}
        self._live: int | None = None

    @property
    def saw_call(self) -> bool:
        return bool(self._calls)

    @property
    def live_index(self) -> int | None:
        """The call that streams live (the first seen), if any."""
        return self._live

    @property
    def calls(self) -> list[AssembledCall]:
        return [self._calls[index] for index in sorted(self._calls)]

    def push(self, fragments: Iterable[ToolFragment]) -> list[ToolFragment]:
        """The fragments to send now; the first of a call carries its id and name."""
        out = []
        for fragment in fragments:
            call = self._calls.get(fragment.index)
            first = call is None
            if call is None:
                call = AssembledCall(fragment.index, fragment.id or self._new_id(), "", "")
                self._calls[fragment.index] = call
            call.name = call.name or fragment.name
            call.arguments += fragment.arguments
            if self._live is None:
                self._live = fragment.index
            if fragment.index == self._live:
                out.append(
                    ToolFragment(
                        fragment.index,
                        call.id if first else "",
                        call.name if first else "",
                        fragment.arguments,
                    )
                )
        return out

    def finish(self) -> list[ToolFragment]:
        """Every held call, whole and in index order, once the turn has ended."""
        return [
            ToolFragment(call.index, call.id, call.name, call.arguments)
            for call in self.calls
            if call.index != self._live
        ]
