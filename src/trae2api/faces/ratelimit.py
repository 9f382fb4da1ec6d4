"""Per-client-key rate limits: a token bucket of ``RATE_LIMIT_BURST`` refilled at
``RATE_LIMIT_RPM`` per minute, in memory or in Redis (one atomic script, shared by replicas).

It only answers "may this key send a request now, and if not, when"; it never sees the key
itself, only its name.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any, Protocol

import structlog

from trae2api.config import Settings
from trae2api.errors import RateLimited

log = structlog.get_logger(__name__)


# KEYS[1] the bucket; ARGV: rate (tokens/s), burst, now (s). Returns seconds to wait (0: ok).
# The caller's clock is used, so every replica must keep time (NTP); the bucket expires once
# it would be full again, so idle keys cost nothing.
_LUA = """
local rate, burst, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens, at = tonumber(state[1]), tonumber(state[2])
if tokens == nil then tokens, at = burst, now end
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate * 1000) + 1000)
return tostring(wait)
"""


class Buckets(Protocol):
    """Takes one token from ``name``'s bucket: 0.0, or the seconds until one is available."""

    async def take(self, name: str) -> float: ...

    async def aclose(self) -> None: ...


class MemoryBuckets:
    """Buckets in this process (one replica)."""

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._rate, self._burst, self._clock = rate, burst, clock
        self._state: dict[str, tuple[float, float]] = {}

    async def take(self, name: str) -> float:
        now = self._clock()
        tokens, at = self._state.get(name, (float(self._burst), now))
        tokens = min(self._burst, tokens + max(0.0, now - at) * self._rate)
        wait = 0.0
        if tokens >= 1:
            tokens -= 1
        else:
            wait = (1 - tokens) / self._rate
        self._state[name] = (tokens, now)
        return wait

    async def aclose(self) -> None:
        self._state.clear()


class RedisBuckets:
    """Buckets in Redis, so every replica draws from the same one."""

    def __init__(self, url: str, rate: float, burst: int, prefix: str) -> None:
        # Imported here: redis is an optional extra, needed only when REDIS_URL is set.
        import redis.asyncio as redis

        self._redis: Any = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._script = self._redis.register_script(_LUA)
        self._rate, self._burst, self._prefix = rate, burst, prefix

    async def take(self, name: str) -> float:
        args = [self._rate, self._burst, time.time()]
        try:
            return float(await self._script(keys=[self._prefix + name], args=args))
        except Exception as exc:
            # Fail open: an unreachable Redis must not take the whole gateway down with it.
            log.warning("rate_limit_unavailable", client=name, error=str(exc))
            return 0.0

    async def aclose(self) -> None:
        await self._redis.aclose()


class RateLimiter:
    """Refuses a key's request with 429 (and ``Retry-After``) once its bucket is empty."""

    def __init__(self, buckets: Buckets, rpm: float) -> None:
        self._buckets = buckets
        self._rpm = rpm

    async def check(self, name: str) -> None:
        wait = await self._buckets.take(name)
        if wait > 0:
            raise RateLimited(
                f"Rate limit reached for this API key ({self._rpm:g} requests per minute, "
                f"RATE_LIMIT_RPM); try again in {wait:.1f} s",
                retry_after=max(1, math.ceil(wait)),
            )

    async def aclose(self) -> None:
        await self._buckets.aclose()


def build_rate_limiter(settings: Settings) -> RateLimiter | None:
    """The limiter for the settings, or None when ``RATE_LIMIT_RPM`` is 0 (the default)."""
    rpm = settings.rate_limit_rpm
    if rpm <= 0:
        return None
    size = settings.rate_limit_burst or max(1, math.ceil(rpm / 6))
    rate = rpm / 60.0
    buckets: Buckets = MemoryBuckets(rate, size)
    if settings.redis_url:
        prefix = f"{settings.redis_key_prefix}ratelimit:"
        buckets = RedisBuckets(settings.redis_url, rate, size, prefix)
    return RateLimiter(buckets, rpm)
