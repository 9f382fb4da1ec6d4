"""The account's credentials through real servers: exchange, storage, restarts and re-login."""

from __future__ import annotations

import json
import secrets
import signal
import sqlite3
import stat
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path
from typing import Any

import openai
import pytest

from conftest import Gateway, GatewayProcess, free_port, gateway_env, sdk, wait_for
from trae2api.app import STORE_FILE
from trae2api.auth.credentials import fingerprint
from trae2api.auth.manager import OPERATOR_INSTRUCTIONS
from trae2api.testing import SimulatedTrae


def stored(data_dir: Path) -> dict[str, Any]:
    """The account row of the gateway's SQLite store, read with sqlite3 directly."""
    with closing(sqlite3.connect(data_dir / STORE_FILE)) as conn:
        conn.row_factory = sqlite3.Row
        row = conn.execute(
            "SELECT version, refresh_token, seed_fingerprint, access_token FROM account "
            "WHERE id = 1"
        ).fetchone()
    assert row is not None, "nothing is stored"
    return dict(row)


def stats(sim: SimulatedTrae) -> dict[str, Any]:
    return sim.control.stats()


def ask(client: openai.OpenAI, text: str = "hi") -> str:
    """One non-streaming chat; returns the reply text."""
    reply = client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": text}]
    )
    return reply.choices[0].message.content or ""


def log_events(path: Path) -> list[dict[str, Any]]:
    """The JSON lines of a gateway log (other lines, if any, are skipped)."""
    events = []
    for line in path.read_text().splitlines():
        if line.startswith("{"):
            events.append(json.loads(line))
    return events


def resumed_gateway(sim: SimulatedTrae, start_gateway: Any, **extra: Any) -> Gateway:
    """A gateway that resumes stored credentials it did not exchange itself.

    The first gateway does the initial exchange and stops; the second starts from the store.
    (A gateway does not exchange again within a minute of its own exchange, so tests of a later
    refresh start from a resumed one, as a long-running gateway would be.)
    """
    first = start_gateway(**extra)
    assert wait_for(lambda: stats(sim)["exchanges_ok"] == 1 and stats(sim)["model_lists"] >= 1)
    first.stop()
    second = start_gateway(**extra)
    assert wait_for(lambda: stats(sim)["model_lists"] >= 2)
    assert stats(sim)["exchanges_ok"] == 1
    return second


def process(sim: SimulatedTrae, tmp_path: Path, **extra: Any) -> GatewayProcess:
    env = gateway_env(sim, tmp_path / "data", **extra)
    return GatewayProcess(env=env, port=free_port(), log_path=tmp_path / "gateway.log")


@pytest.mark.slow
def test_first_start_exchanges_once_and_stores_the_new_token_privately(
    sim: SimulatedTrae, start_gateway: Any, tmp_path: Path
) -> None:
    """The first start exchanges once and the 0600 store holds the simulator's newest token."""
    start_gateway()
    assert wait_for(lambda: stats(sim)["exchanges_ok"] == 1)
    current = stats(sim)["current_refresh_token"]
    assert current != sim.account.refresh_token
    # The simulator counts the exchange as it answers; the gateway writes right after reading.
    assert wait_for(lambda: stored(tmp_path / "data")["refresh_token"] == current, timeout=2)
    row = stored(tmp_path / "data")
    assert row["seed_fingerprint"] == fingerprint(sim.account.refresh_token)
    assert row["version"] == 1
    assert row["access_token"]
    assert stat.S_IMODE((tmp_path / "data" / STORE_FILE).stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "data").stat().st_mode) == 0o700
    for side_file in (tmp_path / "data").glob(f"{STORE_FILE}-*"):
        assert stat.S_IMODE(side_file.stat().st_mode) == 0o600, side_file
    assert stats(sim)["exchanges_ok"] == 1
    assert stats(sim)["exchanges_rejected"] == 0


