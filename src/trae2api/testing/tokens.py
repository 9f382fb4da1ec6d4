"""The simulated account's tokens (protocol §2): single-use refresh tokens, expiring access tokens.

It owns the exchange rules but not the switches or counters; it must not do I/O and is not
thread-safe on its own: ``SimState`` calls it under its lock.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

DEFAULT_CLIENT_ID = "ono9krqynydwx5"
DEFAULT_APP_ID = "6eefa01c-1036-4c7e-9ca5-d891f63bfcd8"
DEFAULT_USER_ID = "7325163180291196987"
DEFAULT_ACCESS_TTL = 3 * 86400.0
DEFAULT_REFRESH_TTL = 180 * 86400.0
REFRESH_INVALID_CODE = "10002"
INVALID_CLIENT_CODE = "10101"
INVALID_PARAMETER_CODE = "10001"


def _fake_jwt(user_id: str, expires_at: float) -> str:
    """An opaque token shaped like a JWT (the simulator never verifies it, it looks it up)."""

    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(orjson.dumps(data)).rstrip(b"=").decode()

    payload = {"sub": user_id, "exp": int(expires_at), "jti": secrets.token_hex(8)}
    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part(payload)}.{secrets.token_urlsafe(32)}"


@dataclass(frozen=True)
class SimAccount:
    """What an operator would copy out of Trae: the identity the gateway is configured with."""

    app_id: str
    client_id: str
    user_id: str
    refresh_token: str


class ExchangeRejected(Exception):
    """The exchange failed; ``code``/``message`` go into ``ResponseMetadata.Error``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class ExchangeResult:
    """A successful exchange; times are epoch seconds."""

    token: str
    token_expire_at: float
    refresh_token: str
    refresh_expire_at: float


@dataclass
class _RefreshToken:
    expires_at: float
    used: bool = False


class TokenBook:
    """Every refresh and access token issued for one account, and which of them still work."""

    def __init__(
        self,
        account: SimAccount,
        client_ids: frozenset[str],
        clock: Callable[[], float],
        refresh_ttl: float,
    ) -> None:
        """Only the account's initial refresh token exists, for ``refresh_ttl`` seconds."""
        self.account = account
        self.client_ids = client_ids
        self._clock = clock
        initial = account.refresh_token
        self._refresh = {initial: _RefreshToken(clock() + refresh_ttl)}
        self.current_refresh = initial
        self._access: dict[str, tuple[float, str]] = {}

    def exchange(
        self,
        client_id: str,
        refresh_token: str,
        user_id: str,
        *,
        access_ttl: float,
        refresh_ttl: float,
    ) -> ExchangeResult:
        """Burn ``refresh_token`` and mint a new pair, or raise ``ExchangeRejected``."""
        if client_id not in self.client_ids:
            raise ExchangeRejected(INVALID_CLIENT_CODE, "Invalid client.")
        if user_id not in ("", self.account.user_id):
            raise ExchangeRejected(INVALID_PARAMETER_CODE, "Invalid parameter: UserID")
        now = self._clock()
        entry = self._refresh.get(refresh_token)
        if entry is None:
            raise ExchangeRejected(REFRESH_INVALID_CODE, "refresh token invalid")
        if entry.used:
            raise ExchangeRejected(REFRESH_INVALID_CODE, "refresh token invalid (already used)")
        if now >= entry.expires_at:
            raise ExchangeRejected(REFRESH_INVALID_CODE, "refresh token invalid (expired)")
        entry.used = True
        new_refresh = secrets.token_urlsafe(32)
        refresh_expires = now + refresh_ttl
        self._refresh[new_refresh] = _RefreshToken(refresh_expires)
        self.current_refresh = new_refresh
        access_expires = now + access_ttl
        token = self._issue(access_expires)
        return ExchangeResult(token, access_expires, new_refresh, refresh_expires)

    def mint(self, access_ttl: float) -> str:
        """A new access token living ``access_ttl`` seconds."""
        return self._issue(self._clock() + access_ttl)

    def _issue(self, expires_at: float) -> str:
        token = _fake_jwt(self.account.user_id, expires_at)
        self._access[token] = (expires_at, self.account.user_id)
        return token

    def owner(self, token: str) -> str | None:
        """The user id of a currently valid access token, else None."""
        entry = self._access.get(token)
        if entry is None or self._clock() >= entry[0]:
            return None
        return entry[1]

    def expire_access_tokens(self) -> None:
        """Every access token issued so far stops working now."""
        self._access = {token: (0.0, owner) for token, (_, owner) in self._access.items()}

    def valid_access_tokens(self) -> int:
        now = self._clock()
        return sum(1 for expires, _ in self._access.values() if now < expires)
