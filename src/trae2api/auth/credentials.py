"""The account's credentials and device identity as values; no I/O and no clock of its own.

Times are epoch seconds (floats). Nothing here may be logged whole: see ``redacted()``.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field, replace


def fingerprint(refresh_token: str) -> str:
    """A stable, non-reversible name for a refresh token (to notice a new login in the env)."""
    return hashlib.sha256(refresh_token.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class DeviceIdentity:
    """The device headers of protocol §3, generated once per account and never rotated."""

    device_id: str  # decimal digits
    machine_id: str  # 64 lowercase hex
    cpu: str
    brand: str
    device_type: str
    system_type: str  # "Windows" | "macOS" | "Linux", also used in the chat body

    @classmethod
    def generate(cls) -> DeviceIdentity:
        return cls(
            device_id=str(secrets.randbelow(9 * 10**18) + 10**18),
            machine_id=secrets.token_hex(32),
            cpu="Intel(R) Core(TM) i7-10700 CPU @ 2.90GHz",
            brand="Dell Inc.",
            device_type="windows",
            system_type="Windows",
        )


@dataclass(frozen=True)
class ExchangeResult:
    """What a successful token exchange (protocol §2) returned, times in epoch seconds."""

    access_token: str = field(repr=False)
    access_expires_at: float
    # None: the upstream did not rotate the refresh token; keep the old one.
    refresh_token: str | None = field(repr=False)
    refresh_expires_at: float | None


@dataclass(frozen=True)
class Credentials:
    """The newest known credentials of the account; ``version`` grows by one on every write."""

    refresh_token: str = field(repr=False)
    seed_fingerprint: str  # fingerprint of the REFRESH_TOKEN that started this login
    version: int = 0
    refresh_expires_at: float | None = None
    access_token: str | None = field(default=None, repr=False)
    access_expires_at: float | None = None

    def access_valid(self, now: float, margin: float = 0.0) -> bool:
        """True when the access token exists and lives at least ``margin`` seconds more."""
        if self.access_token is None or self.access_expires_at is None:
            return False
        return self.access_expires_at - margin > now

    def after_exchange(self, result: ExchangeResult) -> Credentials:
        """The credentials that follow a successful exchange (the old refresh token is burnt)."""
        return replace(
            self,
            version=self.version + 1,
            refresh_token=result.refresh_token or self.refresh_token,
            refresh_expires_at=(
                result.refresh_expires_at if result.refresh_token else self.refresh_expires_at
            ),
            access_token=result.access_token,
            access_expires_at=result.access_expires_at,
        )

    def redacted(self) -> dict[str, object]:
        """A view that is safe for logs and the status page."""
        return {
            "version": self.version,
            "refresh_expires_at": self.refresh_expires_at,
            "access_expires_at": self.access_expires_at,
            "has_access_token": self.access_token is not None,
        }
