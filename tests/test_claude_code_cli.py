"""The real Claude Code CLI (``@anthropic-ai/claude-code`` from npm) against the gateway.

The CLI is installed once per session under ``TRAE2API_CLI_DIR`` (``.ci/run`` points it into its
work directory), else under pytest's temporary directory; ``TRAE2API_CLAUDE_CODE_VERSION`` pins
a version (default: the latest). The tests skip only when npm or its registry is unreachable.
It runs headless on loopback only, as ``docs/clients-observed.md`` §2.1 describes.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import orjson
import pytest

from conftest import CLIENT_KEY, Gateway, model_for
from npmkit import npm_binary
from trae2api.testing import SimulatedTrae

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(900),  # the first test also installs the CLI (about 250 MB)
]
PACKAGE = "@anthropic-ai/claude-code"


@pytest.fixture(scope="session")
def claude_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``claude`` binary, installed from npm into the CLI directory if it is not there."""
    return npm_binary(tmp_path_factory, PACKAGE, "claude", "TRAE2API_CLAUDE_CODE_VERSION")


def run_claude(binary: Path, gateway: Gateway, home: Path, model: str, prompt: str) -> Any:
    """``claude -p PROMPT --output-format json``, headless, against ``gateway``; its result."""
    home.mkdir(exist_ok=True)
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "TERM": "dumb",
        "ANTHROPIC_BASE_URL": gateway.url,
        "ANTHROPIC_API_KEY": CLIENT_KEY,
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "DISABLE_AUTOUPDATER": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "CLAUDE_CODE_MAX_RETRIES": "1",  # a failure is quick, not minutes of backoff
    }
    command = [str(binary), "-p", prompt, "--output-format", "json", "--model", model]
    done = subprocess.run(
        [*command, "--allowedTools", "Bash"],
        env=env,
        cwd=home,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, f"claude exited {done.returncode}: {done.stdout!r} {done.stderr!r}"
    return orjson.loads(done.stdout)


def test_plain_prompt(claude_bin: Path, gw: Gateway, dialect: str, tmp_path: Path) -> None:
    """Claude Code completes a plain prompt through the gateway on both dialects."""
    result = run_claude(claude_bin, gw, tmp_path / "home", model_for(dialect), "say hi")
    assert result["type"] == "result"
    assert result["is_error"] is False
    assert result["subtype"] == "success"
    assert result["result"].startswith("Hello! You said:")
    assert result["result"].endswith(")")
    assert "say hi" in result["result"]


def test_turn_running_bash(
    claude_bin: Path, gw: Gateway, dialect: str, sim: SimulatedTrae, tmp_path: Path
) -> None:
    """The model calls Bash, Claude Code runs it, and its output reaches Trae in the next turn."""
    kind = "call" if dialect == "agent" else "bridge-call"
    arguments = {"command": "echo tool-$((6*7))-ran", "description": "Print a marker"}
    prompt = f"Run the marker command. [sim:{kind} Bash {orjson.dumps(arguments).decode()}]"
    result = run_claude(claude_bin, gw, tmp_path / "home", model_for(dialect), prompt)
    assert result["is_error"] is False
    assert result["num_turns"] >= 2
    assert "Bash → tool-42-ran" in result["result"]
    sent = orjson.dumps(sim.control.last_chat()["body"]).decode()
    assert "tool-42-ran" in sent  # the command's output, which its text does not contain
