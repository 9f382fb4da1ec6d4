"""Which account a starting process holds: the stored one, a first login or a new login.

Pure: it compares the store with ``REFRESH_TOKEN`` and must not read, write or exchange anything
(``auth.manager`` writes the result under the refresh lock).
"""

from __future__ import annotations

from typing import Literal

from trae2api.auth.credentials import Credentials, DeviceIdentity, fingerprint
from trae2api.auth.store import StoredAccount
from trae2api.errors import ConfigError

LoginCase = Literal["first_login", "resumed", "new_login"]


def initial_account(stored: StoredAccount | None, seed: str) -> tuple[StoredAccount, LoginCase]:
    """The account to start from, given what the store holds and the ``REFRESH_TOKEN`` seed."""
    seed_fp = fingerprint(seed) if seed else None
    if stored is None:
        if seed_fp is None:
            raise ConfigError("REFRESH_TOKEN", "is empty and no credentials are stored yet")
        creds = Credentials(refresh_token=seed, seed_fingerprint=seed_fp)
        return StoredAccount(creds, DeviceIdentity.generate()), "first_login"
    if seed_fp is None or stored.credentials.seed_fingerprint == seed_fp:
        # The env still holds the original token, which is burnt: the store has the newest.
        return stored, "resumed"
    # A new REFRESH_TOKEN means the operator logged in again. The version keeps growing so a
    # worker still holding the old login can never win a compare_and_set.
    creds = Credentials(
        refresh_token=seed,
        seed_fingerprint=seed_fp,
        version=stored.credentials.version + 1,
    )
    return StoredAccount(creds, stored.device), "new_login"