@pytest.mark.slow
def test_restart_with_the_burnt_env_token_resumes_without_an_exchange(
    sim: SimulatedTrae, tmp_path: Path
) -> None:
    """A restart with the same (now burnt) REFRESH_TOKEN uses the store and does not exchange."""
    gateway = process(sim, tmp_path).start()
    try:
        assert wait_for(lambda: stats(sim)["exchanges_ok"] == 1 and stats(sim)["model_lists"])
        gateway.stop()
        gateway.start()
        with sdk(gateway.url) as client:
            assert "You said: after restart" in ask(client, "after restart")
    finally:
        gateway.stop()
    assert stats(sim)["exchanges_ok"] == 1
    assert stats(sim)["exchanges_rejected"] == 0
    assert stats(sim)["auth_rejections"] == 0
    cases = [
        e.get("case") for e in log_events(gateway.log_path) if e["event"] == "credentials.loaded"
    ]
    assert cases == ["first_login", "resumed"]


@pytest.mark.slow
def test_rejected_access_token_is_refreshed_once_and_the_chat_retried(
    sim: SimulatedTrae, start_gateway: Any, tmp_path: Path
) -> None:
    """Upstream 401/1001 on an expired access token: one exchange, one retry, a normal answer."""
    gateway = resumed_gateway(sim, start_gateway)
    sim.control.expire_access()
    with gateway.client() as client:
        assert "You said: expired" in ask(client, "expired")
    after = stats(sim)
    assert after["exchanges_ok"] == 2
    assert after["auth_rejections"] == 1
    assert stored(tmp_path / "data")["refresh_token"] == after["current_refresh_token"]


@pytest.mark.slow
def test_concurrent_requests_on_an_expired_token_share_one_exchange(
    sim: SimulatedTrae, start_gateway: Any
) -> None:
    """Twenty simultaneous chats on an expired access token cause exactly one exchange."""
    gateway = resumed_gateway(sim, start_gateway)
    sim.control.configure(exchange_delay=0.3)
    sim.control.expire_access()
    barrier = threading.Barrier(20)

    with gateway.client() as client:

        def one(index: int) -> str:
            barrier.wait(timeout=10)
            return ask(client, f"request {index}")

        with ThreadPoolExecutor(max_workers=20) as pool:
            replies = list(pool.map(one, range(20)))
    assert [f"You said: request {i}" in reply for i, reply in enumerate(replies)] == [True] * 20
    after = stats(sim)
    assert after["exchanges_ok"] == 2
    assert after["exchanges_rejected"] == 0
    assert after["auth_rejections"] >= 1


@pytest.mark.slow
def test_a_different_refresh_token_in_env_is_a_new_login(
    sim: SimulatedTrae, start_gateway: Any, tmp_path: Path
) -> None:
    """A new REFRESH_TOKEN (the operator logged in again) replaces the stored, now dead one."""
    first = start_gateway()
    assert wait_for(lambda: stats(sim)["exchanges_ok"] == 1)
    first.stop()
    old_version = stored(tmp_path / "data")["version"]
    # The operator logs in to Trae again: the stored token is burnt, a new one is handed out.
    account = sim.account
    relogin = sim.state.exchange(account.client_id, stats(sim)["current_refresh_token"], "")
    new_token = relogin.refresh_token
    second = start_gateway(refresh_token=new_token)
    assert wait_for(lambda: stats(sim)["exchanges_ok"] == 3)
    with second.client() as client:
        assert "You said: new login" in ask(client, "new login")
    row = stored(tmp_path / "data")
    assert row["seed_fingerprint"] == fingerprint(new_token)
    assert row["version"] == old_version + 2
    assert row["refresh_token"] == stats(sim)["current_refresh_token"] != new_token
    assert stats(sim)["exchanges_rejected"] == 0


