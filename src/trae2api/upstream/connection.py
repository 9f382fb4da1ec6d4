"""One socket of the chat stream's pool: an asyncio protocol feeding a response parser.

It holds bytes for the reader (pausing the socket when the reader falls behind) and wakes it;
it must not decide what a response means, nor when to reuse or retry a connection (the pool in
``upstream/streams.py`` does).
"""

from __future__ import annotations

import asyncio
from typing import cast

import httpx

from trae2api.errors import ResponseError
from trae2api.upstream.h1 import ResponseParser

_READ_HIGH_WATER = 256 * 1024  # pause the socket when this much body waits for the reader


class Connection(asyncio.Protocol):
    """One socket; its parser is the response currently being read, if any."""

    def __init__(self, release: asyncio.Semaphore) -> None:
        self._release: asyncio.Semaphore | None = release
        self.transport: asyncio.Transport | None = None
        self.parser: ResponseParser | None = None
        self.error: BaseException | None = None  # the socket or the parse failed
        self.closed = False
        self.idle_since = 0.0
        self._waiter: asyncio.Future[bool] | None = None
        self._drained: asyncio.Future[None] | None = None
        self._paused = False

    # asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Not isinstance(): uvloop's transports do not subclass asyncio.Transport.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        parser = self.parser
        if parser is None:  # bytes while idle in the pool: the connection is unusable
            self.close()
            return
        if self.error is not None:
            return
        try:
            parser.feed(data)
        except ResponseError as exc:
            self.error = exc
        if parser.pending > _READ_HIGH_WATER and not self._paused and self.transport is not None:
            # Backpressure: the reader is behind, let TCP hold the rest.
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        if self.parser is not None and self.error is None:
            try:
                self.parser.feed_eof()
            except ResponseError as exc:
                self.error = exc
        self.closed = True
        self._wake()
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        if self.error is None and exc is not None:
            self.error = exc
        if self.parser is not None and not self.parser.complete and self.error is None:
            self.error = ResponseError("the connection closed before the response ended")
        self.close()
        self._wake()
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def pause_writing(self) -> None:
        self._drained = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)
        self._drained = None

    # used by the pool and the response ------------------------------------------------------

    def close(self) -> None:
        """Close the socket and give its slot back, once."""
        self.closed = True
        if self.transport is not None:
            self.transport.abort()  # nothing is owed to a peer we stop talking to
        release, self._release = self._release, None
        if release is not None:
            release.release()

    @property
    def reusable(self) -> bool:
        transport = self.transport
        return not self.closed and transport is not None and not transport.is_closing()

    async def write(self, data: bytes, seconds: float) -> None:
        assert self.transport is not None
        self.transport.write(data)
        if self._drained is not None:
            try:
                async with asyncio.timeout(seconds):
                    await self._drained
            except TimeoutError:
                raise httpx.WriteTimeout("timed out sending the request") from None

    async def wait(self, seconds: float) -> bool:
        """Until the parser has news (True), the socket fails, or ``seconds`` pass (False).

        A timeout loses nothing: the bytes that arrive later wait in the parser.
        """
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        self.resume()
        # A timer callback rather than asyncio.timeout(): no cancellation to unwind per read.
        timer = loop.call_later(seconds, _expire, waiter)
        try:
            woke: bool = await waiter
            return woke
        finally:
            timer.cancel()
            self._waiter = None

    def interrupt(self, exc: BaseException) -> None:
        """End the wait in progress (if any) with ``exc``: a shutdown ending the chat."""
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def resume(self) -> None:
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(True)


def _expire(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(False)
