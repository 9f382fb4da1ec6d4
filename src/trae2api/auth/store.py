"""What durable credential storage must promise; implementations live beside it.

This module only defines the contract (no I/O): see ``sqlite_store.SqliteStore`` (one host,
the default) and ``redis_store.RedisStore`` (replicas on several hosts).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from trae2api.auth.credentials import Credentials, DeviceIdentity


@dataclass(frozen=True)
class StoredAccount:
    """The one account a store holds: its newest credentials and its fixed device identity."""

    credentials: Credentials
    device: DeviceIdentity


class CredentialStore(Protocol):
    """Durable storage for one account's credentials, shared by every worker and replica.

    A write has returned only once it is durable (protocol §2: the rotated refresh token must be
    on disk before the new access token is used).
    """

    async def load(self) -> StoredAccount | None:
        """The stored account, or None when nothing was ever stored."""
        ...

    async def create(self, account: StoredAccount) -> None:
        """A (new) login: replace whatever is stored with ``account``."""
        ...

    async def compare_and_set(self, expected_version: int, new: Credentials) -> bool:
        """Write ``new`` only if the stored version is ``expected_version`` and ``new.version``
        is ``expected_version + 1``; False otherwise, so an older token never overwrites a newer.
        """
        ...

    async def acquire_refresh_lock(self, owner: str, ttl: float) -> bool:
        """Take the account's refresh lock for ``ttl`` seconds unless another owner holds an
        unexpired one (protocol §2: one exchange at a time across every process of the store).
        """
        ...

    async def renew_refresh_lock(self, owner: str, ttl: float) -> bool:
        """Extend the lock to ``ttl`` seconds from now if ``owner`` still holds it; else False."""
        ...

    async def release_refresh_lock(self, owner: str) -> None:
        """Drop the lock only if ``owner`` still holds it (compare-and-delete)."""
        ...

    async def close(self) -> None:
        """Release the store's resources; later calls are an error."""
        ...
