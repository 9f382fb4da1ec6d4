"""``serve --supervise`` (automatic as PID 1): signals reach the gateway, rotations outlive it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from conftest import (
    GatewayProcess,
    ask_quietly,
    free_port,
    gateway_env,
    key_works,
    sdk,
    wait_for,
)
from crashloop import sqlite_reader
from trae2api.testing import SimulatedTrae

KEY_A = "alpha-key-0123456789abcdef"
KEY_B = "beta-key-0123456789abcdef0"
# PID 1 of a new pid namespace, as in a container (unshare passes the exit status on).
PID_1 = ("unshare", "--pid", "--fork", "--kill-child")
HOW = pytest.mark.parametrize("how", ["--supervise", "pid 1"])
# Forks a grandchild in a session of its own (as the gateway starts a rotation), which writes
# "stored" after a while, then ends with the given status (a negative one is a signal death).
PARENT_OF_AN_ORPHAN = """
import os, subprocess, sys
write_later = "import sys, time; time.sleep(1); open(sys.argv[1], 'w').write('stored')"
quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}  # no pipe to wait on
subprocess.Popen([sys.executable, "-c", write_later, sys.argv[1]], start_new_session=True, **quiet)
status = int(sys.argv[2])
if status < 0:
    os.kill(os.getpid(), -status)
sys.exit(status)
"""


pytestmark = pytest.mark.slow


def cmdline(process: psutil.Process) -> str:
    try:
        return " ".join(process.cmdline())
    except psutil.Error:
        return ""


def gateway_child(supervisor_pid: int) -> psutil.Process:
    children = psutil.Process(supervisor_pid).children()
    gateways = [child for child in children if "trae2api serve" in cmdline(child)]
    assert len(gateways) == 1, [cmdline(child) for child in children]
    return gateways[0]


def pid_namespaces() -> bool:
    try:
        return subprocess.run([*PID_1, "true"], capture_output=True, check=False).returncode == 0
    except FileNotFoundError:
        return False


def start_supervised(gateway: GatewayProcess, how: str) -> psutil.Process:
    """Start ``gateway`` supervised ``how``; returns the supervisor process."""
    if how == "pid 1":
        if not pid_namespaces():
            pytest.skip("cannot create a pid namespace (unshare --pid needs root here)")
        gateway.start(prefix=PID_1)  # plain `serve`: being PID 1 makes it supervise
        assert gateway.process is not None
        (supervisor,) = psutil.Process(gateway.process.pid).children()
    else:
        gateway.start("--supervise")
        assert gateway.process is not None
        supervisor = psutil.Process(gateway.process.pid)
    assert "trae2api.process.supervisor" in cmdline(supervisor)
    return supervisor


@pytest.mark.timeout(60)
@HOW
def test_supervised_gateway_serves_reloads_on_sighup_and_stops_on_sigterm(
    sim: SimulatedTrae, tmp_path: Path, how: str
) -> None:
    """The supervisor serves chats through its child, passes SIGHUP on and exits 0 on SIGTERM."""
    keys = tmp_path / "keys"
    keys.write_text(f"alpha: {KEY_A}\n")
    env = gateway_env(sim, tmp_path / "data", AUTH_TOKEN="", API_KEYS_FILE=keys)
    gateway = GatewayProcess(env=env, port=free_port(), log_path=tmp_path / "gateway.log")
    supervisor = start_supervised(gateway, how)
    assert gateway.process is not None
    try:
        child = gateway_child(supervisor.pid)
        assert "--supervise" not in cmdline(child)
        with sdk(gateway.url, KEY_A) as client:
            reply = client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "supervised"}]
            )
        assert "You said: supervised" in (reply.choices[0].message.content or "")
        assert not key_works(gateway.url, KEY_B)
        keys.write_text(f"alpha: {KEY_A}\nbeta: {KEY_B}\n")
        supervisor.send_signal(signal.SIGHUP)
        assert wait_for(lambda: key_works(gateway.url, KEY_B))
        assert supervisor.is_running()
        asked = time.monotonic()
        supervisor.send_signal(signal.SIGTERM)
        assert gateway.process.wait(timeout=10) == 0
        assert time.monotonic() - asked < 5
        assert not child.is_running()
    finally:
        gateway.stop()
    assert '"Application shutdown complete."' in gateway.log_path.read_text()


@pytest.mark.timeout(60)
@HOW
def test_gateway_killed_under_the_supervisor_still_stores_the_rotation(
    sim: SimulatedTrae, tmp_path: Path, how: str
) -> None:
    """SIGKILL to the gateway child mid-exchange: the supervisor waits for the write, exits 137."""
    read_store = sqlite_reader(tmp_path / "data")
    env = gateway_env(sim, tmp_path / "data")
    gateway = GatewayProcess(env=env, port=free_port(), log_path=tmp_path / "gateway.log")
    supervisor = start_supervised(gateway, how)
    assert gateway.process is not None
    try:
        assert wait_for(lambda: sim.control.stats()["exchanges_ok"] == 1, timeout=10)
        sim.control.configure(exchange_delay=2.0)
        sim.control.expire_access()
        threading.Thread(target=ask_quietly, args=(gateway.url,), daemon=True).start()
        assert wait_for(lambda: sim.control.stats()["exchanges_ok"] == 2, timeout=10)  # burnt
        child = gateway_child(supervisor.pid)
        (rotator,) = [p for p in child.children() if "trae2api.process.rotator" in cmdline(p)]
        child.kill()
        sim.control.configure(exchange_delay=0)
        newest = sim.control.stats()["current_refresh_token"]
        # Re-parented to the supervisor, which is still there while the rotation writes.
        assert wait_for(lambda: rotator.ppid() == supervisor.pid, timeout=2)
        assert read_store()[0] == 1
        assert supervisor.is_running()
        assert gateway.process.wait(timeout=20) == 128 + signal.SIGKILL
        assert read_store() == (2, newest)  # at once: it exited only after the write
        assert not rotator.is_running()  # reaped, not a zombie
        assert not child.is_running()
    finally:
        gateway.stop()
    assert '"credentials.rotated_without_gateway"' in gateway.log_path.read_text()


@pytest.mark.timeout(60)
def test_a_config_error_under_the_supervisor_exits_2_naming_the_variable(tmp_path: Path) -> None:
    """Without APP_ID (legacy), ``serve --supervise`` exits 2 with the child's one-line message."""
    env = {
        "UPSTREAM_DIALECT": "legacy",  # APP_ID is required by the legacy dialect only
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "LANG": "C.UTF-8",
        "CLIENT_ID": "ono9krqynydwx5",
        "REFRESH_TOKEN": "rt-supervised-config-error",
        "DATA_DIR": str(tmp_path / "data"),
    }
    result = subprocess.run(
        [sys.executable, "-m", "trae2api", "serve", "--supervise", "--env-file", "/dev/null"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("trae2api: configuration error:")
    assert "APP_ID" in lines[0]


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("status", "reported"), [(3, 3), (-signal.SIGKILL, 137)])
def test_the_supervisor_outlives_orphans_and_reports_like_a_shell(
    tmp_path: Path, status: int, reported: int
) -> None:
    """It returns only after an orphaned grandchild ends, with 128+N for a death by signal N."""
    done = tmp_path / "done"
    child = [sys.executable, "-c", PARENT_OF_AN_ORPHAN, str(done), str(status)]
    result = subprocess.run(
        [sys.executable, "-m", "trae2api.process.supervisor", *child],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == reported, result.stderr
    assert done.read_text() == "stored"
    assert result.stderr == ""