@pytest.mark.slow
def test_rejected_refresh_token_asks_the_operator_to_log_in_again_once(
    sim: SimulatedTrae, tmp_path: Path
) -> None:
    """A refresh token Trae never issued: 503 reauth_required, one operator instruction, no leak."""
    bogus = "never-issued-" + secrets.token_urlsafe(24)
    gateway = process(sim, tmp_path, REFRESH_TOKEN=bogus).start()
    try:
        assert wait_for(lambda: stats(sim)["exchanges_rejected"] == 1)
        errors: list[openai.APIStatusError] = []
        with sdk(gateway.url) as client:
            for _ in range(3):
                with pytest.raises(openai.APIStatusError) as caught:
                    ask(client)
                errors.append(caught.value)
            with pytest.raises(openai.APIStatusError) as listing:
                client.models.list()
            errors.append(listing.value)
    finally:
        gateway.stop()
    for error in errors:
        assert error.status_code == 503
        assert error.code == "reauth_required"
        assert isinstance(error.body, dict)
        assert error.body["code"] == "reauth_required"
        assert bogus not in error.response.text
        # Retry-After is not sent for reauth_required (a human must act); if added, it must be sane.
        retry_after = error.response.headers.get("retry-after")
        assert retry_after is None or int(retry_after) > 0
    # The rejected token is not presented again and again.
    assert stats(sim)["exchanges_rejected"] == 1
    log_text = gateway.log_path.read_text()
    assert log_text.count(OPERATOR_INSTRUCTIONS) == 1
    reauth = [
        e for e in log_events(gateway.log_path) if e["event"] == "credentials.reauth_required"
    ]
    assert len(reauth) == 1
    assert reauth[0]["instructions"] == OPERATOR_INSTRUCTIONS
    assert bogus not in log_text


@pytest.mark.slow
def test_background_refresh_exchanges_without_any_client_request(
    sim: SimulatedTrae, start_gateway: Any, tmp_path: Path
) -> None:
    """With a 6 s access token and a 1 s margin the gateway refreshes on its own before expiry."""
    sim.control.configure(access_ttl=6)
    gateway = resumed_gateway(sim, start_gateway, refresh_margin=1)
    assert gateway.app.state.runtime.deps.account.status()["refresh_count"] == 0
    assert wait_for(lambda: stats(sim)["exchanges_ok"] == 2, timeout=12)
    after = stats(sim)
    assert after["chats"] == 0
    assert after["auth_rejections"] == 0
    assert after["valid_access_tokens"] >= 1
    assert wait_for(
        lambda: stored(tmp_path / "data")["refresh_token"] == after["current_refresh_token"]
    )


@pytest.mark.slow
def test_sigkill_right_after_a_refresh_keeps_the_newest_token(
    sim: SimulatedTrae, start_gateway: Any, tmp_path: Path
) -> None:
    """A gateway killed right after a refresh restarts from the stored newest token and works."""
    seeder = start_gateway()  # the first login, in-thread: only its store is needed
    assert wait_for(lambda: stats(sim)["exchanges_ok"] == 1 and stats(sim)["model_lists"])
    seeder.stop()
    gateway = process(sim, tmp_path).start()
    try:
        assert wait_for(lambda: stats(sim)["model_lists"] >= 2)
        sim.control.expire_access()
        with sdk(gateway.url) as client:
            assert "You said: refresh" in ask(client, "refresh")
        gateway.stop(signal.SIGKILL)
        assert stats(sim)["exchanges_ok"] == 2
        assert stored(tmp_path / "data")["refresh_token"] == stats(sim)["current_refresh_token"]
        gateway.start()
        with sdk(gateway.url) as client:
            assert "You said: after kill" in ask(client, "after kill")
    finally:
        gateway.stop()
    after = stats(sim)
    assert after["exchanges_ok"] == 2
    assert after["exchanges_rejected"] == 0
    assert stored(tmp_path / "data")["refresh_token"] == after["current_refresh_token"]


@pytest.mark.slow
def test_short_lived_tokens_refresh_at_half_life(sim: SimulatedTrae, start_gateway: Any) -> None:
    """Tokens shorter-lived than REFRESH_MARGIN are renewed in the background at half-life."""
    sim.control.configure(access_ttl=2)
    gateway = start_gateway()
    assert wait_for(lambda: sim.control.stats()["exchanges_ok"] >= 3, timeout=6)
    completion = gateway.client().chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "still there?"}]
    )
    assert completion.choices[0].message.content == "Hello! You said: still there? (turn 0)"
    assert sim.control.stats()["auth_rejections"] == 0
