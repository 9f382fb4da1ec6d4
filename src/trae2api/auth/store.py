"""What durable credential storage must promise; implementations live beside it.

This module only defines the contract (no I/O): see ``sqlite_store.SqliteStore``.
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

    async def close(self) -> None:
        """Release the store's resources; later calls are an error."""
        ...

    # A cross-process "refresh lock" (protocol §2: exchanges single-flight across processes that
    # share a store) is a later issue; compare_and_set only guarantees no stale overwrite.
