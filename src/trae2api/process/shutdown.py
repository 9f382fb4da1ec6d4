"""Graceful shutdown: after SIGTERM, running chats get ``SHUTDOWN_GRACE`` seconds to finish, then
each is ended in-band (an error event and ``[DONE]``) rather than cut off.

uvicorn stops accepting connections and later cancels what is left; ``Drain`` is the
application's own, earlier deadline. Nothing here runs per chunk: a chat registers one callback.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator

import structlog

log = structlog.get_logger(__name__)


SHUTDOWN_MESSAGE = (
    "The gateway is shutting down and could not finish this answer within SHUTDOWN_GRACE; "
    "send the request again"
)


class Drain:
    """The shutdown deadline shared by every running chat."""

    def __init__(self, grace: float) -> None:
        self.grace = grace
        self.draining = False
        self.expired = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._callbacks: dict[int, Callable[[], None]] = {}
        self._next = 0

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """The loop chats run on (called at start-up)."""
        self._loop = loop

    def begin(self) -> None:
        """Start the grace period; safe from a signal handler or another thread."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._begin)

    def _begin(self) -> None:
        if self.draining:
            return
        self.draining = True
        assert self._loop is not None
        log.info("shutdown_draining", grace_seconds=self.grace, chats=len(self._callbacks))
        self._loop.call_later(self.grace, self._expire)

    def _expire(self) -> None:
        self.expired = True
        if self._callbacks:
            log.warning("shutdown_grace_over", ending_chats=len(self._callbacks))
        for callback in list(self._callbacks.values()):
            callback()
        self._callbacks.clear()

    @contextlib.contextmanager
    def watch(self, on_expiry: Callable[[], None]) -> Iterator[None]:
        """Call ``on_expiry`` (once) if the grace period runs out while inside the block."""
        if self.expired:
            on_expiry()
            yield
            return
        handle, self._next = self._next, self._next + 1
        self._callbacks[handle] = on_expiry
        try:
            yield
        finally:
            self._callbacks.pop(handle, None)
