"""The crash loop shared by ``test_crash_safety.py`` and ``scripts/crash-soak``.

A gateway process refreshes fast-expiring tokens against the simulator, is SIGKILLed at seeded
random moments and restarted on the same store with the same (burnt) REFRESH_TOKEN. After every
kill the store is read directly (until it settles) and compared with the simulator's newest
refresh token:

- ``ok``: the stored token is the newest one (every exchange the gateway made is stored). A kill
  that landed while a rotation was in flight counts as ``rescued`` when the detached rotation
  process (``trae2api.process.rotator``) finished the write after the gateway died;
- ``window``: exactly one exchange is not stored: Trae burnt the presented token and its answer
  was never written. With the rotation process surviving the gateway this must not happen (it
  would take the death of the whole host or container); the loop logs the operator in again (a
  new REFRESH_TOKEN) and goes on, and the tests count it as a failure;
- ``lost``: anything else, a bug.
"""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import time
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import openai

from conftest import GatewayProcess, ask, free_port, gateway_env
from trae2api.app import STORE_FILE
from trae2api.testing import SimulatedTrae

# The simulator's access tokens live 1 s and the gateway refreshes them at half-life (its
# background loop wakes at most once a second): about one exchange a second, each answered after
# a random 0-80 ms (the upstream part of the window).
FAST_TOKENS = {"REFRESH_MARGIN": "0.5", "REFRESH_LOCK_TTL": "1", "REFRESH_LOCK_WAIT": "10"}
ACCESS_TTL = 1.0
MAX_EXCHANGE_DELAY = 0.08
# How long a rotation process that outlived the gateway may take to finish: start-up, the
# exchange and the write (its lock lease is 1 s here).
SETTLE_TIMEOUT = 5.0


class StoreReader(Protocol):
    """Reads ``(version, refresh_token)`` of the stored account without trae2api's code."""

    def __call__(self) -> tuple[int, str]: ...


def sqlite_reader(data_dir: Path) -> StoreReader:
    def read() -> tuple[int, str]:
        with closing(sqlite3.connect(data_dir / STORE_FILE)) as conn:
            row = conn.execute("SELECT version, refresh_token FROM account WHERE id = 1").fetchone()
        return int(row[0]), str(row[1])

    return read


def redis_reader(url: str, prefix: str) -> StoreReader:
    import redis

    def read() -> tuple[int, str]:
        with redis.Redis.from_url(url, decode_responses=True) as client:
            creds = json.loads(client.hget(f"{prefix}account", "credentials"))
        return int(creds["version"]), str(creds["refresh_token"])

    return read


@dataclass
class CrashReport:
    """What the loop saw; ``lost`` must be zero."""

    store: str
    kills: int = 0
    rescued: int = 0
    window_hits: int = 0
    lost: int = 0
    exchanges: int = 0
    chats_ok: int = 0
    persist_ms: list[float] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        persist = sorted(self.persist_ms) or [0.0]
        return (
            f"{self.store}: {self.kills} kills, {self.exchanges} exchanges, "
            f"{self.rescued} rotations finished after the kill, "
            f"{self.window_hits} window hits, {self.lost} lost tokens, "
            f"{self.chats_ok} chats after restart ok; response-to-durable-write "
            f"median {persist[len(persist) // 2]:.2f} ms, max {persist[-1]:.2f} ms"
        )


@dataclass
class _Books:
    """Exchanges the gateway made vs versions it stored.

    A re-login is one exchange made by the loop and one stored version without an exchange; a
    window hit is one gateway exchange that will never be stored.
    """

    manual_exchanges: int = 0
    login_versions: int = 0
    never_stored: int = 0


def crash_loop(
    sim: SimulatedTrae,
    *,
    store: str,
    read_store: StoreReader,
    work_dir: Path,
    kills: int,
    seed: int,
    uptime: tuple[float, float] = (0.2, 2.0),
    **env: str,
) -> CrashReport:
    """Start, chat, wait a random moment, SIGKILL, check the store; ``kills`` times."""
    rng = random.Random(seed)
    sim.control.configure(access_ttl=ACCESS_TTL)
    environment = gateway_env(sim, work_dir / "data", **FAST_TOKENS, **env)
    log_path = work_dir / f"gateway-{store}.log"
    gateway = GatewayProcess(env=environment, port=free_port(), log_path=log_path)
    report, books = CrashReport(store), _Books()
    for _ in range(kills):
        sim.control.configure(exchange_delay=rng.uniform(0, MAX_EXCHANGE_DELAY))
        gateway.start()
        if _chat_ok(gateway.url):
            report.chats_ok += 1
        else:
            report.problems.append(f"kill {report.kills}: a chat after the restart failed")
        time.sleep(rng.uniform(*uptime))
        gateway.stop(signal.SIGKILL)
        report.kills += 1
        verdict = _settled(sim, read_store, books)
        if verdict != "ok":
            report.window_hits += verdict == "window"
            books.never_stored += verdict == "window"
            if verdict != "window":
                report.lost += 1
                report.problems.append(f"kill {report.kills}: {verdict}")
                break  # the books no longer balance; one failure is enough
            environment["REFRESH_TOKEN"] = _log_in_again(sim, books)
    report.exchanges = sim.control.stats()["exchanges_ok"] - books.manual_exchanges
    gateway.stop()
    report.persist_ms = _persist_times(log_path)
    report.rescued = log_path.read_text().count('"credentials.rotated_without_gateway"')
    return report


def _chat_ok(url: str) -> bool:
    try:
        return "You said: still there?" in ask(url, "still there?")
    except openai.APIError:
        return False


def _settled(sim: SimulatedTrae, read_store: StoreReader, books: _Books) -> str:
    """The verdict once the store stops changing: a rotation process may still be finishing."""
    time.sleep(0.05)  # an exchange request already on the wire still reaches the simulator
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while True:
        verdict = _check(sim, read_store, books)
        if verdict == "ok" or time.monotonic() > deadline:
            return verdict
        time.sleep(0.05)


def _check(sim: SimulatedTrae, read_store: StoreReader, books: _Books) -> str:
    version, token = read_store()
    stats = sim.control.stats()
    by_gateway = stats["exchanges_ok"] - books.manual_exchanges - books.never_stored
    unstored = by_gateway - (version - books.login_versions)
    current = stats["current_refresh_token"]
    if unstored == 0 and token == current:
        return "ok"
    if unstored == 1 and token != current:
        return "window"
    newest = "newest" if token == current else "not the newest"
    return f"stored version {version} ({newest}) but {unstored} exchange(s) unstored"


def _log_in_again(sim: SimulatedTrae, books: _Books) -> str:
    """What the operator does after a lost token: log in to Trae and hand over a new token."""
    account = sim.account
    fresh = sim.state.exchange(account.client_id, sim.control.stats()["current_refresh_token"], "")
    books.manual_exchanges += 1
    books.login_versions += 1  # the new login is stored as one more version
    assert fresh.refresh_token is not None
    return fresh.refresh_token


def _persist_times(log_path: Path) -> list[float]:
    times = []
    for line in log_path.read_text().splitlines():
        if line.startswith("{") and '"credentials.refreshed"' in line:
            event: dict[str, Any] = json.loads(line)
            times.append(float(event["persist_ms"]))
    return times
