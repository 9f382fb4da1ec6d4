"""The benchmark's two child processes (simulator and gateway): start, readiness, stop.

Also what ``/proc`` tells about them: CPU time per process and for the machine, and RSS.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import select
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx

try:
    from trae2api.config import Settings

    SETTINGS: frozenset[str] = frozenset(name.upper() for name in Settings.model_fields)
except ImportError:  # a tree laid out differently: the benchmark's own settings still win
    SETTINGS = frozenset()

ACCOUNT_KEYS = ("APP_ID", "CLIENT_ID", "USER_ID", "REFRESH_TOKEN", "BASE_URL", "REFRESH_TOKEN_URL")
START_TIMEOUT = 30.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- child processes -------------------------------------------------------------------------


@dataclass
class Services:
    """The two running children and where they listen."""

    sim: subprocess.Popen[bytes]
    gateway: subprocess.Popen[bytes]
    sim_url: str
    gateway_url: str
    auth_token: str
    log_dir: Path
    dialect: str  # the upstream dialect the gateway is told to speak

    @property
    def pids(self) -> dict[str, int]:
        return {"simulator": self.sim.pid, "gateway": self.gateway.pid, "client": os.getpid()}


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def read_account(proc: subprocess.Popen[bytes], timeout: float = START_TIMEOUT) -> dict[str, str]:
    """The ``KEY=value`` lines the simulator prints once it is bound."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    account: dict[str, str] = {}
    while not set(ACCOUNT_KEYS) <= account.keys():
        ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            raise RuntimeError("the simulator did not print its account in time")
        line = proc.stdout.readline().decode()
        if not line:
            raise RuntimeError(f"the simulator exited with status {proc.wait()}")
        key, sep, value = line.strip().partition("=")
        if sep:
            account[key] = value
    return account


def start_simulator(log: IO[bytes]) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    command = [sys.executable, "-m", "trae2api.testing", "--host", "127.0.0.1", "--port", "0"]
    # bufsize=0: readline() then reads the pipe byte by byte, so select() stays truthful.
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, bufsize=0)
    try:
        return proc, read_account(proc)
    except BaseException:
        stop(proc)
        raise


def gateway_env(
    account: dict[str, str], port: int, data_dir: Path, token: str, dialect: str
) -> dict[str, str]:
    """The inherited environment minus any trae2api setting, plus the benchmark's own."""
    env = {key: value for key, value in os.environ.items() if key.upper() not in SETTINGS}
    env.update({key: account[key] for key in ACCOUNT_KEYS})
    env.update(
        HOST="127.0.0.1",
        PORT=str(port),
        DATA_DIR=str(data_dir),
        AUTH_TOKEN=token,
        LOG_LEVEL="WARNING",
        UPSTREAM_DIALECT=dialect,
    )
    return env


def start_gateway(env: dict[str, str], log: IO[bytes], cwd: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "trae2api", "serve", "--env-file", "/dev/null"]
    return subprocess.Popen(command, env=env, stdout=log, stderr=log, cwd=cwd)


def wait_ready(
    base_url: str, proc: subprocess.Popen[bytes], timeout: float = START_TIMEOUT
) -> None:
    """Poll ``/readyz`` (then ``/healthz``) until it answers 200."""
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=5.0, trust_env=False) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"the gateway exited with status {proc.returncode}")
            for path in ("/readyz", "/healthz"):
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(base_url + path).status_code == 200 and path == "/readyz":
                        return
            time.sleep(0.1)
    raise RuntimeError(f"the gateway at {base_url} was not ready within {timeout:g} s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 10 s; only this one child."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


@contextlib.contextmanager
def services(dialect: str = "agent", source: Path | None = None) -> Iterator[Services]:
    """Start the simulator and the gateway; always stop both (and delete the temp dir).

    ``source``: a checkout whose ``src/`` the gateway imports first (this tree's by default)."""
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="trae2api-bench-")))
        sim_log = stack.enter_context((tmp / "simulator.log").open("wb"))
        gw_log = stack.enter_context((tmp / "gateway.log").open("wb"))
        sim, account = start_simulator(sim_log)
        stack.callback(stop, sim)
        # Dialect §7: each agent chat spends an ide credit, 1000 by default; a run makes far
        # more chats than that, and a 4008 would count as an error.
        httpx.post(
            account["BASE_URL"] + "/_sim/config", json={"ide_credits": 10**9}, trust_env=False
        ).raise_for_status()
        port, token = free_port(), "bench-" + secrets.token_hex(16)
        env = gateway_env(account, port, tmp / "data", token, dialect)
        if source is not None:
            paths = [str(source / "src"), env.get("PYTHONPATH", "")]
            env["PYTHONPATH"] = os.pathsep.join(path for path in paths if path)
        gateway = start_gateway(env, gw_log, tmp)
        stack.callback(stop, gateway)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_ready(url, gateway)
        except RuntimeError:
            sys.stderr.write((tmp / "gateway.log").read_text(errors="replace")[-3000:])
            raise
        yield Services(sim, gateway, account["BASE_URL"], url, token, tmp, dialect)


# -- process figures -------------------------------------------------------------------------


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """User + system CPU time of each process so far (all threads), and of the whole machine
    (``machine``: every busy jiffy of ``/proc/stat``, whoever spent it)."""
    times = {}
    for name, pid in pids.items():
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
        times[name] = (int(fields[11]) + int(fields[12])) / CLK_TCK
    jiffies = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    times["machine"] = (sum(jiffies[:8]) - jiffies[3] - jiffies[4]) / CLK_TCK  # minus idle, iowait
    return times


class CpuMeter:
    """CPU used by each process since ``start()``, and by the rest of the machine (``other``:
    other jobs sharing the cores skew every figure, so it is reported alongside)."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.before = cpu_seconds(pids)
        self.started = time.perf_counter()

    def start(self) -> None:
        self.before, self.started = cpu_seconds(self.pids), time.perf_counter()

    def read(self) -> dict[str, float]:
        """Seconds of CPU per process since ``start()``, plus ``wall``."""
        now = cpu_seconds(self.pids)
        used = {name: now[name] - self.before[name] for name in now}
        used["other"] = max(0.0, used.pop("machine") - sum(used.values()))
        used["wall"] = time.perf_counter() - self.started
        return used


def cpu_percent(used: dict[str, float]) -> dict[str, int]:
    """CPU per process as a percentage of one core over the wall time."""
    wall = max(used["wall"], 1e-9)
    return {name: round(100 * value / wall) for name, value in used.items() if name != "wall"}


def memory_mb(pid: int) -> dict[str, float]:
    """``VmRSS`` (now) and ``VmHWM`` (peak) in MB, from ``/proc/<pid>/status``."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = round(int(value.split()[0]) / 1024, 1)
    return {"rss_mb": found["VmRSS"], "peak_rss_mb": found["VmHWM"]}
