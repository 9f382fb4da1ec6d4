"""Tests for ``CredentialManager`` against a real SqliteStore and a rotating exchanger double."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from trae2api.auth.credentials import ExchangeResult
from trae2api.auth.manager import REAUTH_MESSAGE, CredentialManager
from trae2api.auth.rotation import InlineRotator
from trae2api.auth.sqlite_store import SqliteStore
from trae2api.errors import ReauthRequired, UpstreamUnavailable

SEED = "seed-refresh-token-SECRET"
DAY = 86400.0


class FakeClock:
    """A settable wall clock."""

    def __init__(self, now: float = 1_750_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class RotatingExchanger:
    """Protocol §2 rules: single-use refresh tokens; counts calls; can delay, fail or reject.

    On every call it also checks that the store already holds the tokens it issued last, i.e.
    that the manager wrote them durably before using them.
    """

    def __init__(self, clock: FakeClock, db_path: Path, *, access_ttl: float = 3 * DAY) -> None:
        self.clock = clock
        self.db_path = db_path
        self.access_ttl = access_ttl
        self.valid = {SEED}
        self.calls = 0
        self.delay = 0.0
        self.reject = False
        self.unavailable = False
        self.presented: list[str] = []
        self.issued: list[ExchangeResult] = []
        self.violations: list[str] = []

    async def exchange(self, refresh_token: str) -> ExchangeResult:
        self.calls += 1
        self.presented.append(refresh_token)
        await self._check_durable()
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.unavailable:
            raise UpstreamUnavailable("exchange host down")
        if self.reject or refresh_token not in self.valid:
            raise ReauthRequired("Trae refused the refresh token exchange (HTTP 400, code 10102)")
        self.valid.discard(refresh_token)
        n = len(self.issued) + 1
        now = self.clock()
        result = ExchangeResult(
            f"at-{n}-SECRET", now + self.access_ttl, f"rt-{n}-SECRET", now + 180 * DAY
        )
        self.valid.add(f"rt-{n}-SECRET")
        self.issued.append(result)
        return result

    async def _check_durable(self) -> None:
        # Only when continuing our own chain: a new login legitimately replaces the store.
        if not self.issued or self.presented[-1] != self.issued[-1].refresh_token:
            return
        other = SqliteStore(self.db_path)  # a second "process" reading the file
        stored = await other.load()
        await other.close()
        last = self.issued[-1]
        if stored is None or (
            stored.credentials.access_token,
            stored.credentials.refresh_token,
        ) != (last.access_token, last.refresh_token):
            self.violations.append(f"call {self.calls}: last issued tokens not stored")


@pytest.fixture
def clock() -> FakeClock:
    """The fake clock shared by manager and exchanger."""
    return FakeClock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """The database file for this test."""
    return tmp_path / "data" / "trae2api.sqlite3"


@pytest.fixture
def exchanger(clock: FakeClock, db_path: Path) -> RotatingExchanger:
    """The rotating exchanger double."""
    return RotatingExchanger(clock, db_path)


class Harness:
    """Builds managers on fresh store objects and closes them all at the end."""

    def __init__(self, db_path: Path, clock: FakeClock, exchanger: RotatingExchanger) -> None:
        self.db_path, self.clock, self.exchanger = db_path, clock, exchanger
        self.stores: list[SqliteStore] = []

    async def manager(
        self, seed: str = SEED, *, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    ) -> CredentialManager:
        store = SqliteStore(self.db_path)
        self.stores.append(store)
        mgr = CredentialManager(
            store=store,
            rotator=InlineRotator(self.exchanger, store),
            seed_refresh_token=seed,
            clock=self.clock,
            reauth_grace=0.2,
            sleep=sleep,
        )
        await mgr.start()
        return mgr

    async def stored_access_token(self) -> str | None:
        other = SqliteStore(self.db_path)
        stored = await other.load()
        await other.close()
        assert stored is not None
        return stored.credentials.access_token


@pytest.fixture
async def h(
    db_path: Path, clock: FakeClock, exchanger: RotatingExchanger
) -> AsyncIterator[Harness]:
    """The harness; asserts no durability violation was seen."""
    harness = Harness(db_path, clock, exchanger)
    yield harness
    for store in harness.stores:
        await store.close()
    assert exchanger.violations == []


async def test_fresh_start_exchanges_once(h: Harness) -> None:
    """A first start stores the seed and exchanges it exactly once for many calls."""
    mgr = await h.manager()
    assert mgr.state == "no_token"
    assert await mgr.access_token() == "at-1-SECRET"
    assert await mgr.access_token() == "at-1-SECRET"
    assert h.exchanger.calls == 1
    assert h.exchanger.presented == [SEED]
    assert mgr.status()["state"] == "ok"


async def test_concurrent_callers_share_one_exchange(h: Harness) -> None:
    """20 concurrent callers on an expired token cause exactly one exchange."""
    mgr = await h.manager()
    await mgr.access_token()
    h.clock.advance(3 * DAY + 1)
    h.exchanger.delay = 0.05
    tokens = await asyncio.gather(*(mgr.access_token() for _ in range(20)))
    assert set(tokens) == {"at-2-SECRET"}
    assert h.exchanger.calls == 2


async def test_first_start_concurrent_callers(h: Harness) -> None:
    """20 concurrent callers with no access token yet cause exactly one exchange."""
    mgr = await h.manager()
    h.exchanger.delay = 0.05
    tokens = await asyncio.gather(*(mgr.access_token() for _ in range(20)))
    assert set(tokens) == {"at-1-SECRET"}
    assert h.exchanger.calls == 1


async def test_restart_uses_stored_newest_token(h: Harness) -> None:
    """A restart with the same (burnt) seed uses the stored token without exchanging."""
    first = await h.manager()
    token = await first.access_token()
    second = await h.manager()
    assert await second.access_token() == token
    assert h.exchanger.calls == 1
    assert second.device == first.device
    h.clock.advance(3 * DAY)
    assert await second.access_token() == "at-2-SECRET"
    assert h.exchanger.presented == [SEED, "rt-1-SECRET"]


async def test_new_seed_is_a_new_login(h: Harness) -> None:
    """A different REFRESH_TOKEN starts a new login but keeps the device identity."""
    first = await h.manager()
    await first.access_token()
    h.exchanger.valid.add("second-seed")
    with capture_logs() as logs:
        second = await h.manager(seed="second-seed")
    assert [e["case"] for e in logs if e["event"] == "credentials.loaded"] == ["new_login"]
    assert second.device == first.device
    assert second.state == "no_token"
    assert await second.access_token() == "at-2-SECRET"
    assert h.exchanger.presented[-1] == "second-seed"
    assert second.status()["version"] == 3


async def test_stale_worker_cannot_overwrite_new_login(h: Harness) -> None:
    """A manager of the old login adopts the new login instead of writing over it."""
    old = await h.manager()
    await old.access_token()
    h.exchanger.valid.add("second-seed")
    new = await h.manager(seed="second-seed")
    token = await new.access_token()
    h.clock.advance(3 * DAY - 300)  # inside the margin for both
    assert await old.access_token() == await new.access_token()
    assert token != await new.access_token()
    assert h.exchanger.presented == [SEED, "second-seed", "rt-2-SECRET"]


async def test_two_workers_racing_one_token_share_one_exchange(h: Harness) -> None:
    """Two workers on one store: the refresh lock lets one exchange and the other adopts it."""
    a = await h.manager()
    b = await h.manager()
    h.exchanger.delay = 0.05
    tokens = await asyncio.gather(a.access_token(), b.access_token())
    assert set(tokens) == {"at-1-SECRET"}
    assert a.state == b.state == "ok"
    assert h.exchanger.presented == [SEED]


async def test_reauth_is_sticky_and_logged_once(h: Harness) -> None:
    """A rejected refresh token puts the manager in reauth state, logged once without secrets."""
    mgr = await h.manager()
    h.exchanger.reject = True
    with capture_logs() as logs:
        for _ in range(3):
            with pytest.raises(ReauthRequired) as info:
                await mgr.access_token()
            assert info.value.message == REAUTH_MESSAGE
        with pytest.raises(ReauthRequired):
            await mgr.refresh_after_rejection("anything")
    assert h.exchanger.calls == 1
    assert mgr.state == "reauth_required"
    errors = [e for e in logs if e["log_level"] == "error"]
    assert [e["event"] for e in errors] == ["credentials.reauth_required"]
    assert "storage.json" in errors[0]["instructions"]
    assert "SECRET" not in repr(logs)
    assert "SECRET" not in repr(mgr.status())


async def test_background_refresh_stops_on_reauth(h: Harness) -> None:
    """The background loop returns once re-login is required."""
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    mgr = await h.manager(sleep=sleep)
    h.exchanger.reject = True
    await asyncio.wait_for(mgr.run_background_refresh(), timeout=5)
    assert h.exchanger.calls == 1


async def test_transient_failure_keeps_valid_token(h: Harness) -> None:
    """An unavailable exchange inside the margin returns the still-valid token and burns nothing."""
    mgr = await h.manager()
    token = await mgr.access_token()
    h.clock.advance(3 * DAY - 300)  # within the 600 s margin, still valid
    h.exchanger.unavailable = True
    assert await mgr.access_token() == token
    assert mgr.status()["last_error"] == "exchange host down"
    h.clock.advance(301)  # now actually expired
    with pytest.raises(UpstreamUnavailable):
        await mgr.access_token()
    h.exchanger.unavailable = False
    assert await mgr.access_token() == "at-2-SECRET"
    assert h.exchanger.presented[-1] == "rt-1-SECRET"


async def test_refresh_after_rejection(h: Harness) -> None:
    """A rejected current token forces one exchange; a stale rejected token does not."""
    mgr = await h.manager()
    first = await mgr.access_token()
    h.clock.advance(120)
    results = await asyncio.gather(*(mgr.refresh_after_rejection(first) for _ in range(10)))
    assert set(results) == {"at-2-SECRET"}
    assert h.exchanger.calls == 2
    assert await mgr.refresh_after_rejection(first) == "at-2-SECRET"
    assert h.exchanger.calls == 2


async def test_rejection_of_a_fresh_token_exchanges_once_for_all(h: Harness) -> None:
    """A freshly issued token that Trae revokes is replaced by one exchange shared by all."""
    mgr = await h.manager()
    token = await mgr.access_token()
    h.exchanger.delay = 0.05
    with capture_logs() as logs:
        renewed = await asyncio.gather(*(mgr.refresh_after_rejection(token) for _ in range(10)))
    assert len(set(renewed)) == 1
    assert renewed[0] != token
    assert h.exchanger.calls == 2
    warnings = [e for e in logs if e["event"] == "credentials.rejected_fresh_token"]
    assert len(warnings) == 1  # one per exchange, not one per check


async def test_durable_write_before_return(h: Harness) -> None:
    """When access_token() returns, another store on the file already holds that token."""
    mgr = await h.manager()
    for _ in range(4):
        token = await mgr.access_token()
        assert await h.stored_access_token() == token
        h.clock.advance(3 * DAY)
    assert h.exchanger.calls == 4


async def test_cancelled_caller_does_not_abort_refresh(h: Harness) -> None:
    """A caller cancelled mid-exchange leaves the refresh to finish and be stored."""
    mgr = await h.manager()
    h.exchanger.delay = 0.05
    caller = asyncio.create_task(mgr.access_token())
    await asyncio.sleep(0.01)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    await mgr.aclose()
    assert await h.stored_access_token() == "at-1-SECRET"
    assert await mgr.access_token() == "at-1-SECRET"
    assert h.exchanger.calls == 1


async def test_background_refresh_schedule_and_backoff(h: Harness) -> None:
    """The loop refreshes ahead of expiry, sleeps within [1 s, 1 h] and backs off on failure."""
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        h.clock.advance(seconds)
        if len(sleeps) >= 40:
            raise asyncio.CancelledError

    h.exchanger.access_ttl = 7200.0
    mgr = await h.manager(sleep=sleep)
    with pytest.raises(asyncio.CancelledError):
        await mgr.run_background_refresh()
    assert all(1.0 <= s <= 3600.0 for s in sleeps)
    assert h.exchanger.calls >= 10
    h.exchanger.unavailable = True
    sleeps.clear()
    with pytest.raises(asyncio.CancelledError):
        await mgr.run_background_refresh()
    backoffs = [s for s in sleeps[1:] if s >= 5.0]  # sleeps[0] waits for the due time
    assert backoffs[:7] == [5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 300.0]


async def test_status_has_no_tokens(h: Harness) -> None:
    """status() reports expiries, version and counters but never a token."""
    mgr = await h.manager()
    await mgr.access_token()
    status = mgr.status()
    assert status["state"] == "ok"
    assert status["version"] == 1
    assert status["refresh_count"] == 1
    assert "SECRET" not in repr(status)
    assert SEED not in repr(status)
