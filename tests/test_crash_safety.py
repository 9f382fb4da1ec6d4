"""SIGKILL at random moments while the gateway refreshes: the store never loses the account."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import REDIS_TEST_URL
from crashloop import CrashReport, crash_loop, redis_reader, sqlite_reader
from trae2api.testing import SimulatedTrae

KILLS = 10  # per store; scripts/crash-soak runs hundreds


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
    """Both stores, side by side: every kill leaves the newest token stored, or hit the window."""
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
        assert report.kills == report.chats_ok == KILLS
        assert report.exchanges > KILLS  # background refreshes ran, not only start-ups
        assert report.persist_ms, "no refresh was logged"
