"""When the account's access token is due for a refresh: pure arithmetic on credentials.

No I/O, no clock of its own (callers pass ``now``) and no logging; ``CredentialManager`` asks
it and tells it when an exchange happened.
"""

from __future__ import annotations

from trae2api.auth.credentials import Credentials


class RefreshSchedule:
    """A refresh ``margin`` before expiry, never sooner than ``min_interval`` after an exchange."""

    def __init__(self, margin: float, min_interval: float) -> None:
        self.margin = margin
        self.min_interval = min_interval
        self._exchanged_at: float | None = None
        self._exchanged_version: int | None = None

    def exchanged(self, at: float, version: int) -> None:
        """Credentials of ``version`` were obtained by an exchange at ``at``."""
        self._exchanged_at, self._exchanged_version = at, version

    def exchanged_at(self, creds: Credentials) -> float | None:
        """When ``creds`` came from an exchange of ours, if they did."""
        return self._exchanged_at if self._exchanged_version == creds.version else None

    def due_at(self, creds: Credentials) -> float:
        """When ``creds`` should be refreshed (epoch seconds; -inf for "now")."""
        if creds.access_token is None or creds.access_expires_at is None:
            return float("-inf")
        due = creds.access_expires_at - self.margin
        if creds.refresh_expires_at is not None:
            due = min(due, creds.refresh_expires_at - self.margin)
        exchanged_at = self.exchanged_at(creds)
        if exchanged_at is not None:
            # A token we got moments ago that already looks due means the clocks disagree (or
            # the lifetime is shorter than the margin); another exchange would not fix that
            # and would rotate the refresh token on every request.
            # Short-lived tokens (shorter than the margin) are refreshed at half-life instead.
            lifetime = creds.access_expires_at - exchanged_at
            due = max(due, exchanged_at + min(self.min_interval, lifetime / 2))
        return due

    def needs_refresh(self, creds: Credentials, now: float) -> bool:
        return now >= self.due_at(creds)
