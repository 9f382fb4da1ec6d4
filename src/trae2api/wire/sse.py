"""Server-sent events: a pure, incremental parser for Trae's stream and encoders for ours.

No I/O here (bytes in, events out, h11-style); callers own the sockets and map errors.
"""

from __future__ import annotations

from dataclasses import dataclass

from trae2api.errors import SSEProtocolError

DEFAULT_MAX_LINE_BYTES = 1024 * 1024

DONE = b"data: [DONE]\n\n"

_CR_ORD = 0x0D
_LF_ORD = 0x0A
_COLON_ORD = 0x3A
_LF = b"\n"
_BOM = b"\xef\xbb\xbf"


# Events here, in wire.events and in chat.answer_events are values by convention, not frozen:
# a frozen dataclass's __init__ costs about 3.7 times as much, and these are made per chunk.
@dataclass(slots=True)
class SSEEvent:
    """One dispatched event; ``id`` is the ``id:`` field given inside this event, if any."""

    event: str = "message"
    data: str = ""
    id: str | None = None


class SSEParser:
    """Incremental SSE parser, lenient in the ways protocol §6 requires.

    Feed it bytes as they arrive; it returns the events completed so far. Lines are split with
    ``bytes.splitlines`` (CR, LF and CRLF only) so there is no per-byte Python loop.
    """

    __slots__ = (
        "_buf",
        "_data",
        "_event",
        "_id",
        "_max",
        "_skip_lf",
        "_started",
    )

    def __init__(self, *, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> None:
        self._max = max_line_bytes
        self._buf = bytearray()  # an incomplete line (no terminator seen yet)
        self._skip_lf = False  # the last feed ended in CR: a leading LF next is the same break
        self._started = False  # a BOM is only stripped from the very first line
        self._event: str | None = None
        self._data: list[str] = []
        self._id: str | None = None

    def feed(self, data: bytes) -> list[SSEEvent]:
        """Consume ``data``; return the events it completed (possibly none)."""
        if self._skip_lf and data:
            self._skip_lf = False
            if data[0] == _LF_ORD:
                data = data[1:]
        if not data:
            return []
        if b"\n" not in data and b"\r" not in data:
            self._buf += data
            self._check_length(len(self._buf))
            return []
        if self._buf:
            self._buf += data
            chunk = bytes(self._buf)
            self._buf.clear()
        else:
            chunk = data
        if b"\r" in chunk:
            lines = chunk.splitlines()  # CR, LF and CRLF only, for bytes
            tail = chunk[-1]
            partial = lines.pop() if tail != _CR_ORD and tail != _LF_ORD else b""
            # A CR ending this chunk may be the first half of a CRLF split across feeds.
            self._skip_lf = tail == _CR_ORD
        else:
            lines = chunk.split(_LF)  # the common case: LF only
            partial = lines.pop()  # b"" when the chunk ends with a line break
        if partial:
            self._buf += partial
            self._check_length(len(self._buf))
        return self._lines(lines)

    def close(self) -> list[SSEEvent]:
        """End of stream: flush an unterminated last line and a pending event; then reset."""
        lines = [bytes(self._buf)] if self._buf else []
        self._buf.clear()
        events = self._lines(lines)
        self._dispatch(events)
        self._skip_lf = False
        self._started = False
        return events

    def _check_length(self, n: int) -> None:
        if n > self._max:
            raise SSEProtocolError(f"an event-stream line exceeded {self._max} bytes")

    def _lines(self, lines: list[bytes]) -> list[SSEEvent]:
        events: list[SSEEvent] = []
        if lines and not self._started:
            self._started = True
            if lines[0].startswith(_BOM):
                lines[0] = lines[0][len(_BOM) :]
        limit = self._max
        for raw in lines:
            if not raw:
                self._dispatch(events)
            elif len(raw) > limit:
                self._check_length(len(raw))
            elif raw.startswith(b"data:"):  # the hot path, without a general field split
                value = raw[6:] if raw[5:6] == b" " else raw[5:]
                # Decoding whole lines only keeps a multi-byte character split across feeds.
                self._data.append(value.decode("utf-8", "replace"))
            elif raw.startswith(b"event:"):  # the agent framing's other line, same shortcut
                value = raw[7:] if raw[6:7] == b" " else raw[6:]
                self._name(value.decode("utf-8", "replace"), events)
            elif raw[0] != _COLON_ORD:  # ":" lines are comments (protocol §6: ignored)
                self._field(raw, events)
        return events

    def _field(self, raw: bytes, events: list[SSEEvent]) -> None:
        name, sep, value = raw.decode("utf-8", "replace").partition(":")
        if sep and value[:1] == " ":
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._name(value, events)
        elif name == "id":
            self._id = value
        # "retry" and unknown fields are ignored, as the SSE spec says.

    def _name(self, value: str, events: list[SSEEvent]) -> None:
        if self._data:
            # Protocol §6: a missing blank line between events; a new event: line ends the
            # pending one.
            self._dispatch(events)
        self._event = value

    def _dispatch(self, events: list[SSEEvent]) -> None:
        # An event name without data is still dispatched (e.g. a bare "event: done"), with "".
        if self._data or self._event is not None:
            events.append(SSEEvent(self._event or "message", "\n".join(self._data), self._id))
        self._event = None
        self._data = []
        self._id = None


def encode_data(payload: bytes) -> bytes:
    """One ``data:`` event for an OpenAI client; a multi-line payload becomes several lines."""
    if b"\n" in payload or b"\r" in payload:
        lines = payload.replace(b"\r\n", _LF).replace(b"\r", _LF).split(_LF)
        return b"".join(b"data: " + line + _LF for line in lines) + _LF
    return b"data: " + payload + b"\n\n"


def encode_comment(text: str) -> bytes:
    """A ``:`` comment line (keep-alive); newlines in ``text`` are removed to keep framing."""
    clean = text.replace("\r", "").replace("\n", "")
    return b": " + clean.encode("utf-8") + b"\n\n"
