"""Where uploaded images are remembered by content digest, so identical bytes go up once (§8).

Owns the implementations of ``imagex.UploadCache``: ``SqliteUploadCache`` (a table in the
credential store's database file, its own connection) and ``MemoryUploadCache`` (tests, demo).
It must not upload anything, and must not touch the credential store's tables or its
``user_version``.
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

from trae2api.upstream.imagex import UploadCache, UploadedImage

__all__ = ["MemoryUploadCache", "SqliteUploadCache", "UploadCache"]

_T = TypeVar("_T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS image_uploads (
    sha256 TEXT PRIMARY KEY,
    uri TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    format TEXT NOT NULL,
    md5 TEXT NOT NULL,
    expires_at REAL NOT NULL
)
"""


class MemoryUploadCache:
    """An ``UploadCache`` in a dict, for tests and the demo (lost on restart)."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._entries: dict[str, tuple[UploadedImage, float]] = {}

    async def get(self, sha256: str) -> UploadedImage | None:
        entry = self._entries.get(sha256)
        if entry is None:
            return None
        if entry[1] <= self._clock():
            del self._entries[sha256]
            return None
        return entry[0]

    async def put(self, sha256: str, image: UploadedImage, expires_at: float) -> None:
        now = self._clock()
        for key in [key for key, (_, until) in self._entries.items() if until <= now]:
            del self._entries[key]
        self._entries[sha256] = (image, expires_at)

    async def close(self) -> None:
        self._entries.clear()


class SqliteUploadCache:
    """An ``UploadCache`` in the table ``image_uploads`` of a SQLite file (WAL, mode 0600).

    Blocking calls run in a worker thread under a lock; the connection opens lazily on first use.
    A lost entry only costs a second upload, so writes are not fsynced like the credentials are.
    """

    def __init__(
        self,
        path: Path,
        *,
        busy_timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._path = path
        self._busy_timeout = busy_timeout
        self._clock = clock
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._closed = False

    @property
    def path(self) -> Path:
        return self._path

    async def get(self, sha256: str) -> UploadedImage | None:
        now = self._clock()
        return await self._run(lambda conn: _get(conn, sha256, now))

    async def put(self, sha256: str, image: UploadedImage, expires_at: float) -> None:
        now = self._clock()
        await self._run(lambda conn: _put(conn, sha256, image, expires_at, now))

    async def close(self) -> None:
        await asyncio.to_thread(self._close)

    async def _run(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        return await asyncio.to_thread(self._locked, fn)

    def _locked(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        with self._lock:
            if self._closed:
                raise RuntimeError("the upload cache is closed")
            if self._conn is None:
                self._conn = self._open()
            return fn(self._conn)

    def _open(self) -> sqlite3.Connection:
        _prepare_file(self._path)
        conn = sqlite3.connect(
            self._path,
            timeout=self._busy_timeout,
            isolation_level=None,  # autocommit: every statement below is its own transaction
            check_same_thread=False,
        )
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(_SCHEMA)
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
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def _get(conn: sqlite3.Connection, sha256: str, now: float) -> UploadedImage | None:
    row = conn.execute(
        "SELECT uri, width, height, format, md5 FROM image_uploads "
        "WHERE sha256 = ? AND expires_at > ?",
        (sha256, now),
    ).fetchone()
    if row is None:
        return None
    uri, width, height, fmt, md5 = row
    return UploadedImage(uri=uri, width=int(width), height=int(height), format=fmt, md5=md5)


def _put(
    conn: sqlite3.Connection, sha256: str, image: UploadedImage, expires_at: float, now: float
) -> None:
    conn.execute("DELETE FROM image_uploads WHERE expires_at <= ?", (now,))
    conn.execute(
        "INSERT OR REPLACE INTO image_uploads "
        "(sha256, uri, width, height, format, md5, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (sha256, image.uri, image.width, image.height, image.format, image.md5, expires_at),
    )
