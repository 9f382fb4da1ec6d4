"""The rotation step: its wire codec (pure) and the detached rotation process, run for real."""

from __future__ import annotations

import dataclasses
import signal
import threading
import time
from pathlib import Path

import psutil
import pytest

from conftest import run_async, wait_for
from trae2api.auth.credentials import Credentials, DeviceIdentity, fingerprint
from trae2api.auth.rotation import (
    DetachedRotator,
    Rotation,
    RotationRequest,
    RotationSetup,
    decode_reply,
    decode_request,
    encode_reply,
    encode_request,
)
from trae2api.auth.sqlite_store import SqliteStore
from trae2api.auth.store import StoredAccount
from trae2api.errors import ApiError, ReauthRequired, UpstreamUnavailable
from trae2api.testing import SimulatedTrae

SETUP = RotationSetup(
    store="redis",
    exchange_url="https://trae.test",
    client_id="ono9krqynydwx5",
    user_id="",
    redis_url="redis://:password-SECRET@127.0.0.1:6379/3",
    redis_prefix="p:",
    connect_timeout=3.0,
    read_timeout=9.5,
    lock_ttl=1.0,
    log_level="DEBUG",
    log_format="json",
)
CURRENT = Credentials(
    refresh_token="rt-SECRET",
    seed_fingerprint="f" * 32,
    version=7,
    refresh_expires_at=1.9e9,
    access_token="at-SECRET",
    access_expires_at=1.8e9,
)
NEW = dataclasses.replace(CURRENT, version=8, refresh_token="rt2-SECRET", access_token="at2")


def test_request_round_trip() -> None:
    """A request decodes to exactly what was encoded."""
    request = RotationRequest(SETUP, CURRENT, "host:1:abc")
    assert decode_request(encode_request(request)) == request


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "JSONDecodeError"),
        (b'{"wire": 1, "setup"', "JSONDecodeError"),
        (b'{"wire": 2}', "wire version 2"),
        (b'{"wire": 1, "setup": {}}', "TypeError"),
        (b'{"wire": 1}', "KeyError"),
        (b"[1]", "TypeError"),
    ],
)
def test_bad_requests_are_refused_without_echo(data: bytes, reason: str) -> None:
    """A garbled request is a ValueError naming the problem, never echoing the input."""
    with pytest.raises(ValueError, match=reason) as caught:
        decode_request(data)
    assert "SECRET" not in str(caught.value)


@pytest.mark.parametrize(
    "rotation",
    [
        Rotation("stored", NEW, persist_ms=0.8),
        Rotation("lost_race"),
        Rotation("unsaved", NEW, error="disk full"),
    ],
)
def test_reply_round_trip(rotation: Rotation) -> None:
    """Every finished rotation decodes to itself."""
    assert decode_reply(encode_reply(rotation), 0) == rotation


@pytest.mark.parametrize(
    ("error", "kind", "status", "code", "text"),
    [
        (ReauthRequired("Trae refused (HTTP 400)"), ReauthRequired, 503, "reauth_required", "400"),
        (
            UpstreamUnavailable("exchange 500", code="upstream_unavailable"),
            UpstreamUnavailable,
            502,
            "upstream_unavailable",
            "exchange 500",
        ),
        (
            UpstreamUnavailable("slow", status=504, code="upstream_timeout"),
            UpstreamUnavailable,
            504,
            "upstream_timeout",
            "slow",
        ),
        (RuntimeError("boom"), UpstreamUnavailable, 502, "upstream_error", "RuntimeError: boom"),
    ],
)
def test_reported_errors_are_raised_again(
    error: Exception, kind: type[ApiError], status: int, code: str, text: str
) -> None:
    """An error the process reports is raised in the gateway with its status and code."""
    with pytest.raises(kind) as caught:
        decode_reply(encode_reply(error), 1)
    assert (caught.value.status, caught.value.code) == (status, code)
    assert text in caught.value.message


@pytest.mark.parametrize(
    ("data", "exit_code"),
    [(b"", -9), (b'{"outcome"', 1), (b"[]", 0), (b'{"no": "outcome"}', 0)],
)
def test_no_answer_is_an_unknown_outcome(data: bytes, exit_code: int) -> None:
    """A process that died or answered garbage is an unavailable upstream, never a rotation."""
    with pytest.raises(UpstreamUnavailable, match=f"exit code {exit_code}"):
        decode_reply(data, exit_code)


def test_out_of_range_status_falls_back_to_the_default() -> None:
    """A reported status outside 5xx is not trusted."""
    with pytest.raises(UpstreamUnavailable) as caught:
        decode_reply(b'{"outcome": "unavailable", "error": "x", "status": 200}', 0)
    assert caught.value.status == UpstreamUnavailable.status


