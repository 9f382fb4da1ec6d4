"""Client keys from API_KEYS_FILE (with SIGHUP reload) and per-key rate limits, local or Redis."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import openai
import pytest
import redis

from conftest import (
    REDIS_TEST_URL,
    GatewayProcess,
    free_port,
    gateway_env,
    key_works,
    sdk,
    wait_for,
)
from trae2api.errors import ConfigError
from trae2api.faces.keys import read_keys_file
from trae2api.testing import SimulatedTrae

KEY_A = "alpha-key-0123456789abcdef"
KEY_B = "beta-key-0123456789abcdef0"
SHORT = "tiny-key-1"
CHAT: dict[str, Any] = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize(
    ("content", "line", "reason"),
    [
        ("a: " + KEY_A + "\nno colon here\n", 2, "not of the form"),
        ("# c\n\nbad name!: " + KEY_A + "\n", 3, "the name must be"),
        ("a:\n", 1, "not of the form"),
        ("a: two words\n", 1, "whitespace"),
    ],
)
def test_a_malformed_keys_file_names_the_variable_and_line(
    tmp_path: Path, content: str, line: int, reason: str
) -> None:
    """Each malformed line is a ConfigError naming API_KEYS_FILE and the line, not the key."""
    path = tmp_path / "keys"
    path.write_text(content)
    with pytest.raises(ConfigError) as caught:
        read_keys_file(path)
    assert caught.value.variable == "API_KEYS_FILE"
    assert f"line {line}" in str(caught.value)
    assert reason in str(caught.value)
    assert KEY_A not in str(caught.value)


def test_duplicate_and_missing_files_are_config_errors(tmp_path: Path) -> None:
    """A missing or empty file, and a name used twice, are refused at start-up."""
    from trae2api.config import load_settings
    from trae2api.faces.keys import client_key_pairs

    path = tmp_path / "keys"
    for content, reason in [(None, "cannot read"), ("# only\n", "holds no keys")]:
        if content is not None:
            path.write_text(content)
        with pytest.raises(ConfigError, match=reason):
            read_keys_file(path)
    path.write_text(f"a: {KEY_A}\na: {KEY_B}\n")
    with pytest.raises(ConfigError, match="used twice"):
        client_key_pairs(load_settings(None, api_keys_file=path))


@pytest.mark.slow
def test_a_key_is_revoked_alone_by_sighup(sim: SimulatedTrae, tmp_path: Path) -> None:
    """Removing a line and sending SIGHUP revokes that key only; a broken file changes nothing."""
    keys = tmp_path / "keys"
    keys.write_text(f"alpha: {KEY_A}\nbeta: {KEY_B}\nshort: {SHORT}\n")
    env = gateway_env(sim, tmp_path / "data", AUTH_TOKEN="", API_KEYS_FILE=keys)
    gateway = GatewayProcess(env=env, port=free_port(), log_path=tmp_path / "gateway.log")
    gateway.start()
    try:
        assert gateway.process is not None
        assert all(key_works(gateway.url, key) for key in (KEY_A, KEY_B, SHORT))
        keys.write_text(f"alpha: {KEY_A}\n")
        gateway.process.send_signal(signal.SIGHUP)
        assert wait_for(lambda: not key_works(gateway.url, KEY_B))
        assert key_works(gateway.url, KEY_A)
        keys.write_text("alpha " + KEY_A + "\n")
        gateway.process.send_signal(signal.SIGHUP)
        assert wait_for(lambda: "client_keys_reload_failed" in gateway.log_path.read_text())
        assert key_works(gateway.url, KEY_A)
    finally:
        gateway.stop()
    log_text = gateway.log_path.read_text()
    assert '"client_key_short"' in log_text
    assert '"name": "short"' in log_text
    for key in (KEY_A, KEY_B, SHORT):
        assert key not in log_text


@pytest.mark.slow
def test_the_rate_limit_is_per_key_with_retry_after(start_gateway: Any) -> None:
    """Past RATE_LIMIT_BURST a key gets 429 rate_limit_exceeded with Retry-After; others don't."""
    gateway = start_gateway(auth_token=f"{KEY_A},{KEY_B}", rate_limit_rpm=6, rate_limit_burst=2)
    with sdk(gateway.url, KEY_A) as first, sdk(gateway.url, KEY_B) as second:
        first.chat.completions.create(**CHAT)
        first.models.list()
        with pytest.raises(openai.RateLimitError) as caught:
            first.chat.completions.create(**CHAT)
        assert second.models.list().data
    assert caught.value.status_code == 429
    assert caught.value.code == "rate_limit_exceeded"
    assert caught.value.type == "rate_limit_error"
    assert 1 <= int(caught.value.response.headers["retry-after"]) <= 10
    assert "RATE_LIMIT_RPM" in caught.value.message


@pytest.mark.slow
def test_replicas_share_buckets_through_redis(start_gateway: Any, redis_prefix: str) -> None:
    """With REDIS_TEST_URL two gateways draw from one bucket per key (an atomic Lua script)."""
    settings = {
        "auth_token": KEY_A,
        "rate_limit_rpm": 1,
        "rate_limit_burst": 3,
        "redis_url": REDIS_TEST_URL,
        "redis_key_prefix": redis_prefix,
    }
    one, two = start_gateway(**settings), start_gateway(**settings)
    with sdk(one.url, KEY_A) as first, sdk(two.url, KEY_A) as second:
        first.models.list()
        second.models.list()
        first.models.list()
        for client in (first, second):
            with pytest.raises(openai.RateLimitError):
                client.models.list()
    with redis.Redis.from_url(REDIS_TEST_URL) as client:
        bucket = f"{redis_prefix}ratelimit:key-1"
        assert client.exists(bucket)
        assert 0 < client.pttl(bucket) <= 200_000
