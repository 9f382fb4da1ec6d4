"""``SqliteStore``: the account's credentials in one SQLite file, durable and safe across processes.

It stores and compares versions and keeps the refresh lock's lease row; it must not decide when
to refresh or wait for the lock (``auth.manager``, ``auth.refresh_lock``).
"""

from __future__ import annotations

import dataclasses
import sqlite3
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import orjson

from trae2api.auth.credentials import Credentials, DeviceIdentity
from trae2api.auth.store import StoredAccount
from trae2api.errors import ConfigError
from trae2api.sqlite_file import SqliteFile

_T = TypeVar("_T")

# PRAGMA user_version of the layout below; later issues migrate by bumping it in _migrate().
# 2 added the refresh_lock table.
SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS account (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL,
    refresh_token TEXT NOT NULL,
    seed_fingerprint TEXT NOT NULL,
    refresh_expires_at REAL,
    access_token TEXT,
    access_expires_at REAL,
    device TEXT NOT NULL,
    updated_at REAL NOT NULL
)
"""

# The cross-process refresh lock: at most one row, owned until expires_at (epoch seconds; every
# process sharing the file runs on this host, so they share the clock).
_LOCK_SCHEMA = """
CREATE TABLE IF NOT EXISTS refresh_lock (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    owner TEXT NOT NULL,
    expires_at REAL NOT NULL
)
"""

_COLUMNS = (
    "version, refresh_token, seed_fingerprint, refresh_expires_at, access_token, "
    "access_expires_at, device"
)


class SqliteStore:
    """A ``CredentialStore`` in a SQLite file (WAL, synchronous=FULL, mode 0600).

    Blocking sqlite calls run in a worker thread; one connection, serialised by a lock, opened
    lazily on first use so the constructor does no I/O.
    """

    def __init__(self, path: Path, *, busy_timeout: float = 10.0) -> None:
        self._file = SqliteFile(
            path,
            setup=partial(_setup, path=path),
            busy_timeout=busy_timeout,
            name="credential store",
        )

    @property
    def path(self) -> Path:
        return self._file.path

    async def load(self) -> StoredAccount | None:
        return await self._run(_load)

    async def create(self, account: StoredAccount) -> None:
        await self._run(lambda conn: _create(conn, account))

    async def compare_and_set(self, expected_version: int, new: Credentials) -> bool:
        if new.version != expected_version + 1:
            return False
        return await self._run(lambda conn: _compare_and_set(conn, expected_version, new))

    async def acquire_refresh_lock(self, owner: str, ttl: float) -> bool:
        return await self._run(lambda conn: _acquire_lock(conn, owner, ttl))

    async def renew_refresh_lock(self, owner: str, ttl: float) -> bool:
        sql = "UPDATE refresh_lock SET expires_at = ? WHERE id = 1 AND owner = ?"
        cursor = await self._run(
            lambda conn: _transaction(conn, lambda: conn.execute(sql, (time.time() + ttl, owner)))
        )
        return cursor.rowcount == 1

    async def release_refresh_lock(self, owner: str) -> None:
        sql = "DELETE FROM refresh_lock WHERE id = 1 AND owner = ?"
        await self._run(lambda conn: _transaction(conn, lambda: conn.execute(sql, (owner,))))

    async def close(self) -> None:
        await self._file.close()

    async def _run(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        return await self._file.run(fn)


def _setup(conn: sqlite3.Connection, *, path: Path) -> None:
    # FULL: a COMMIT is fsynced before it returns, which is the durability protocol §2 demands
    # of the rotated refresh token.
    conn.execute("PRAGMA synchronous=FULL")
    _migrate(conn, path)


def _transaction(conn: sqlite3.Connection, fn: Callable[[], _T]) -> _T:
    # IMMEDIATE takes the write lock up front, so two processes serialise here instead of both
    # reading the same version and racing to write.
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = fn()
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return result


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    def step() -> None:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise ConfigError(
                "DATA_DIR",
                f"{path} was written by a newer trae2api (schema {version}, this one knows "
                f"{SCHEMA_VERSION}); upgrade trae2api instead of downgrading",
            )
        if version == 0:
            conn.execute(_SCHEMA)
        if version < SCHEMA_VERSION:
            conn.execute(_LOCK_SCHEMA)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    _transaction(conn, step)


def _load(conn: sqlite3.Connection) -> StoredAccount | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM account WHERE id = 1").fetchone()  # noqa: S608
    if row is None:
        return None
    version, refresh, seed_fp, refresh_exp, access, access_exp, device = row
    device_fields: dict[str, Any] = orjson.loads(device)
    return StoredAccount(
        credentials=Credentials(
            refresh_token=refresh,
            seed_fingerprint=seed_fp,
            version=version,
            refresh_expires_at=refresh_exp,
            access_token=access,
            access_expires_at=access_exp,
        ),
        device=DeviceIdentity(**device_fields),
    )


def _create(conn: sqlite3.Connection, account: StoredAccount) -> None:
    c = account.credentials
    params = (
        c.version,
        c.refresh_token,
        c.seed_fingerprint,
        c.refresh_expires_at,
        c.access_token,
        c.access_expires_at,
        orjson.dumps(dataclasses.asdict(account.device)).decode(),
        time.time(),
    )
    sql = (
        f"INSERT OR REPLACE INTO account (id, {_COLUMNS}, updated_at) "  # noqa: S608
        "VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?)"
    )
    _transaction(conn, lambda: conn.execute(sql, params))


def _compare_and_set(conn: sqlite3.Connection, expected_version: int, new: Credentials) -> bool:
    sql = (
        "UPDATE account SET version = ?, refresh_token = ?, seed_fingerprint = ?, "
        "refresh_expires_at = ?, access_token = ?, access_expires_at = ?, updated_at = ? "
        "WHERE id = 1 AND version = ?"
    )
    params = (
        new.version,
        new.refresh_token,
        new.seed_fingerprint,
        new.refresh_expires_at,
        new.access_token,
        new.access_expires_at,
        time.time(),
        expected_version,
    )
    cursor = _transaction(conn, lambda: conn.execute(sql, params))
    return cursor.rowcount == 1


def _acquire_lock(conn: sqlite3.Connection, owner: str, ttl: float) -> bool:
    # BEGIN IMMEDIATE (in _transaction) makes the read and the write one step for every process.
    def step() -> bool:
        row = conn.execute("SELECT owner, expires_at FROM refresh_lock WHERE id = 1").fetchone()
        now = time.time()
        if row is not None and row[0] != owner and row[1] > now:
            return False
        conn.execute(
            "INSERT OR REPLACE INTO refresh_lock (id, owner, expires_at) VALUES (1, ?, ?)",
            (owner, now + ttl),
        )
        return True

    return _transaction(conn, step)
