"""Completed Responses kept for ``previous_response_id`` and ``GET /v1/responses/{id}``.

In this process's memory (per replica), or in Redis when ``REDIS_URL`` is set (shared by the
replicas): one JSON value per response under ``<prefix>response:<id>``, expiring after
``RESPONSE_TTL`` seconds. An unknown or expired id is a 404 naming ``previous_response_id``.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any, Protocol

import orjson

from trae2api.errors import NotFound

RESPONSE_TTL = 3600.0
_MAX_KEPT = 1000
Kept = tuple[list[dict[str, Any]], dict[str, Any]]  # (input and output items, response object)


class ResponseStore(Protocol):
    async def put(self, response: dict[str, Any], items: list[dict[str, Any]]) -> None: ...

    async def get(self, response_id: str) -> Kept: ...

    async def aclose(self) -> None: ...


def not_found(response_id: str) -> NotFound:
    return NotFound(
        f"previous_response_id: no stored response {response_id!r} (responses are kept "
        f"{int(RESPONSE_TTL)} s, and not with store: false)",
        param="previous_response_id",
        code="previous_response_not_found",
    )


class MemoryResponseStore:
    """This replica's responses, oldest out first beyond ``_MAX_KEPT``."""

    def __init__(self) -> None:
        self._kept: OrderedDict[str, tuple[float, Kept]] = OrderedDict()

    async def put(self, response: dict[str, Any], items: list[dict[str, Any]]) -> None:
        self._kept[response["id"]] = (time.monotonic() + RESPONSE_TTL, (items, response))
        while len(self._kept) > _MAX_KEPT:
            self._kept.popitem(last=False)

    async def get(self, response_id: str) -> Kept:
        kept = self._kept.get(response_id)
        if kept is None or kept[0] < time.monotonic():
            self._kept.pop(response_id, None)
            raise not_found(response_id)
        return kept[1]

    async def aclose(self) -> None:
        self._kept.clear()


class RedisResponseStore:
    """Responses in Redis, shared by every replica using the same ``REDIS_URL`` and prefix."""

    def __init__(self, url: str, *, prefix: str = "trae2api:") -> None:
        # Imported here: redis is an optional extra, needed only when REDIS_URL is set.
        import redis.asyncio as redis

        self._redis: Any = redis.Redis.from_url(url, socket_timeout=5.0, socket_connect_timeout=5.0)
        self._prefix = f"{prefix}response:"

    async def put(self, response: dict[str, Any], items: list[dict[str, Any]]) -> None:
        value = orjson.dumps({"items": items, "response": response})
        await self._redis.set(self._prefix + response["id"], value, px=int(RESPONSE_TTL * 1000))

    async def get(self, response_id: str) -> Kept:
        raw = await self._redis.get(self._prefix + response_id)
        if raw is None:
            raise not_found(response_id)
        kept = orjson.loads(raw)
        return kept["items"], kept["response"]

    async def aclose(self) -> None:
        await self._redis.aclose()
