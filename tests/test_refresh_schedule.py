"""When an access token is due (auth/schedule.py): table-driven, no clock but the one passed."""

from __future__ import annotations

import math

import pytest

from trae2api.auth.credentials import Credentials
from trae2api.auth.schedule import RefreshSchedule

MARGIN, MIN_INTERVAL = 600.0, 60.0


def creds(
    access_expires_at: float | None, refresh_expires_at: float | None = None, version: int = 3
) -> Credentials:
    token = None if access_expires_at is None else "access"
    return Credentials(
        refresh_token="refresh",
        seed_fingerprint="seed",
        version=version,
        refresh_expires_at=refresh_expires_at,
        access_token=token,
        access_expires_at=access_expires_at,
    )


# id, credentials, an exchange of ours (at, version) or None, expected due time
CASES: list[tuple[str, Credentials, tuple[float, int] | None, float]] = [
    ("no access token: now", creds(None), None, -math.inf),
    ("margin before access expiry", creds(10_000.0), None, 9_400.0),
    ("refresh token ending first wins", creds(10_000.0, 5_000.0), None, 4_400.0),
    (
        "fresh exchange, clocks disagree: not before min_interval",
        creds(1_300.0),
        (1_000.0, 3),
        1_060.0,
    ),
    ("short-lived token: half its life", creds(1_080.0), (1_000.0, 3), 1_040.0),
    ("exchange of another version: plain margin", creds(1_300.0), (1_000.0, 2), 700.0),
]


@pytest.mark.parametrize(
    ("case", "credentials", "exchange", "due"), CASES, ids=[c[0] for c in CASES]
)
def test_due_at(
    case: str, credentials: Credentials, exchange: tuple[float, int] | None, due: float
) -> None:
    """Each case's credentials are due at the expected time."""
    schedule = RefreshSchedule(MARGIN, MIN_INTERVAL)
    if exchange is not None:
        schedule.exchanged(*exchange)
    assert schedule.due_at(credentials) == due


def test_needs_refresh_from_the_due_time_on() -> None:
    """A token needs a refresh from its due time on, not a moment before."""
    schedule = RefreshSchedule(MARGIN, MIN_INTERVAL)
    assert not schedule.needs_refresh(creds(10_000.0), 9_399.9)
    assert schedule.needs_refresh(creds(10_000.0), 9_400.0)


def test_exchanged_at_only_for_the_version_it_produced() -> None:
    """The exchange time is known for the credentials it produced, and no others."""
    schedule = RefreshSchedule(MARGIN, MIN_INTERVAL)
    schedule.exchanged(1_000.0, 4)
    assert schedule.exchanged_at(creds(2_000.0, version=4)) == 1_000.0
    assert schedule.exchanged_at(creds(2_000.0, version=5)) is None
