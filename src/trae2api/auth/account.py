"""What the use cases need from the account: a device identity and valid access tokens."""

from __future__ import annotations

from typing import Protocol

from trae2api.auth.credentials import DeviceIdentity


class Account(Protocol):
    """Implemented by ``CredentialManager``; chat and the catalogue depend only on this."""

    @property
    def device(self) -> DeviceIdentity: ...

    async def access_token(self) -> str: ...

    async def refresh_after_rejection(self, rejected_access_token: str) -> str: ...
