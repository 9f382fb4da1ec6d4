"""``SqliteStore``: the account's credentials in one SQLite file, durable and safe across processes.

It stores and compares versions and keeps the refresh lock's lease row; it must not decide when
to refresh or wait for the lock (``auth.manager``, ``auth.refresh_lock``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import orjson

from trae2api.auth.credentials import Credentials, DeviceIdentity
from trae2api.auth.store import StoredAccount
from trae2api.errors import ConfigError

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
        self._path = path
        self._busy_timeout = busy_timeout
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._closed = False

    @property
    def path(self) -> Path:
        return self._path

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
        await asyncio.to_thread(self._close)

    async def _run(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        # If the awaiting task is cancelled the thread still finishes: a started write completes.
        return await asyncio.to_thread(self._locked, fn)

    def _locked(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        with self._lock:
            if self._closed:
                raise RuntimeError("the credential store is closed")
            if self._conn is None:
                self._conn = self._open()
            return fn(self._conn)

    def _open(self) -> sqlite3.Connection:
        _prepare_file(self._path)
        conn = sqlite3.connect(
            self._path,
            timeout=self._busy_timeout,
            isolation_level=None,  # we issue BEGIN IMMEDIATE / COMMIT ourselves
            check_same_thread=False,
        )
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            # FULL: a COMMIT is fsynced before it returns, which is the durability protocol §2
            # demands of the rotated refresh token.
            conn.execute("PRAGMA synchronous=FULL")
            _migrate(conn, self._path)
        except BaseException:
            conn.close()
            raise
        return conn

    def _close(self) -> None:
        with self._lock:
            self._closed = True
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def _prepare_file(path: Path) -> None:
    """Create the parent directory (0700) and the file (0600) before sqlite touches them."""
    parent = path.parent
    if not parent.exists():
        parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(parent, 0o700)  # mkdir's mode is filtered by the umask
    # Creating the file ourselves means it never exists with wider permissions; SQLite gives
    # its -wal and -shm files the same mode as the database file.
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


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
