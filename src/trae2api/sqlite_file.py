"""One private SQLite file: created 0600 in a 0700 folder, WAL, one connection behind a lock.

Blocking calls run on a worker thread so the event loop never waits on disk. It must not know
any table: the credential store and the upload cache bring their own schema (``setup``).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

_T = TypeVar("_T")


class SqliteFile:
    """Opens the file on first use; ``run`` executes ``fn(connection)`` off the event loop."""

    def __init__(
        self,
        path: Path,
        *,
        setup: Callable[[sqlite3.Connection], None],
        busy_timeout: float = 10.0,
        name: str = "database",
    ) -> None:
        self.path = path
        self._setup = setup
        self._busy_timeout = busy_timeout
        self._name = name
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._closed = False

    async def run(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        # If the awaiting task is cancelled the thread still finishes: a started write completes.
        return await asyncio.to_thread(self._locked, fn)

    async def close(self) -> None:
        await asyncio.to_thread(self._close)

    def _locked(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        with self._lock:
            if self._closed:
                raise RuntimeError(f"the {self._name} is closed")
            if self._conn is None:
                self._conn = self._open()
            return fn(self._conn)

    def _open(self) -> sqlite3.Connection:
        prepare_private_file(self.path)
        conn = sqlite3.connect(
            self.path,
            timeout=self._busy_timeout,
            isolation_level=None,  # callers issue their own BEGIN IMMEDIATE / COMMIT
            check_same_thread=False,
        )
        try:
            _enable_wal(conn, self._busy_timeout)
            self._setup(conn)
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


def _enable_wal(conn: sqlite3.Connection, timeout: float) -> None:
    """``journal_mode=WAL``, retried: SQLite may refuse it at once, without its busy handler.

    On a fresh file the switch needs an exclusive lock; when another connection (another
    process's store opening the same file) holds a write lock meanwhile, SQLite answers "database
    is locked" immediately to avoid a deadlock, so the busy timeout does not help.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(0.01)


def prepare_private_file(path: Path) -> None:
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
