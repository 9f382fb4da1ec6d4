"""Three gateway processes sharing one Redis: one exchange for all, and killed lock holders."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import openai
import psutil
import pytest
import redis

from conftest import (
    REDIS_TEST_URL,
    GatewayProcess,
    ask,
    ask_quietly,
    free_port,
    gateway_env,
    wait_for,
)
from crashloop import redis_reader
from trae2api.testing import SimulatedTrae

LOCK_TTL = 2.0


pytestmark = pytest.mark.slow


@pytest.fixture
def replicas(sim: SimulatedTrae, tmp_path: Path, redis_prefix: str) -> Iterator[Any]:
    """Starts N replicas on the test Redis (each with its own DATA_DIR), all at once."""
    started: list[GatewayProcess] = []

    def start(count: int = 3) -> list[GatewayProcess]:
        group = []
        for index in range(count):
            env = gateway_env(
                sim,
                tmp_path / f"data-{index}",
                REDIS_URL=REDIS_TEST_URL,
                REDIS_KEY_PREFIX=redis_prefix,
                REFRESH_LOCK_TTL=LOCK_TTL,
            )
            log = tmp_path / f"replica-{index}.log"
            group.append(GatewayProcess(env=env, port=free_port(), log_path=log))
        started.extend(group)
        with ThreadPoolExecutor(max_workers=count) as pool:
            list(pool.map(lambda gateway: gateway.start(), group))
        return group

    yield start
    for gateway in started:
        gateway.stop()


def lock_owner(prefix: str) -> str | None:
    """The refresh lock's owner token as stored in Redis, or None when free."""
    with redis.Redis.from_url(REDIS_TEST_URL, decode_responses=True) as client:
        owner: str | None = client.get(f"{prefix}refresh_lock")
    return owner


def test_replicas_starting_together_and_sixty_requests_share_one_exchange(
    sim: SimulatedTrae, replicas: Any, redis_prefix: str
) -> None:
    """Three replicas start at once, then 60 requests on expired tokens: one exchange each time."""
    group = replicas(3)
    assert wait_for(lambda: sim.control.stats()["exchanges_ok"] >= 1, timeout=10)
    time.sleep(0.5)
    assert sim.control.stats()["exchanges_ok"] == 1  # one first login for three processes
    # A replica that died holding the lock before presenting the token: the others wait for
    # the lock to expire, then exactly one of them exchanges.
    with redis.Redis.from_url(REDIS_TEST_URL) as client:
        client.set(f"{redis_prefix}refresh_lock", "ghost:999999:dead", px=1500)
    sim.control.configure(exchange_delay=0.5)
    sim.control.expire_access()
    barrier = threading.Barrier(60)

    def one(index: int) -> str:
        barrier.wait(timeout=10)
        return ask(group[index % 3].url, f"request {index}")

    with ThreadPoolExecutor(max_workers=60) as pool:
        replies = list(pool.map(one, range(60)))
    assert all(f"You said: request {i}" in reply for i, reply in enumerate(replies))
    stats = sim.control.stats()
    assert stats["exchanges_ok"] == 2
    assert stats["exchanges_rejected"] == 0
    assert redis_reader(REDIS_TEST_URL, redis_prefix)() == (2, stats["current_refresh_token"])


def _holder_mid_exchange(sim: SimulatedTrae, group: list[GatewayProcess], prefix: str) -> Any:
    """Expire the tokens and return the replica that holds the lock once Trae burnt the token."""
    assert wait_for(lambda: sim.control.stats()["exchanges_ok"] == 1, timeout=10)
    assert wait_for(lambda: lock_owner(prefix) is None, timeout=10)  # the first login is stored
    sim.control.configure(exchange_delay=3)
    sim.control.expire_access()
    doomed = threading.Thread(target=ask_quietly, args=(group[0].url,), daemon=True)
    doomed.start()
    assert wait_for(lambda: sim.control.stats()["exchanges_ok"] == 2, timeout=10)  # burnt
    # The answer is pending for exchange_delay and its holder keeps the lock all along; read
    # earlier, the lock may be a warming-up replica's brief hold (it re-reads and lets go).
    owner = lock_owner(prefix)
    assert owner is not None
    # Usually group[0], but a replica still warming up (its model list answered 401) may win.
    return next(g for g in group if g.process and str(g.process.pid) == owner.split(":")[1])


def test_killing_the_lock_holder_mid_exchange_loses_nothing(
    sim: SimulatedTrae, replicas: Any, redis_prefix: str
) -> None:
    """SIGKILL of the holder after Trae burnt the token: its rotation process stores the new
    token, the survivors adopt it, and nobody presents the burnt one."""
    group = replicas(3)
    holder = _holder_mid_exchange(sim, group, redis_prefix)
    holder.stop(signal.SIGKILL)
    survivors = [g for g in group if g is not holder]
    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = list(pool.map(_outcome, [g.url for g in survivors]))
    assert outcomes == [(200, None)] * 2
    stats = sim.control.stats()
    assert (stats["exchanges_ok"], stats["exchanges_rejected"]) == (2, 0)
    assert redis_reader(REDIS_TEST_URL, redis_prefix)() == (2, stats["current_refresh_token"])


def test_host_death_mid_exchange_costs_the_account_and_nothing_more(
    sim: SimulatedTrae, replicas: Any, redis_prefix: str
) -> None:
    """The holder and its rotation process both killed (the host dies) after Trae burnt the
    token: survivors wait out the lock and ask for a re-login; nobody overwrites the store."""
    group = replicas(3)
    holder = _holder_mid_exchange(sim, group, redis_prefix)
    assert holder.process is not None
    rotation = [
        child
        for child in psutil.Process(holder.process.pid).children()
        if "trae2api.process.rotator" in " ".join(child.cmdline())
    ]
    assert len(rotation) == 1
    rotation[0].kill()
    holder.stop(signal.SIGKILL)
    killed_at = time.monotonic()
    sim.control.configure(exchange_delay=0)
    survivors = [g for g in group if g is not holder]
    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = list(pool.map(_outcome, [g.url for g in survivors]))
    assert outcomes == [(503, "reauth_required")] * 2
    stats = sim.control.stats()
    assert stats["exchanges_ok"] == 2  # nobody else got a new token...
    assert 1 <= stats["exchanges_rejected"] <= 2  # ...and the burnt one was tried once each
    assert time.monotonic() - killed_at < LOCK_TTL + 10
    version, stored = redis_reader(REDIS_TEST_URL, redis_prefix)()
    assert version == 1  # the store still holds the last durable token: not overwritten
    assert stored != stats["current_refresh_token"]  # the newest died with the host


def _outcome(url: str) -> tuple[int, str | None]:
    try:
        ask(url, "after the kill")
    except openai.APIStatusError as error:
        return error.status_code, error.code
    return 200, None
