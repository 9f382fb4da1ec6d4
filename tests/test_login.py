"""``initial_account``: which account a start-up holds, for every store/seed combination."""

from __future__ import annotations

import pytest

from trae2api.auth.credentials import Credentials, DeviceIdentity, fingerprint
from trae2api.auth.login import initial_account
from trae2api.auth.store import StoredAccount
from trae2api.errors import ConfigError

SEED = "seed-SECRET"
DEVICE = DeviceIdentity.generate()
STORED = StoredAccount(
    Credentials(refresh_token="rotated-SECRET", seed_fingerprint=fingerprint(SEED), version=4),
    DEVICE,
)


@pytest.mark.parametrize(
    ("stored", "seed", "case", "refresh_token", "version"),
    [
        (None, SEED, "first_login", SEED, 0),
        (STORED, SEED, "resumed", "rotated-SECRET", 4),
        (STORED, "", "resumed", "rotated-SECRET", 4),
        (STORED, "new-seed-SECRET", "new_login", "new-seed-SECRET", 5),
    ],
)
def test_cases(
    stored: StoredAccount | None, seed: str, case: str, refresh_token: str, version: int
) -> None:
    """Each combination gives its case, token and version; a stored device is never replaced."""
    account, got = initial_account(stored, seed)
    assert got == case
    assert (account.credentials.refresh_token, account.credentials.version) == (
        refresh_token,
        version,
    )
    assert account.credentials.seed_fingerprint == (
        fingerprint(seed) if seed else STORED.credentials.seed_fingerprint
    )
    if stored is not None:
        assert account.device == DEVICE


def test_nothing_stored_and_no_seed_is_a_config_error() -> None:
    """An empty store and an empty REFRESH_TOKEN name the variable to set."""
    with pytest.raises(ConfigError, match="REFRESH_TOKEN"):
        initial_account(None, "")