def test_a_rotation_process_that_cannot_start_is_unavailable() -> None:
    """A missing interpreter is an UpstreamUnavailable (nothing was presented)."""
    rotator = DetachedRotator(
        SETUP, command=["/nonexistent/python", "-m", "trae2api.process.rotator"]
    )
    with pytest.raises(UpstreamUnavailable, match="could not start"):
        run_async(rotator.rotate(CURRENT, "owner"))


# -- the real process against the simulator ---------------------------------------------------


def _account(sim: SimulatedTrae, version: int = 0) -> Credentials:
    token = sim.account.refresh_token
    return Credentials(refresh_token=token, seed_fingerprint=fingerprint(token), version=version)


def _setup(sim: SimulatedTrae, path: Path) -> RotationSetup:
    return RotationSetup(
        store="sqlite",
        exchange_url=sim.url,
        client_id=sim.account.client_id,
        user_id=sim.account.user_id,
        sqlite_path=str(path),
        lock_ttl=1.0,
    )


async def _stored(path: Path, creds: Credentials | None = None) -> Credentials | None:
    store = SqliteStore(path)
    try:
        if creds is not None:
            await store.create(StoredAccount(creds, DeviceIdentity.generate()))
        account = await store.load()
    finally:
        await store.close()
    return account.credentials if account is not None else None


def test_detached_rotation_stores_the_new_token(sim: SimulatedTrae, tmp_path: Path) -> None:
    """The process exchanges once, stores version + 1, and reports what it stored."""
    path = tmp_path / "store.sqlite3"
    current = run_async(_stored(path, _account(sim)))
    assert current is not None
    rotation = run_async(DetachedRotator(_setup(sim, path)).rotate(current, "owner"))
    assert rotation.outcome == "stored"
    assert rotation.credentials is not None
    assert rotation.credentials.refresh_token == sim.control.stats()["current_refresh_token"]
    assert run_async(_stored(path)) == rotation.credentials
    assert rotation.credentials.version == 1


@pytest.mark.slow
def test_detached_rotation_reports_a_burnt_token(sim: SimulatedTrae, tmp_path: Path) -> None:
    """Presenting a used token raises ReauthRequired and leaves the store alone."""
    path = tmp_path / "store.sqlite3"
    current = run_async(_stored(path, _account(sim)))
    assert current is not None
    run_async(DetachedRotator(_setup(sim, path)).rotate(current, "owner"))
    with pytest.raises(ReauthRequired):
        run_async(DetachedRotator(_setup(sim, path)).rotate(current, "owner"))
    stored = run_async(_stored(path))
    assert stored is not None
    assert stored.version == 1


def test_detached_rotation_reports_a_lost_race(sim: SimulatedTrae, tmp_path: Path) -> None:
    """A store already past the presented version is not written: lost_race."""
    path = tmp_path / "store.sqlite3"
    run_async(_stored(path, _account(sim, version=5)))
    rotation = run_async(DetachedRotator(_setup(sim, path)).rotate(_account(sim, 4), "owner"))
    assert rotation == Rotation("lost_race")
    stored = run_async(_stored(path))
    assert stored is not None
    assert stored.version == 5


def test_detached_rotation_reports_an_upstream_failure(sim: SimulatedTrae, tmp_path: Path) -> None:
    """An exchange answered with HTML 500 is UpstreamUnavailable; nothing is written."""
    path = tmp_path / "store.sqlite3"
    current = run_async(_stored(path, _account(sim)))
    assert current is not None
    sim.control.fault("http 500", target="exchange")
    with pytest.raises(UpstreamUnavailable, match="HTTP 500"):
        run_async(DetachedRotator(_setup(sim, path)).rotate(current, "owner"))
    assert run_async(_stored(path)) == current


@pytest.mark.slow
@pytest.mark.timeout(30)
def test_termination_signals_do_not_cut_a_rotation(sim: SimulatedTrae, tmp_path: Path) -> None:
    """SIGTERM, SIGINT and SIGHUP reach the process mid-exchange: it still stores the token."""
    path = tmp_path / "store.sqlite3"
    current = run_async(_stored(path, _account(sim)))
    assert current is not None
    sim.control.configure(exchange_delay=1.5)
    outcome: list[Rotation] = []
    rotating = threading.Thread(
        target=lambda: outcome.append(
            run_async(DetachedRotator(_setup(sim, path)).rotate(current, "owner"))
        )
    )
    rotating.start()
    assert wait_for(lambda: sim.control.stats()["exchanges_ok"] == 1, timeout=10)
    children = [
        child
        for child in psutil.Process().children()
        if "trae2api.process.rotator" in " ".join(child.cmdline())
    ]
    assert len(children) == 1
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        children[0].send_signal(sig)
        time.sleep(0.05)
    rotating.join(timeout=20)
    assert [r.outcome for r in outcome] == ["stored"]
    stored = run_async(_stored(path))
    assert stored is not None
    assert stored.refresh_token == sim.control.stats()["current_refresh_token"]
