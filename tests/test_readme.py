"""The README's examples, extracted from README.md, run literally against ``serve --demo``."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import GatewayProcess, free_port

README = Path(__file__).resolve().parent.parent / "README.md"
README_URL = "http://127.0.0.1:17080"


def readme_block(language: str, after: str) -> str:
    """The first ``language`` code block of README.md after the heading or text ``after``."""
    text = README.read_text()
    start = text.index(after)
    match = re.compile(rf"```{language}\n(.*?)```", re.DOTALL).search(text, start)
    assert match is not None, (language, after)
    return match.group(1)


def test_quickstart_commands_are_the_ones_ci_runs() -> None:
    """The Quickstart installs without the dev toolchain; the test command is what .ci/run runs."""
    try_it = readme_block("sh", "## Quickstart")
    assert "pip install -e .\n" in try_it
    assert "[dev]" not in try_it
    assert "trae2api serve --demo" in try_it
    check = readme_block("sh", "Run the checks and the tests")
    assert check.strip().endswith("python -m pip install -e '.[dev]' && scripts/check")
    ci = (README.parent / ".ci" / "run").read_text()
    assert "python -m pip install -q -e '.[dev]'\n" in ci
    assert '"$ROOT/scripts/check" ' in ci


@pytest.fixture(params=["default", "legacy", "agent"])
def demo(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[GatewayProcess]:
    """``trae2api serve --demo`` on a free port, with the default or a chosen dialect."""
    env = {"TMPDIR": str(tmp_path)}
    if request.param != "default":
        env["UPSTREAM_DIALECT"] = request.param
    gateway = GatewayProcess(env=env, port=free_port(), log_path=tmp_path / "demo.log")
    gateway.start("--demo")
    yield gateway
    gateway.stop()


def test_the_sdk_example_streams_an_answer(demo: GatewayProcess, tmp_path: Path) -> None:
    """The README's Python example, as written but for the port, lists models and streams."""
    code = readme_block("python", "## Use it from the `openai` SDK")
    assert README_URL in code
    script = tmp_path / "example.py"
    script.write_text(code.replace(README_URL, demo.url))
    result = subprocess.run(
        [sys.executable, str(script)],
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    models_line, answer = result.stdout.splitlines()[:2]
    assert "'auto'" in models_line
    assert answer.startswith("Hello! You said: Hello!")


def test_the_curl_example_streams_an_answer(demo: GatewayProcess) -> None:
    """The README's curl example (its curl when there is one, else its body) is answered."""
    command = readme_block("sh", "curl, as in the original project").replace("\\\n", " ")
    assert README_URL in command
    command = command.replace(README_URL, demo.url)
    if shutil.which("curl"):
        result = subprocess.run(
            ["bash", "-c", command], capture_output=True, text=True, timeout=30, check=False
        )
        assert result.returncode == 0, result.stderr
        stream = result.stdout
    else:
        body = json.loads(shlex.split(command)[shlex.split(command).index("-d") + 1])
        reply = httpx.post(f"{demo.url}/v1/chat/completions", json=body, timeout=30)
        assert reply.status_code == 200, reply.text
        stream = reply.text
    assert stream.rstrip().endswith("data: [DONE]"), stream
    content = "".join(
        json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
        for line in stream.splitlines()
        if line.startswith("data: {") and json.loads(line[6:])["choices"]
    )
    assert "You said: 你好" in content
