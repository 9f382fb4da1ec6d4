"""``RedisStore``: the account's credentials and refresh lock in Redis, shared by replicas.

Used when ``REDIS_URL`` is set. It stores, compares versions and keeps the lock atomically (Lua
scripts); it must not decide when to refresh or wait for the lock (``auth.manager``,
``auth.refresh_lock``). Durability is Redis's own: run it with ``appendonly yes`` and
``appendfsync always`` (compose's replicas profile does), so a write is on disk before Redis
answers; a Redis that says otherwise is reported once in the log.

Keys (``prefix`` is ``REDIS_KEY_PREFIX``): ``<prefix>account``, a hash of ``version``,
``credentials`` and ``device`` (JSON) and ``updated_at``; ``<prefix>refresh_lock``, the lock
owner's token with a PX expiry.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import orjson
import redis.asyncio as redis
import structlog
from redis.exceptions import ResponseError

from trae2api.auth.credentials import Credentials, DeviceIdentity
from trae2api.auth.store import StoredAccount

log = structlog.get_logger(__name__)

# Write the credentials only if the stored version is the expected one (compare-and-set).
_CAS = """
if redis.call('HGET', KEYS[1], 'version') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'version', ARGV[2], 'credentials', ARGV[3], 'updated_at', ARGV[4])
return 1
"""
# Extend or delete the lock only while the caller's token is the owner.
_RENEW = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('PEXPIRE', KEYS[1], ARGV[2])
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('DEL', KEYS[1])
"""


class RedisStore:
    """A ``CredentialStore`` in Redis; the constructor does no I/O (the client connects lazily)."""

    def __init__(self, url: str, *, prefix: str = "trae2api:", timeout: float = 5.0) -> None:
        client: Any = redis.Redis.from_url(
            url,
            decode_responses=True,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            health_check_interval=30,
        )
        self._redis = client
        self._account = f"{prefix}account"
        self._lock = f"{prefix}refresh_lock"
        self._cas = client.register_script(_CAS)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self._checked = False
        self._closed = False

    @property
    def account_key(self) -> str:
        return self._account

    @property
    def lock_key(self) -> str:
        return self._lock

    async def load(self) -> StoredAccount | None:
        self._check_open()
        if not self._checked:
            self._checked = True
            await _warn_unless_durable(self._redis)
        fields: dict[str, str] = await self._redis.hgetall(self._account)
        if not fields:
            return None
        return StoredAccount(
            credentials=Credentials(**orjson.loads(fields["credentials"])),
            device=DeviceIdentity(**orjson.loads(fields["device"])),
        )

    async def create(self, account: StoredAccount) -> None:
        self._check_open()
        mapping = {
            "version": str(account.credentials.version),
            "credentials": _json(account.credentials),
            "device": _json(account.device),
            "updated_at": repr(time.time()),
        }
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._account)
            pipe.hset(self._account, mapping=mapping)
            await pipe.execute()

    async def compare_and_set(self, expected_version: int, new: Credentials) -> bool:
        self._check_open()
        if new.version != expected_version + 1:
            return False
        args = [str(expected_version), str(new.version), _json(new), repr(time.time())]
        return bool(await self._cas(keys=[self._account], args=args))

    async def acquire_refresh_lock(self, owner: str, ttl: float) -> bool:
        self._check_open()
        return bool(await self._redis.set(self._lock, owner, nx=True, px=_ms(ttl)))

    async def renew_refresh_lock(self, owner: str, ttl: float) -> bool:
        self._check_open()
        return bool(await self._renew(keys=[self._lock], args=[owner, _ms(ttl)]))

    async def release_refresh_lock(self, owner: str) -> None:
        self._check_open()
        await self._release(keys=[self._lock], args=[owner])

    async def close(self) -> None:
        self._closed = True
        await self._redis.aclose()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the credential store is closed")


def _json(value: Credentials | DeviceIdentity) -> str:
    return orjson.dumps(dataclasses.asdict(value)).decode()


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


async def _warn_unless_durable(client: Any) -> None:
    """Log once if Redis would not fsync every write (managed Redis may forbid CONFIG)."""
    try:
        config: dict[str, str] = await client.config_get("append*")
    except ResponseError:
        return
    if config.get("appendonly") != "yes" or config.get("appendfsync") != "always":
        log.warning(
            "credentials.redis_not_durable",
            appendonly=config.get("appendonly"),
            appendfsync=config.get("appendfsync"),
            advice="run Redis with appendonly yes and appendfsync always: a rotated refresh "
            "token Redis loses in a crash is the account lost",
        )
