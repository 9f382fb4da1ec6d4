"""Where uploaded images are remembered by content digest, so identical bytes go up once (§8).

Owns the implementations of ``imagex.UploadCache``: ``SqliteUploadCache`` (a table in the
credential store's database file, its own connection), ``RedisUploadCache`` (keys that expire,
shared by replicas; used when ``REDIS_URL`` is set) and ``MemoryUploadCache`` (tests, demo).
It must not upload anything, and must not touch the credential store's tables or its
``user_version``.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import orjson

from trae2api.sqlite_file import SqliteFile
from trae2api.upstream.imagex import UploadCache
from trae2api.upstream.upload_answers import UploadedImage

__all__ = ["MemoryUploadCache", "RedisUploadCache", "SqliteUploadCache", "UploadCache"]

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


class RedisUploadCache:
    """An ``UploadCache`` in Redis: one JSON value per image under ``<prefix>upload:<sha256>``,
    expiring with the entry (a lost entry only costs a second upload)."""

    def __init__(
        self, url: str, *, prefix: str = "trae2api:", clock: Callable[[], float] = time.time
    ) -> None:
        # Imported here: redis is an optional extra, needed only when REDIS_URL is set.
        import redis.asyncio as redis

        self._redis: Any = redis.Redis.from_url(url, socket_timeout=5.0, socket_connect_timeout=5.0)
        self._prefix = f"{prefix}upload:"
        self._clock = clock

    async def get(self, sha256: str) -> UploadedImage | None:
        raw = await self._redis.get(self._prefix + sha256)
        if raw is None:
            return None
        return UploadedImage(**orjson.loads(raw))

    async def put(self, sha256: str, image: UploadedImage, expires_at: float) -> None:
        ttl_ms = round((expires_at - self._clock()) * 1000)
        if ttl_ms <= 0:
            return
        value = orjson.dumps(
            {
                "uri": image.uri,
                "width": image.width,
                "height": image.height,
                "format": image.format,
                "md5": image.md5,
            }
        )
        await self._redis.set(self._prefix + sha256, value, px=ttl_ms)

    async def close(self) -> None:
        await self._redis.aclose()


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
        self._file = SqliteFile(path, setup=_setup, busy_timeout=busy_timeout, name="upload cache")
        self._clock = clock

    @property
    def path(self) -> Path:
        return self._file.path

    async def get(self, sha256: str) -> UploadedImage | None:
        now = self._clock()
        return await self._run(lambda conn: _get(conn, sha256, now))

    async def put(self, sha256: str, image: UploadedImage, expires_at: float) -> None:
        now = self._clock()
        await self._run(lambda conn: _put(conn, sha256, image, expires_at, now))

    async def close(self) -> None:
        await self._file.close()

    async def _run(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        return await self._file.run(fn)


def _setup(conn: sqlite3.Connection) -> None:
    conn.execute(_SCHEMA)


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
