"""A Redis for the tests: the one on 127.0.0.1:6379, else a private ``redis-server`` for the run.

Without either (no Redis answers and no ``redis-server`` on PATH), the Redis tests are skipped
with the reason ``REDIS.missing`` says; everything else runs.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

DEFAULT_URL = "redis://127.0.0.1:6379/11"


def answers(url: str) -> bool:
    """True when a Redis at ``url`` answers PING within a second."""
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


@dataclass
class TestRedis:
    """The Redis the run uses (``url``), or why there is none (``missing``)."""

    url: str = DEFAULT_URL
    missing: str = ""
    process: subprocess.Popen[bytes] | None = None
    workdir: Path | None = field(default=None, repr=False)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None


def provide(explicit: str | None) -> TestRedis:
    """``explicit`` (TRAE2API_TEST_REDIS) as given; else 127.0.0.1:6379; else a private one."""
    if explicit:
        return TestRedis(explicit, "" if answers(explicit) else f"no Redis answers at {explicit}")
    if answers(DEFAULT_URL):
        return TestRedis(DEFAULT_URL)
    server = shutil.which("redis-server")
    if server is None:
        return TestRedis(
            missing="no Redis answers on 127.0.0.1:6379 and redis-server is not installed "
            "(Debian: apt-get install redis-server)"
        )
    return _start(server)


def _start(server: str) -> TestRedis:
    workdir = Path(tempfile.mkdtemp(prefix="trae2api-test-redis-"))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    options = {"bind": "127.0.0.1", "port": str(port), "save": "", "appendonly": "no"}
    options |= {"dir": str(workdir), "logfile": str(workdir / "redis.log")}
    process = subprocess.Popen(
        [server, *(part for name, value in options.items() for part in (f"--{name}", value))],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    started = TestRedis(f"redis://127.0.0.1:{port}/11", "", process, workdir)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and process.poll() is None:
        if answers(started.url):
            return started
        time.sleep(0.05)
    started.stop()
    return TestRedis(missing=f"no Redis answers on 127.0.0.1:6379 and {server} did not start")
