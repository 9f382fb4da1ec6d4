"""The credential stores' shared contract on real backends: CAS, the refresh lock, Redis caches."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from conftest import REDIS_TEST_URL
from trae2api.auth.credentials import Credentials, DeviceIdentity, fingerprint
from trae2api.auth.redis_store import RedisStore
from trae2api.auth.refresh_lock import RefreshLock
from trae2api.auth.sqlite_store import SqliteStore
from trae2api.auth.store import CredentialStore, StoredAccount
from trae2api.errors import UpstreamUnavailable
from trae2api.upstream.upload_answers import UploadedImage
from trae2api.upstream.upload_cache import RedisUploadCache

StoreFactory = Callable[[], CredentialStore]


def account(refresh: str = "rt-0") -> StoredAccount:
    """A version-0 account with a fresh device identity."""
    creds = Credentials(refresh_token=refresh, seed_fingerprint=fingerprint("seed"))
    return StoredAccount(creds, DeviceIdentity.generate())


def bump(creds: Credentials, refresh: str) -> Credentials:
    """The next version of ``creds`` with a new refresh and access token."""
    return dataclasses.replace(
        creds,
        version=creds.version + 1,
        refresh_token=refresh,
        refresh_expires_at=2e9,
        access_token=f"at-{refresh}",
        access_expires_at=1.9e9 + 0.125,
    )


@pytest.fixture(params=["sqlite", "redis"])
async def stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StoreFactory]:
    """Opens any number of stores on one backend (as separate processes would); closes them."""
    opened: list[CredentialStore] = []
    prefix = request.getfixturevalue("redis_prefix") if request.param == "redis" else ""

    def open_store() -> CredentialStore:
        store: CredentialStore = (
            SqliteStore(tmp_path / "data" / "trae2api.sqlite3")
            if request.param == "sqlite"
            else RedisStore(REDIS_TEST_URL, prefix=prefix)
        )
        opened.append(store)
        return store

    yield open_store
    for store in opened:
        await store.close()


async def test_round_trip_and_compare_and_set(stores: StoreFactory) -> None:
    """Create, load and CAS behave alike: a stale or skipping version never wins."""
    a, b = stores(), stores()
    assert await a.load() is None
    original = account()
    await a.create(original)
    loaded = await b.load()
    assert loaded == original
    v1 = bump(original.credentials, "rt-1")
    assert await a.compare_and_set(0, v1)
    assert not await b.compare_and_set(0, bump(original.credentials, "rt-stale"))
    assert not await b.compare_and_set(1, dataclasses.replace(bump(v1, "rt-skip"), version=3))
    stored = await b.load()
    assert stored is not None
    assert stored.credentials == v1
    assert stored.device == original.device


async def test_only_one_of_many_concurrent_writers_wins(stores: StoreFactory) -> None:
    """Ten stores racing to CAS the same version: exactly one write lands."""
    first = stores()
    await first.create(account())
    racers = [stores() for _ in range(10)]
    base = account().credentials
    results = await asyncio.gather(
        *(s.compare_and_set(0, bump(base, f"rt-{i}")) for i, s in enumerate(racers))
    )
    assert sum(results) == 1
    stored = await first.load()
    assert stored is not None
    assert stored.credentials.refresh_token == f"rt-{results.index(True)}"


async def test_lock_excludes_others_until_released(stores: StoreFactory) -> None:
    """The lock has one owner; renew and release work only for that owner."""
    a, b = stores(), stores()
    assert await a.acquire_refresh_lock("owner-a", 5)
    assert not await b.acquire_refresh_lock("owner-b", 5)
    assert not await b.renew_refresh_lock("owner-b", 5)
    await b.release_refresh_lock("owner-b")  # not the owner: nothing happens
    assert not await b.acquire_refresh_lock("owner-b", 5)
    assert await a.renew_refresh_lock("owner-a", 5)
    await a.release_refresh_lock("owner-a")
    assert await b.acquire_refresh_lock("owner-b", 5)
    assert not await a.renew_refresh_lock("owner-a", 5)


async def test_lock_of_a_dead_owner_expires(stores: StoreFactory) -> None:
    """A lock nobody renews is free after its ttl; the late owner then cannot release it."""
    a, b = stores(), stores()
    assert await a.acquire_refresh_lock("dead", 0.2)
    assert not await b.acquire_refresh_lock("alive", 5)
    await asyncio.sleep(0.3)
    assert await b.acquire_refresh_lock("alive", 5)
    await a.release_refresh_lock("dead")
    assert not await a.acquire_refresh_lock("third", 5)


@pytest.mark.slow
async def test_refresh_lock_serialises_holders_and_keeps_long_holds_alive(
    stores: StoreFactory,
) -> None:
    """Holders on different stores never overlap, even when a hold outlasts the ttl."""
    inside: list[int] = []
    overlaps: list[int] = []

    async def worker(index: int) -> None:
        lock = RefreshLock(stores(), ttl=0.3, wait=10)
        async with lock.hold(_needed) as lease:
            assert lease is not None
            if inside:
                overlaps.append(index)
            inside.append(index)
            await asyncio.sleep(0.5)  # longer than ttl: the heartbeat must keep it
            assert await lease.confirm()
            inside.remove(index)

    await asyncio.gather(*(worker(i) for i in range(3)))
    assert overlaps == []


async def test_waiter_returns_without_the_lock_once_no_longer_needed(
    stores: StoreFactory,
) -> None:
    """A waiter whose work was done by the holder gets None instead of waiting for the lock."""
    holder = stores()
    assert await holder.acquire_refresh_lock("holder", 5)
    done = asyncio.Event()
    lock = RefreshLock(stores(), ttl=5, wait=10)

    async def needed() -> bool:
        return not done.is_set()

    asyncio.get_running_loop().call_later(0.2, done.set)
    async with lock.hold(needed) as lease:
        assert lease is None


async def test_waiting_is_bounded(stores: StoreFactory) -> None:
    """A lock held past the wait bound fails the refresh as a transient upstream error."""
    holder = stores()
    assert await holder.acquire_refresh_lock("holder", 5)
    lock = RefreshLock(stores(), ttl=5, wait=0.3)
    with pytest.raises(UpstreamUnavailable):
        async with lock.hold(_needed):
            pytest.fail("the lock was granted while held")


async def test_redis_store_keys_and_owner(redis_prefix: str) -> None:
    """The Redis store uses the prefix's keys and the lock key holds the owner's token."""
    import redis.asyncio as redis

    store = RedisStore(REDIS_TEST_URL, prefix=redis_prefix)
    client = redis.Redis.from_url(REDIS_TEST_URL, decode_responses=True)
    try:
        await store.create(account())
        assert store.account_key == f"{redis_prefix}account"
        assert await client.hget(store.account_key, "version") == "0"
        assert await store.acquire_refresh_lock("host:123:abc", 2)
        assert await client.get(store.lock_key) == "host:123:abc"
        assert 0 < await client.pttl(store.lock_key) <= 2000
    finally:
        await store.close()
        await client.aclose()


async def test_redis_upload_cache_round_trip_and_expiry(redis_prefix: str) -> None:
    """Cached uploads come back until their expiry, then Redis forgets them."""
    now = [1_000.0]
    cache = RedisUploadCache(REDIS_TEST_URL, prefix=redis_prefix, clock=lambda: now[0])
    other = RedisUploadCache(REDIS_TEST_URL, prefix=redis_prefix)
    image = UploadedImage(uri="tos-x/abc", width=3, height=2, format="png", md5="0" * 32)
    try:
        await cache.put("a" * 64, image, expires_at=now[0] + 0.3)
        await cache.put("b" * 64, image, expires_at=now[0] - 1)  # already expired: not stored
        assert await other.get("a" * 64) == image
        assert await other.get("b" * 64) is None
        await asyncio.sleep(0.4)
        assert await other.get("a" * 64) is None
    finally:
        await cache.close()
        await other.close()


async def _needed() -> bool:
    return True
