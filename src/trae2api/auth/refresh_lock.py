"""``RefreshLock``: one token exchange at a time across every process that shares a store.

Owns waiting for the store's lock (polling with backoff up to a bound, asking the caller between
attempts whether the refresh is still needed), the heartbeat that keeps a held lock alive while an
exchange runs, and the safe release. It must not exchange, read credentials or decide whether a
refresh is needed (``auth.manager``), nor implement the lock itself (the stores do).

Owner tokens are ``"<host>:<pid>:<random>"``: unique per acquisition, and an operator (or a test)
reading the lock can tell which process holds it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

import structlog

from trae2api.errors import UpstreamUnavailable

_FIRST_POLL = 0.02
_MAX_POLL = 0.25


class LockingStore(Protocol):
    """The lock part of ``auth.store.CredentialStore``."""

    async def acquire_refresh_lock(self, owner: str, ttl: float) -> bool: ...
    async def renew_refresh_lock(self, owner: str, ttl: float) -> bool: ...
    async def release_refresh_lock(self, owner: str) -> None: ...


class Logger(Protocol):
    """The part of a structlog bound logger this module uses."""

    def warning(self, event: str, **kw: Any) -> Any: ...


def owner_token() -> str:
    """A new owner token naming this host and process."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(8)}"


class Lease:
    """A held refresh lock; ``confirm`` right before presenting a refresh token."""

    def __init__(self, store: LockingStore, owner: str, ttl: float) -> None:
        self.owner = owner
        self._store = store
        self._ttl = ttl

    async def confirm(self) -> bool:
        """Renew the lock now; False if it expired and someone else may have taken it."""
        try:
            return await self._store.renew_refresh_lock(self.owner, self._ttl)
        except Exception as exc:
            raise UpstreamUnavailable("the refresh lock could not be renewed") from exc


class RefreshLock:
    """Waits for, keeps alive and releases the store's refresh lock."""

    def __init__(
        self,
        store: LockingStore,
        *,
        ttl: float = 10.0,
        wait: float = 30.0,
        logger: Logger | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._ttl = ttl
        self._wait = wait
        self._log: Logger = logger if logger is not None else structlog.get_logger(__name__)
        self._monotonic = monotonic

    @contextlib.asynccontextmanager
    async def hold(
        self, still_needed: Callable[[], Awaitable[bool]]
    ) -> AsyncIterator[Lease | None]:
        """The lock, held (and renewed every ttl/3) for the block; None if ``still_needed``
        said False while waiting (another process did the work). Raises ``UpstreamUnavailable``
        after waiting ``wait`` seconds, or when the store cannot be reached.
        """
        owner = await self._acquire(still_needed)
        if owner is None:
            yield None
            return
        try:
            async with kept_alive(self._store, owner, self._ttl, self._log):
                yield Lease(self._store, owner, self._ttl)
        finally:
            await self._release(owner)

    async def _acquire(self, still_needed: Callable[[], Awaitable[bool]]) -> str | None:
        owner = owner_token()
        deadline = self._monotonic() + self._wait
        delay = _FIRST_POLL
        while True:
            try:
                if await self._store.acquire_refresh_lock(owner, self._ttl):
                    return owner
            except Exception as exc:
                raise UpstreamUnavailable("the refresh lock could not be taken") from exc
            # Polling the store is how a waiter learns the holder's result without waiting
            # for the release; a dead holder's lock expires after ttl.
            if not await still_needed():
                return None
            remaining = deadline - self._monotonic()
            if remaining <= 0:
                raise UpstreamUnavailable(
                    f"another process has been refreshing the Trae token for {self._wait:g} s"
                )
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 2, _MAX_POLL)

    async def _release(self, owner: str) -> None:
        # A lock that cannot be released expires on its own after ttl.
        try:
            await self._store.release_refresh_lock(owner)
        except Exception as exc:
            self._log.warning("credentials.refresh_lock_release_failed", error=str(exc))


@contextlib.asynccontextmanager
async def kept_alive(
    store: LockingStore, owner: str, ttl: float, logger: Logger
) -> AsyncIterator[None]:
    """Renew ``owner``'s lock every ttl/3 while the block runs.

    The renewing task is stopped by an event, never cancelled: a store client can turn a
    cancellation that lands mid-command into an ordinary error (redis-py does), and a loop that
    carries on after errors would then renew the lock forever.
    """
    stop = asyncio.Event()
    renewing = asyncio.create_task(
        _renew_until(stop, store, owner, ttl, logger), name="trae2api-refresh-lock"
    )
    try:
        yield
    finally:
        stop.set()
        await asyncio.shield(renewing)


async def _renew_until(
    stop: asyncio.Event, store: LockingStore, owner: str, ttl: float, logger: Logger
) -> None:
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), ttl / 3)
        if stop.is_set():
            return
        try:
            held = await store.renew_refresh_lock(owner, ttl)
        except Exception as exc:
            logger.warning("credentials.refresh_lock_renew_failed", error=str(exc))
            continue
        if not held:
            logger.warning("credentials.refresh_lock_lost", ttl=ttl)
            return
