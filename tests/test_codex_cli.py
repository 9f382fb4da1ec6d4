"""The real Codex CLI (``@openai/codex`` from npm) against the gateway's Responses API.

The CLI is installed once per session under ``TRAE2API_CLI_DIR`` (``.ci/run`` points it into its
work directory), else under pytest's temporary directory; ``TRAE2API_CODEX_VERSION`` pins a
version (default: the latest). The tests skip only when npm or its registry is unreachable.
It runs headless on loopback only, as ``docs/clients-observed.md`` §3.1 describes.
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

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]  # the first test installs the CLI
PACKAGE = "@openai/codex"


@pytest.fixture(scope="session")
def codex_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``codex`` binary, installed from npm into the CLI directory if it is not there."""
    return npm_binary(tmp_path_factory, PACKAGE, "codex", "TRAE2API_CODEX_VERSION")


def run_codex(binary: Path, gateway: Gateway, home: Path, model: str, prompt: str) -> list[Any]:
    """``codex exec --json PROMPT``, headless, against ``gateway``; its JSONL events."""
    home.mkdir(exist_ok=True)
    provider = (
        f'{{name="trae",base_url="{gateway.url}/v1",wire_api="responses",env_key="TRAE_API_KEY",'
        "request_max_retries=0,stream_max_retries=0,stream_idle_timeout_ms=20000}"
    )
    settings = [
        f"model={model}",
        "model_provider=trae",
        f"model_providers.trae={provider}",
        "analytics.enabled=false",
        "features.plugins=false",
        "check_for_update_on_startup=false",
    ]
    command = [str(binary), "exec", "--skip-git-repo-check", "--ephemeral", "--json"]
    command += ["--sandbox", "workspace-write"]
    for setting in settings:
        command += ["-c", setting]
    done = subprocess.run(
        [*command, prompt],
        env={"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "TRAE_API_KEY": CLIENT_KEY},
        cwd=home,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, f"codex exited {done.returncode}: {done.stdout!r} {done.stderr!r}"
    return [orjson.loads(line) for line in done.stdout.splitlines() if line.startswith(b"{")]


def _items(events: list[Any], kind: str) -> list[dict[str, Any]]:
    return [
        event["item"]
        for event in events
        if event.get("type") == "item.completed" and event["item"].get("type") == kind
    ]


def test_plain_prompt(codex_bin: Path, gw: Gateway, dialect: str, tmp_path: Path) -> None:
    """Codex completes a plain prompt through the gateway on both dialects."""
    events = run_codex(codex_bin, gw, tmp_path / "home", model_for(dialect), "say hi")
    messages = _items(events, "agent_message")
    assert [m["text"] for m in messages][-1].startswith("Hello! You said: say hi")
    assert events[-1]["type"] == "turn.completed"


def test_turn_running_exec_command(
    codex_bin: Path, gw: Gateway, dialect: str, sim: SimulatedTrae, tmp_path: Path
) -> None:
    """The model calls exec_command, Codex runs it, and its output reaches Trae next turn."""
    kind = "call" if dialect == "agent" else "bridge-call"
    arguments = orjson.dumps({"cmd": "echo tool-$((6*7))-ran"}).decode()
    prompt = f"Run the marker command. [sim:{kind} exec_command {arguments}]"
    events = run_codex(codex_bin, gw, tmp_path / "home", model_for(dialect), prompt)
    runs = _items(events, "command_execution")
    assert runs
    assert "tool-42-ran" in runs[0]["aggregated_output"]
    assert "exec_command → " in _items(events, "agent_message")[-1]["text"]
    sent = orjson.dumps(sim.control.last_chat()["body"]).decode()
    assert "tool-42-ran" in sent  # the command's output, which its text does not contain
