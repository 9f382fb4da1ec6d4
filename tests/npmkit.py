"""The real coding-agent CLIs from npm, installed once per session for the CLI tests.

The CLIs go under ``TRAE2API_CLI_DIR`` (``.ci/run`` points it into its work directory), else
under pytest's temporary directory. A test skips only when npm or its registry is unreachable.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest


def npm_binary(
    tmp_path_factory: pytest.TempPathFactory, package: str, binary: str, version_variable: str
) -> Path:
    """``binary`` of npm ``package`` (version from ``version_variable``, default the latest)."""
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip(f"npm is not installed: cannot fetch {package}")
    where = os.environ.get("TRAE2API_CLI_DIR")
    prefix = Path(where) if where else tmp_path_factory.mktemp("clis")
    path = prefix / "node_modules" / ".bin" / binary
    if path.exists():
        return path
    if problem := registry_problem(npm):
        pytest.skip(f"the npm registry is unreachable: {problem}")
    version = os.environ.get(version_variable, "latest")
    options = ["--prefix", str(prefix), "--no-audit", "--no-fund", "--loglevel=error"]
    install = subprocess.run(
        [npm, "install", *options, f"{package}@{version}"],
        capture_output=True,
        text=True,
        timeout=800,
        check=False,
    )
    assert install.returncode == 0, f"npm install {package} failed: {install.stderr[-2000:]}"
    assert path.exists(), f"npm installed {package} but {path} is missing"
    return path


def registry_problem(npm: str) -> str | None:
    """Why ``npm ping`` fails (no retries, 20 s at most), or None when the registry answers."""
    command = [npm, "ping", "--fetch-retries=0", "--fetch-timeout=15000"]
    try:
        ping = subprocess.run(command, capture_output=True, text=True, timeout=20, check=False)
    except subprocess.TimeoutExpired:
        return "npm ping did not answer within 20 s"
    if ping.returncode == 0:
        return None
    reasons = [
        line for line in ping.stderr.splitlines() if "FetchError" in line or " code " in line
    ]
    return "; ".join(reasons)[:300] or "npm ping failed"
