"""Client authentication: ``Authorization: Bearer <key>`` or ``x-api-key``, constant time.

It answers who the client is (a key name, never the key); it must not log keys.
"""

from __future__ import annotations

import hmac

from fastapi import Request

from trae2api.errors import AuthenticationFailed

ANONYMOUS = "anonymous"
# Where the request's key name is left for the access log and metrics (never the key).
CLIENT_SCOPE_KEY = "trae2api.client"


class ClientKeys:
    """The keys clients may present; each has a name safe for logs (``key-1``, ``key-2``…)."""

    def __init__(self, keys: list[str]) -> None:
        self._keys = [(f"key-{index}", key.encode()) for index, key in enumerate(keys, 1)]

    @classmethod
    def named(cls, pairs: list[tuple[str, str]]) -> ClientKeys:
        """Keys with their own names (``API_KEYS_FILE``)."""
        keys = cls([])
        keys._keys = [(name, key.encode()) for name, key in pairs]
        return keys

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def identify(self, presented: str | None) -> str | None:
        """The name of the matching key; every key is compared so timing reveals nothing."""
        if presented is None:
            return None
        candidate = presented.encode()
        found = None
        for name, key in self._keys:
            if hmac.compare_digest(candidate, key):
                found = name
        return found


def presented_key(request: Request) -> str | None:
    authorization = request.headers.get("authorization")
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return request.headers.get("x-api-key")


def identify(keys: ClientKeys, request: Request) -> str:
    """The client's key name (``anonymous`` when no keys are set), or ``AuthenticationFailed``."""
    if not keys.enabled:
        return ANONYMOUS
    presented = presented_key(request)
    name = keys.identify(presented)
    if name is None:
        message = (
            "Missing API key: send 'Authorization: Bearer <AUTH_TOKEN>'"
            if presented is None
            else "Incorrect API key provided"
        )
        raise AuthenticationFailed(message)
    return name
