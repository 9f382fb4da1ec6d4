"""SIGKILL at random moments while the gateway refreshes: the store never loses the account."""

from __future__ import annotations

import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import (
    REDIS_TEST_URL,
    GatewayProcess,
    ask,
    ask_quietly,
    free_port,
    gateway_env,
    wait_for,
)
from crashloop import CrashReport, crash_loop, redis_reader, sqlite_reader
from trae2api.testing import SimulatedTrae

KILLS = 10  # per store; scripts/crash-soak runs hundreds


pytestmark = pytest.mark.slow


def sqlite_loop(sim: SimulatedTrae, work_dir: Path) -> CrashReport:
    """The crash loop on the default SQLite store."""
    return crash_loop(
        sim,
        store="sqlite",
        read_store=sqlite_reader(work_dir / "data"),
        work_dir=work_dir,
        kills=KILLS,
        seed=20250101,
    )


def redis_loop(sim: SimulatedTrae, work_dir: Path, prefix: str) -> CrashReport:
    """The crash loop on the Redis store (REDIS_URL)."""
    return crash_loop(
        sim,
        store="redis",
        read_store=redis_reader(REDIS_TEST_URL, prefix),
        work_dir=work_dir,
        kills=KILLS,
        seed=20250102,
        REDIS_URL=REDIS_TEST_URL,
        REDIS_KEY_PREFIX=prefix,
    )


@pytest.mark.timeout(120)
def test_random_kills_lose_no_token_with_sqlite_or_redis(
    sim: SimulatedTrae, tmp_path: Path, redis_prefix: str
) -> None:
    """Both stores, side by side: after every kill the store settles on the newest token."""
    (tmp_path / "sqlite").mkdir()
    (tmp_path / "redis").mkdir()
    with SimulatedTrae() as second_sim, ThreadPoolExecutor(max_workers=2) as pool:
        sqlite_run = pool.submit(sqlite_loop, sim, tmp_path / "sqlite")
        redis_run = pool.submit(redis_loop, second_sim, tmp_path / "redis", redis_prefix)
        reports = [sqlite_run.result(), redis_run.result()]
    for report in reports:
        print(report.summary())
    for report in reports:
        assert report.problems == []
        assert report.lost == 0
        assert report.window_hits == 0
        assert report.kills == report.chats_ok == KILLS
        assert report.exchanges > KILLS  # background refreshes ran, not only start-ups
        assert report.persist_ms, "no refresh was logged"


@pytest.mark.timeout(60)
def test_gateway_killed_while_trae_holds_the_answer_still_stores_it(
    sim: SimulatedTrae, tmp_path: Path
) -> None:
    """SIGKILL after Trae burnt the token: the rotation process stores the new one anyway."""
    read_store = sqlite_reader(tmp_path / "data")
    gateway = GatewayProcess(
        env=gateway_env(sim, tmp_path / "data"),
        port=free_port(),
        log_path=tmp_path / "gateway.log",
    ).start()
    assert wait_for(lambda: sim.control.stats()["exchanges_ok"] == 1, timeout=10)
    sim.control.configure(exchange_delay=2.0)
    sim.control.expire_access()
    asking = threading.Thread(target=ask_quietly, args=(gateway.url,), daemon=True)
    asking.start()
    assert wait_for(lambda: sim.control.stats()["exchanges_ok"] == 2, timeout=10)  # burnt
    assert read_store()[0] == 1  # the answer is still held by the simulator
    gateway.stop(signal.SIGKILL)
    sim.control.configure(exchange_delay=0)
    newest = sim.control.stats()["current_refresh_token"]
    assert wait_for(lambda: read_store() == (2, newest), timeout=10)
    # The rotation process logs this only after the write the line above waited for.
    log_path = tmp_path / "gateway.log"
    rescued = '"credentials.rotated_without_gateway"'
    assert wait_for(lambda: rescued in log_path.read_text(), timeout=10), log_path.read_text()
    gateway.start()
    reply = ask(gateway.url, "after the kill")
    gateway.stop()
    assert "You said: after the kill" in reply
    stats = sim.control.stats()
    assert (stats["exchanges_ok"], stats["exchanges_rejected"]) == (2, 0)
