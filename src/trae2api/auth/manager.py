"""``CredentialManager``: the account's single source of access tokens and its only refresher.

It must not speak HTTP or write a rotation (``auth.rotation`` does), keep a token anywhere but
memory and the store, or log a token.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal, Protocol

import structlog

from trae2api.auth.credentials import Credentials, DeviceIdentity
from trae2api.auth.login import initial_account
from trae2api.auth.refresh_lock import Lease, RefreshLock
from trae2api.auth.rotation import Rotator
from trae2api.auth.schedule import RefreshSchedule
from trae2api.auth.store import CredentialStore, StoredAccount
from trae2api.errors import ReauthRequired, UpstreamUnavailable
from trae2api.log import secrets_registry

REAUTH_MESSAGE = "Trae rejected the stored refresh token; the operator must log in again"

# The seed's FAQ remedy (protocol §2), for the operator's log. Never add the token to it.
OPERATOR_INSTRUCTIONS = (
    "Trae rejected the refresh token, so trae2api cannot obtain access tokens any more. "
    "To fix it: log out of your Trae account in the Trae IDE, log in again, copy the new "
    "refresh token from Trae's storage.json into REFRESH_TOKEN, and restart trae2api. "
    "Do not open Trae on that machine afterwards: it would use the refresh token and rotate it "
    "again, which logs trae2api out."
)

_BACKOFF_MIN = 5.0
_BACKOFF_MAX = 300.0
_MIN_SLEEP = 1.0
_MAX_SLEEP = 3600.0  # wake at least hourly so a changed wall clock is noticed
_MAX_ROUNDS = 3  # exchanges per refresh when another worker keeps winning the store

State = Literal["not_started", "ok", "expired", "no_token", "refreshing", "reauth_required"]


class Logger(Protocol):
    """The part of a structlog bound logger this module uses."""

    def info(self, event: str, **kw: Any) -> Any: ...
    def warning(self, event: str, **kw: Any) -> Any: ...
    def error(self, event: str, **kw: Any) -> Any: ...


class CredentialManager:
    """Hands out access tokens, refreshing them single-flight and storing rotations durably."""

    def __init__(
        self,
        *,
        store: CredentialStore,
        rotator: Rotator,
        seed_refresh_token: str,
        clock: Callable[[], float] = time.time,
        refresh_margin: float = 600.0,
        min_refresh_interval: float = 60.0,
        reauth_grace: float = 2.0,
        refresh_lock_ttl: float = 10.0,
        refresh_lock_wait: float = 30.0,
        logger: Logger | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._store = store
        self._rotator = rotator
        self._seed = seed_refresh_token
        self._clock = clock
        self._schedule = RefreshSchedule(refresh_margin, min_refresh_interval)
        self._reauth_grace = reauth_grace
        self._log: Logger = logger if logger is not None else structlog.get_logger(__name__)
        self._sleep = sleep
        self._lock = RefreshLock(
            store, ttl=refresh_lock_ttl, wait=refresh_lock_wait, logger=self._log
        )
        self._held: Credentials | None = None
        self._device: DeviceIdentity | None = None
        self._inflight: asyncio.Task[Credentials] | None = None
        self._reauth = False
        self._unsaved_base: int | None = None  # set while exchanged credentials are not durable
        self._last_refresh_at: float | None = None
        self._last_error: str | None = None
        self._refresh_count = 0
        self._failure_count = 0

    # -- start-up -------------------------------------------------------------------------

    async def start(self) -> None:
        """Load the stored account, or record a first or new login from the seed token.

        A login is written under the refresh lock after a re-read, so processes starting
        together record it once (one device identity), and a process that read the store before
        another one's exchange never writes the burnt seed over the rotated token.
        """
        account, case = initial_account(await self._store.load(), self._seed)
        if case != "resumed":
            async with self._lock.hold(_always):
                account, case = initial_account(await self._store.load(), self._seed)
                if case != "resumed":
                    await self._store.create(account)
        self._creds, self._device = account.credentials, account.device
        self._log.info("credentials.loaded", case=case, **account.credentials.redacted())

    @property
    def _creds(self) -> Credentials | None:
        return self._held

    @_creds.setter
    def _creds(self, value: Credentials | None) -> None:
        # Every credential this process holds is scrubbed from its logs from now on.
        if value is not None:
            secrets_registry.add(value.refresh_token, value.access_token)
        self._held = value

    # -- public API -----------------------------------------------------------------------

    @property
    def device(self) -> DeviceIdentity:
        if self._device is None:
            raise RuntimeError("CredentialManager.start() has not completed")
        return self._device

    @property
    def state(self) -> State:
        if self._reauth:
            return "reauth_required"
        if self._creds is None:
            return "not_started"
        if self._inflight is not None and not self._inflight.done():
            return "refreshing"
        if self._creds.access_token is None:
            return "no_token"
        return "ok" if self._creds.access_valid(self._clock()) else "expired"

    def status(self) -> dict[str, object]:
        """Safe for a status page: expiries, version and counters, never a token."""
        info: dict[str, object] = {
            "state": self.state,
            "last_refresh_at": self._last_refresh_at,
            "last_error": self._last_error,
            "refresh_count": self._refresh_count,
            "refresh_failures": self._failure_count,
            "unsaved": self._unsaved_base is not None,
        }
        if self._creds is not None:
            info.update(self._creds.redacted())
        return info

    async def access_token(self) -> str:
        """A usable access token, refreshed first when within ``refresh_margin`` of expiry."""
        creds = self._current()
        if not self._schedule.needs_refresh(creds, self._clock()):
            return _token(creds)
        try:
            creds = await self._shared_refresh(None)
        except UpstreamUnavailable:
            # The margin is for proactive refresh; a token that still actually lives beats an
            # error while the exchange is briefly unavailable.
            current = self._current()
            if current.access_token is not None and current.access_valid(self._clock()):
                return current.access_token
            raise
        return _token(creds)

    async def refresh_after_rejection(self, rejected_access_token: str) -> str:
        """The upstream refused ``rejected_access_token`` (401/1001): a token to retry with.

        Concurrent callers rejected with the same token share one exchange (protocol §7).
        """
        creds = self._current()
        if creds.access_token != rejected_access_token:
            return await self.access_token()  # someone already refreshed
        return _token(await self._shared_refresh(rejected_access_token))

    async def run_background_refresh(self) -> None:
        """Refresh ahead of expiry forever; returns once re-login is required."""
        backoff = _BACKOFF_MIN
        while not self._reauth:
            now = self._clock()
            delay = self._schedule.due_at(self._current()) - now
            await self._sleep(min(max(delay, _MIN_SLEEP), _MAX_SLEEP))
            if self._reauth:
                return
            try:
                if self._unsaved_base is not None or self._schedule.needs_refresh(
                    self._current(), self._clock()
                ):
                    await self._shared_refresh(None)
                backoff = _BACKOFF_MIN
            except ReauthRequired:
                return
            except Exception as exc:
                self._log.warning(
                    "credentials.background_refresh_failed", error=str(exc), retry_in=backoff
                )
                await self._sleep(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX)

    async def aclose(self) -> None:
        """Let a running refresh finish, so a rotated token is not lost at shutdown."""
        task = self._inflight
        if task is not None and not task.done():
            await asyncio.wait([task])

    # -- internals ------------------------------------------------------------------------

    def _current(self) -> Credentials:
        if self._reauth:
            raise ReauthRequired(REAUTH_MESSAGE)
        if self._creds is None:
            raise RuntimeError("CredentialManager.start() has not completed")
        return self._creds

    def _should_exchange(
        self, creds: Credentials, rejected: str | None, now: float, *, warn: bool = False
    ) -> bool:
        if rejected is None:
            return self._schedule.needs_refresh(creds, now)
        if creds.access_token != rejected:
            return False
        exchanged_at = self._schedule.exchanged_at(creds)
        if warn and exchanged_at is not None and now - exchanged_at < self._schedule.min_interval:
            # Still exchange: Trae may have revoked the token (or the operator's test expired
            # it); each request asks at most once, so this cannot loop. It is worth a warning.
            self._log.warning(
                "credentials.rejected_fresh_token",
                version=creds.version,
                age_seconds=round(now - exchanged_at, 1),
            )
        return True

    async def _shared_refresh(self, rejected: str | None) -> Credentials:
        """Single-flight: join the running refresh or start one, as a task of its own.

        The task is shielded from the callers' cancellation: a client hanging up must not abort
        an exchange between burning the old refresh token and storing the new one (protocol §2).
        """
        while True:
            task = self._inflight
            if task is None or task.done():
                task = asyncio.create_task(self._refresh(rejected), name="trae2api-refresh")
                task.add_done_callback(_consume_result)
                self._inflight = task
                return await asyncio.shield(task)
            creds = await asyncio.shield(task)
            if rejected is None or creds.access_token != rejected:
                return creds
            # The refresh we joined did not replace the rejected token: run our own next.

    async def _refresh(self, rejected: str | None) -> Credentials:
        """Exchange under the cross-process refresh lock, re-reading the store first."""
        await self._persist_unsaved()
        current = await self._adopt_newer_stored(self._current())
        if not self._should_exchange(current, rejected, self._clock()):
            return current

        async def still_needed() -> bool:
            # Polled while waiting: a waiter adopts the holder's result as soon as it is stored.
            latest = await self._adopt_newer_stored(self._current())
            if rejected is not None:
                return latest.access_token == rejected
            return self._schedule.needs_refresh(latest, self._clock())

        async with self._lock.hold(still_needed) as lease:
            # Re-read under the lock: another process may have refreshed while we waited.
            current = await self._adopt_newer_stored(self._current())
            if lease is None:
                return current
            return await self._exchange_rounds(current, rejected, lease)

    async def _exchange_rounds(
        self, current: Credentials, rejected: str | None, lease: Lease
    ) -> Credentials:
        for _ in range(_MAX_ROUNDS):
            if not self._should_exchange(current, rejected, self._clock(), warn=True):
                return current
            if not await lease.confirm():
                # Paused past the lock's expiry: another process may be exchanging this token.
                raise UpstreamUnavailable("the refresh lock expired before the exchange")
            current, won = await self._exchange(current, lease.owner)
            if won:
                return current
            rejected = None  # another worker's newer credentials were adopted
        return current

    async def _adopt_newer_stored(self, current: Credentials) -> Credentials:
        """Another worker may have refreshed (or a new login happened) since we last looked."""
        stored = await self._load_stored()
        if stored is None or stored.credentials.version <= current.version:
            return current
        self._creds = stored.credentials
        self._log.info("credentials.adopted_stored", **stored.credentials.redacted())
        return stored.credentials

    async def _exchange(self, current: Credentials, lock_owner: str) -> tuple[Credentials, bool]:
        """One rotation, durably stored before anyone sees it; (credentials, stored by us)."""
        try:
            rotation = await self._rotator.rotate(current, lock_owner)
        except ReauthRequired as exc:
            newer = await self._rotated_elsewhere(current)
            if newer is not None:
                return newer, False
            self._enter_reauth(str(exc))
            raise ReauthRequired(REAUTH_MESSAGE) from exc
        except Exception as exc:
            self._failure_count += 1
            self._last_error = str(exc)
            self._log.warning("credentials.refresh_failed", error=str(exc))
            raise
        if rotation.outcome == "lost_race" or rotation.credentials is None:
            return await self._lost_race(current), False
        new = rotation.credentials
        exchanged_at = self._clock()
        self._schedule.exchanged(exchanged_at, new.version)
        if rotation.outcome == "unsaved":
            return self._keep_unsaved(current.version, new, rotation.error or "unknown"), True
        self._creds = new
        self._refresh_count += 1
        self._last_refresh_at = exchanged_at
        self._last_error = None
        self._log.info("credentials.refreshed", persist_ms=rotation.persist_ms, **new.redacted())
        return new, True

    async def _rotated_elsewhere(self, current: Credentials) -> Credentials | None:
        """After a rejection: did another worker rotate this token and store the result?

        The refresh lock keeps two workers from presenting the same token, but a lock can expire
        under a paused holder (or a store can be shared by an older trae2api without the lock);
        the loser's 4xx is then not a dead account. The winner stores right after its exchange
        returns, so look twice, ``reauth_grace`` apart.
        """
        for attempt in range(2):
            if attempt:
                await self._sleep(self._reauth_grace)
            adopted = await self._adopt_newer_stored(current)
            if adopted is not current:
                return adopted
        return None

    async def _load_stored(self) -> StoredAccount | None:
        # A store that cannot be read must not lead to exchanging a possibly stale (burnt)
        # refresh token: fail the refresh instead, which callers treat as transient.
        try:
            return await self._store.load()
        except Exception as exc:
            raise UpstreamUnavailable("the credential store could not be read") from exc

    def _keep_unsaved(self, base: int, new: Credentials, error: str) -> Credentials:
        # The old refresh token is burnt and the new one exists only here: dropping it would
        # lose the account for sure, so keep serving it and retry the write before any further
        # exchange (``_persist_unsaved``).
        self._creds, self._unsaved_base = new, base
        self._last_error = f"could not store the rotated credentials: {error}"
        self._log.error("credentials.store_failed", error=error, version=new.version)
        return new

    async def _persist_unsaved(self) -> None:
        base = self._unsaved_base
        if base is None:
            return
        try:
            won = await self._store.compare_and_set(base, self._current())
        except Exception as exc:
            raise UpstreamUnavailable(
                "the rotated Trae credentials could not be stored yet; not refreshing again"
            ) from exc
        self._unsaved_base = None
        if not won:
            await self._adopt_newer_stored(self._current())

    async def _lost_race(self, current: Credentials) -> Credentials:
        stored = await self._load_stored()
        self._log.warning("credentials.store_race_lost", version=current.version)
        if stored is None:
            raise UpstreamUnavailable("the credential store was emptied during a refresh")
        self._creds = stored.credentials
        return stored.credentials

    def _enter_reauth(self, upstream_error: str) -> None:
        first = not self._reauth
        self._reauth = True
        self._failure_count += 1
        self._last_error = upstream_error
        if first:
            self._log.error(
                "credentials.reauth_required",
                upstream_error=upstream_error,
                instructions=OPERATOR_INSTRUCTIONS,
            )


def _token(creds: Credentials) -> str:
    if creds.access_token is None:
        raise UpstreamUnavailable("no Trae access token is available yet")
    return creds.access_token


async def _always() -> bool:
    return True


def _consume_result(task: asyncio.Task[Credentials]) -> None:
    # Every caller may have been cancelled; mark the outcome as retrieved so asyncio does not
    # log "exception was never retrieved" for a failure that was already handled and logged.
    if not task.cancelled():
        task.exception()
