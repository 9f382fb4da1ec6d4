"""``SecretRegistry``: registered values, and the password of a Redis URL, never survive a scrub."""

from __future__ import annotations

import pytest

from trae2api.log import REDACTED, SecretRegistry


@pytest.mark.parametrize(
    ("url", "text", "expected"),
    [
        (
            "redis://:hunter2-long-password@redis:6379/0",
            "AUTH failed for hunter2-long-password",
            f"AUTH failed for {REDACTED}",
        ),
        (
            "rediss://app:s3cret-passphrase@cache.example:6380",
            "s3cret-passphrase at cache.example",
            f"{REDACTED} at cache.example",
        ),
        ("redis://redis:6379/0", "redis:6379 refused", "redis:6379 refused"),
        (None, "nothing to hide here", "nothing to hide here"),
    ],
)
def test_url_passwords_are_scrubbed(url: str | None, text: str, expected: str) -> None:
    """A URL's password is scrubbed from text; a URL without one adds nothing."""
    registry = SecretRegistry()
    registry.add_url_password(url)
    assert registry.scrub(text) == expected


def test_short_values_are_not_registered() -> None:
    """Values under 8 characters would redact ordinary words, so they are skipped."""
    registry = SecretRegistry()
    registry.add("abc", None, "long-enough-secret")
    assert registry.scrub("abc long-enough-secret") == f"abc {REDACTED}"
