"""Tests for ``SqliteStore``, the durable credential store."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sqlite3
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from trae2api.auth.credentials import Credentials, DeviceIdentity, fingerprint
from trae2api.auth.sqlite_store import SCHEMA_VERSION, SqliteStore
from trae2api.auth.store import CredentialStore, StoredAccount
from trae2api.errors import ConfigError


def account(version: int = 0, refresh: str = "rt-0") -> StoredAccount:
    """A stored account with a fresh device identity."""
    return StoredAccount(
        credentials=Credentials(
            refresh_token=refresh, seed_fingerprint=fingerprint("seed"), version=version
        ),
        device=DeviceIdentity.generate(),
    )


def bump(creds: Credentials, refresh: str, access: str) -> Credentials:
    """The next version of ``creds`` with new tokens."""
    return dataclasses.replace(
        creds,
        version=creds.version + 1,
        refresh_token=refresh,
        refresh_expires_at=2e9,
        access_token=access,
        access_expires_at=1.9e9,
    )


def mode(path: Path) -> int:
    """The permission bits of ``path``."""
    return stat.S_IMODE(path.stat().st_mode)


def make_world_readable(path: Path) -> None:
    """Create ``path`` (and its parent) as a 0644 file."""
    path.parent.mkdir()
    path.touch(mode=0o644)
    path.chmod(0o644)


@pytest.fixture
async def db_path(tmp_path: Path) -> Path:
    """Where the database lives: a not-yet-existing directory under tmp_path."""
    return tmp_path / "data" / "trae2api.sqlite3"


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[SqliteStore]:
    """A store on db_path, closed after the test."""
    s = SqliteStore(db_path)
    yield s
    await s.close()


def test_satisfies_protocol(db_path: Path) -> None:
    """SqliteStore is a CredentialStore for the type checker and at runtime."""
    s: CredentialStore = SqliteStore(db_path)
    assert s is not None


async def test_empty_store_loads_none(store: SqliteStore) -> None:
    """A new database holds no account."""
    assert await store.load() is None


async def test_round_trip(store: SqliteStore) -> None:
    """What create() and compare_and_set() wrote is what load() returns."""
    acc = account()
    await store.create(acc)
    assert await store.load() == acc
    new = bump(acc.credentials, "rt-1", "at-1")
    assert await store.compare_and_set(0, new)
    assert await store.load() == StoredAccount(new, acc.device)


async def test_cas_refuses_stale_version(store: SqliteStore) -> None:
    """compare_and_set from an older version changes nothing and returns False."""
    acc = account()
    await store.create(acc)
    first = bump(acc.credentials, "rt-1", "at-1")
    assert await store.compare_and_set(0, first)
    stale = bump(acc.credentials, "rt-x", "at-x")
    assert not await store.compare_and_set(0, stale)
    loaded = await store.load()
    assert loaded is not None
    assert loaded.credentials == first


async def test_cas_refuses_version_skip(store: SqliteStore) -> None:
    """compare_and_set refuses a new version that is not expected + 1."""
    acc = account()
    await store.create(acc)
    skip = dataclasses.replace(bump(acc.credentials, "rt-1", "at-1"), version=5)
    assert not await store.compare_and_set(0, skip)
    loaded = await store.load()
    assert loaded is not None
    assert loaded.credentials.version == 0


async def test_cas_on_empty_store_fails(store: SqliteStore) -> None:
    """compare_and_set without a stored account returns False."""
    assert not await store.compare_and_set(0, bump(account().credentials, "rt-1", "at-1"))


async def test_create_replaces(store: SqliteStore) -> None:
    """create() replaces whatever was stored (a new login)."""
    await store.create(account(version=3, refresh="old"))
    acc = account(version=4, refresh="new")
    await store.create(acc)
    assert await store.load() == acc


async def test_file_and_directory_modes(store: SqliteStore, db_path: Path) -> None:
    """The database and its WAL are 0600 and a created data directory is 0700."""
    await store.create(account())
    assert mode(db_path) == 0o600
    assert mode(db_path.parent) == 0o700
    assert mode(db_path.with_name(db_path.name + "-wal")) == 0o600


async def test_existing_file_is_tightened(db_path: Path) -> None:
    """A pre-existing world-readable database file is set to 0600 on open."""
    make_world_readable(db_path)
    s = SqliteStore(db_path)
    await s.load()
    await s.close()
    assert mode(db_path) == 0o600


async def test_pragmas_and_schema_version(store: SqliteStore, db_path: Path) -> None:
    """The database is in WAL mode and carries the schema version."""
    await store.load()
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()


async def test_newer_schema_is_refused(db_path: Path) -> None:
    """A database from a newer schema raises ConfigError instead of being misread."""
    db_path.parent.mkdir()
    conn = sqlite3.connect(db_path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    s = SqliteStore(db_path)
    with pytest.raises(ConfigError):
        await s.load()
    await s.close()


async def test_survives_close_and_reopen(db_path: Path) -> None:
    """Data written before close() is loaded by a new store on the same file."""
    first = SqliteStore(db_path)
    acc = account()
    await first.create(acc)
    new = bump(acc.credentials, "rt-1", "at-1")
    assert await first.compare_and_set(0, new)
    await first.close()
    second = SqliteStore(db_path)
    assert await second.load() == StoredAccount(new, acc.device)
    await second.close()


async def test_closed_store_refuses_calls(db_path: Path) -> None:
    """Calls after close() fail loudly instead of reopening."""
    s = SqliteStore(db_path)
    await s.close()
    with pytest.raises(RuntimeError):
        await s.load()


async def test_two_stores_cannot_both_win(db_path: Path) -> None:
    """Two stores on one file (two processes) racing a CAS from one version: exactly one wins."""
    a, b = SqliteStore(db_path), SqliteStore(db_path)
    acc = account()
    await a.create(acc)
    for version in range(20):
        loaded = await b.load()
        assert loaded is not None
        base = loaded.credentials
        assert base.version == version
        results = await asyncio.gather(
            a.compare_and_set(version, bump(base, f"rt-a{version}", "at-a")),
            b.compare_and_set(version, bump(base, f"rt-b{version}", "at-b")),
        )
        assert sorted(results) == [False, True]
        winner = "a" if results[0] else "b"
        final = await a.load()
        assert final is not None
        assert final.credentials.refresh_token == f"rt-{winner}{version}"
    await a.close()
    await b.close()


async def test_opening_a_fresh_file_while_another_connection_writes(tmp_path: Path) -> None:
    """Switching a fresh file to WAL waits for another writer instead of failing at once."""
    path = tmp_path / "data" / "trae2api.sqlite3"
    path.parent.mkdir(mode=0o700)
    path.touch(mode=0o600)
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # a write lock, as a second process's store would hold
    other.execute("CREATE TABLE elsewhere (a)")
    store = SqliteStore(path)
    try:
        loading = asyncio.create_task(store.load())
        await asyncio.sleep(0.2)
        assert not loading.done()  # SQLite's answer was "database is locked": it retries
        other.execute("COMMIT")
        assert await asyncio.wait_for(loading, timeout=10) is None
        with contextlib.closing(sqlite3.connect(path)) as check:
            assert check.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        other.close()
        await store.close()
