"""The Docker path, checked without a Docker engine (CI has none).

The image must install and start the project the way README's quickstart does, declare what an
operator relies on (non-root USER, VOLUME /data, EXPOSE 17080, a HEALTHCHECK that needs no curl),
and its HEALTHCHECK command must really pass against a running gateway.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from trae2api.config import Settings

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
README = ROOT / "README.md"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERIGNORE = ROOT / ".dockerignore"

START_COMMAND = ["trae2api", "serve"]
# Options of `pip install` that take a value; `-e X` is the only one whose value is a target.
_PIP_VALUE_OPTIONS = {
    "-r", "--requirement", "-c", "--constraint", "-i", "--index-url", "--extra-index-url",
    "-f", "--find-links", "-t", "--target", "--prefix", "--root", "--src", "-C",
    "--config-settings", "--platform", "--python-version", "--implementation", "--abi",
    "--upgrade-strategy", "--progress-bar", "--cache-dir", "--log", "--trusted-host",
    "--global-option", "--no-binary", "--only-binary", "--report", "--python",
}  # fmt: skip
_SETTING_NAMES = {name.upper() for name in Settings.model_fields}


# -- parsing ---------------------------------------------------------------------------------


pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str


def dockerfile() -> list[Instruction]:
    """The Dockerfile's instructions, with continuations joined and comment lines dropped."""
    instructions: list[Instruction] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # Docker drops comment lines, even inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip()))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    return instructions


def only(keyword: str) -> list[Instruction]:
    return [ins for ins in dockerfile() if ins.keyword == keyword]


def exec_or_shell(args: str) -> list[str]:
    """CMD/ENTRYPOINT arguments: the JSON exec form, or the shell form run by ``sh -c``."""
    if args.startswith("["):
        value = json.loads(args)
        assert isinstance(value, list)
        return [str(item) for item in value]
    return ["/bin/sh", "-c", args]


def shell_commands(script: str) -> list[list[str]]:
    """Simple commands of a shell snippet, split at ``&&``, ``||``, ``;``, ``|`` and newlines."""
    commands: list[list[str]] = []
    for raw_line in script.replace("\\\n", " ").splitlines():
        line = re.sub(r"^\s*[$>]\s+", "", raw_line)  # a "$ " prompt in the README
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        current: list[str] = []
        for token in lexer:
            if token and set(token) <= set("&|;()"):
                commands.append(current)
                current = []
            else:
                current.append(token)
        commands.append(current)
    return [command for command in commands if command]


def _normalise_target(target: str) -> str:
    target = re.sub(r"\[[^\]]*\]$", "", target)  # extras: '.[dev,redis]' is still '.'
    target = target.rstrip("/") or "/"
    return "." if target in {"", "./", "."} else target


def pip_install_targets(command: list[str]) -> set[str] | None:
    """What a ``pip install`` command installs (``None`` when it is not one)."""
    words = [Path(word).name if i == 0 else word for i, word in enumerate(command)]
    if words[:1] and re.fullmatch(r"pip(3(\.\d+)?)?", words[0]):
        rest = words[1:]
    elif re.fullmatch(r"python(3(\.\d+)?)?", words[0]) and words[1:3] == ["-m", "pip"]:
        rest = words[3:]
    else:
        return None
    if rest[:1] != ["install"]:
        return None
    targets: set[str] = set()
    args = iter(rest[1:])
    for arg in args:
        if arg in {"-e", "--editable"}:
            targets.add(_normalise_target(next(args)))
        elif arg.startswith("--editable="):
            targets.add(_normalise_target(arg.split("=", 1)[1]))
        elif arg in _PIP_VALUE_OPTIONS:
            next(args, None)
        elif not arg.startswith("-"):
            targets.add(_normalise_target(arg))
    return targets


def local_targets(targets: set[str]) -> set[str]:
    """The targets that are directories on disk (the project), not PyPI requirement names."""
    return {t for t in targets if t == "." or t.startswith(("./", "../", "/"))}


def start_command(command: list[str]) -> list[str] | None:
    """``trae2api serve ...`` or ``python -m trae2api serve ...`` as ``[trae2api, serve]``."""
    words = [Path(command[0]).name, *command[1:]]
    if words[:2] == START_COMMAND:
        return START_COMMAND
    if re.fullmatch(r"python(3(\.\d+)?)?", words[0]) and words[1:4] == ["-m", *START_COMMAND]:
        return START_COMMAND
    return None


def readme_quickstart() -> str:
    """The first code block under README's "Quickstart" heading."""
    assert README.is_file(), (
        "README.md is missing: the Docker image must build and start the project the way "
        "README's Quickstart does, and pyproject.toml's readme needs it to build at all"
    )
    text = README.read_text(encoding="utf-8")
    heading = re.search(r"^#{1,6}[ \t]+[^\n]*quick[ \t-]?start[^\n]*$", text, re.I | re.M)
    assert heading, "README.md has no 'Quickstart' heading"
    block = re.compile(r"^[ \t]*(```|~~~)[^\n]*\n(.*?)^[ \t]*\1[ \t]*$", re.S | re.M)
    match = block.search(text, heading.end())
    assert match, "README.md's Quickstart section has no fenced code block"
    return match.group(2)


# -- the image declares what the README promises -------------------------------------------


def test_image_installs_the_project_like_the_readme() -> None:
    readme_targets = [
        targets
        for command in shell_commands(readme_quickstart())
        if (targets := pip_install_targets(command)) is not None
    ]
    assert readme_targets, "README's Quickstart has no `pip install` command"
    readme_projects = set().union(*map(local_targets, readme_targets))
    assert readme_projects == {"."}, f"README's Quickstart installs {readme_projects}, not ."

    image_targets = [
        targets
        for ins in only("RUN")
        for command in shell_commands(ins.args)
        if (targets := pip_install_targets(command)) is not None
    ]
    assert image_targets, "the Dockerfile has no RUN ... pip install"
    image_projects = set().union(*map(local_targets, image_targets))
    assert image_projects == readme_projects, (
        f"the image installs {image_projects or 'nothing local'}, README installs {readme_projects}"
    )
    named = set().union(*image_targets) - image_projects
    assert not any(re.match(r"trae2api\b", t) for t in named), "the image installs from PyPI"

    copied = " ".join(ins.args for ins in only("COPY") + only("ADD"))
    for needed in ("pyproject.toml", "README.md", "src"):
        assert re.search(rf"(^|\s){re.escape(needed)}/?(\s|$)", copied), f"{needed} not copied"


def test_image_starts_like_the_readme() -> None:
    readme_starts = [
        start
        for command in shell_commands(readme_quickstart())
        if (start := start_command(command)) is not None
    ]
    assert readme_starts, "README's Quickstart never runs `trae2api serve`"

    assert not only("ENTRYPOINT"), "an ENTRYPOINT would change what CMD runs"
    cmds = only("CMD")
    assert cmds, "the Dockerfile has no CMD"
    assert exec_or_shell(cmds[-1].args) == START_COMMAND == readme_starts[0]


def test_image_declares_user_volume_port_and_healthcheck() -> None:
    instructions = dockerfile()
    assert instructions[0].keyword == "FROM"
    assert instructions[0].args.startswith("python:3.11"), instructions[0].args

    users = only("USER")
    assert users, "the image runs as root (no USER)"
    user = users[-1].args.split(":")[0]
    assert user not in {"root", "0"}, f"USER {users[-1].args} is root"
    keywords = [ins.keyword for ins in instructions]
    last_user = len(keywords) - 1 - keywords[::-1].index("USER")
    assert "RUN" not in keywords[last_user:], "a RUN after USER: installs would need root"

    volumes = [v for ins in only("VOLUME") for v in exec_or_shell_list(ins.args)]
    assert "/data" in volumes

    ports = [p.split("/")[0] for ins in only("EXPOSE") for p in ins.args.split()]
    assert "17080" in ports

    env = image_env()
    assert env.get("HOST") == "0.0.0.0"
    assert env.get("PORT") == "17080"
    assert env.get("DATA_DIR") == "/data"

    check = healthcheck_command()
    assert "/healthz" in " ".join(check)
    assert not {"curl", "wget"} & {Path(word).name for word in shlex.split(" ".join(check))}, (
        "curl and wget are not in python:3.11-slim"
    )


def test_dockerignore_keeps_secrets_out_and_the_build_inputs_in() -> None:
    patterns = {
        line.strip().rstrip("/")
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".env", ".venv", ".git", "data"} <= patterns
    assert not {"src", "README.md", "pyproject.toml", "*"} & patterns


def exec_or_shell_list(args: str) -> list[str]:
    return [str(v) for v in json.loads(args)] if args.startswith("[") else args.split()


def image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for ins in only("ENV"):
        words = shlex.split(ins.args)
        if words and "=" not in words[0]:  # legacy form: ENV KEY value
            env[words[0]] = " ".join(words[1:])
            continue
        for word in words:
            key, _, value = word.partition("=")
            env[key] = value
    return env


def healthcheck_command() -> list[str]:
    checks = only("HEALTHCHECK")
    assert checks, "the Dockerfile has no HEALTHCHECK"
    args = checks[-1].args
    match = re.match(r"^((?:--[a-z-]+=\S+\s+)*)CMD\s+(.*)$", args, re.S | re.I)
    assert match, f"cannot read HEALTHCHECK {args!r}"
    return exec_or_shell(match.group(2).strip())


# -- the image's start-up, done here ---------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(tmp_path: Path, **values: str) -> dict[str, str]:
    """This process's environment without any trae2api setting, plus the image's ENV."""
    env = {k: v for k, v in os.environ.items() if k.upper() not in _SETTING_NAMES}
    env.update(image_env())
    # `python` in the HEALTHCHECK must be this interpreter, as it is the image's.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["TMPDIR"] = str(tmp_path)
    env["DATA_DIR"] = str(tmp_path / "data")
    env.update(values)
    return env


def trae2api_command() -> list[str]:
    # The image runs the console script; fall back to -m when it is not installed beside us.
    script = Path(sys.executable).parent / "trae2api"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "trae2api"]


@pytest.fixture
def demo_gateway(tmp_path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """``trae2api serve --demo`` with the image's environment, on loopback and a free port."""
    port = free_port()
    env = clean_env(tmp_path, HOST="127.0.0.1", PORT=str(port))
    log_path = tmp_path / "gateway.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [*trae2api_command(), "serve", "--demo"],
            cwd=tmp_path,  # no stray .env from the checkout
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the gateway exited with {proc.returncode}:\n{log_path.read_text()}")
            try:
                url = f"http://127.0.0.1:{port}/healthz"
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"no /healthz within 30 s:\n{log_path.read_text()}")
            time.sleep(0.1)
        yield port, env
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            pytest.fail("the gateway did not stop on SIGTERM within 15 s")


def test_healthcheck_passes_against_the_running_gateway(
    demo_gateway: tuple[int, dict[str, str]],
) -> None:
    port, env = demo_gateway
    command = healthcheck_command()
    done = subprocess.run(command, env=env, capture_output=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")

    # And it notices a gateway that is not there.
    env_nobody = {**env, "PORT": str(free_port())}
    done = subprocess.run(command, env=env_nobody, capture_output=True, timeout=30, check=False)
    assert done.returncode != 0, (
        f"the HEALTHCHECK passed with nothing on the port (gateway: {port})"
    )


def test_image_env_without_auth_token_refuses_to_start(tmp_path: Path) -> None:
    # HOST=0.0.0.0 from the image: serving it without client keys must be refused.
    env = clean_env(
        tmp_path,
        PORT=str(free_port()),
        APP_ID="dummy-app-id",
        CLIENT_ID="dummy-client-id",
        REFRESH_TOKEN="dummy-refresh-token-0123456789",
    )
    done = subprocess.run(
        [*trae2api_command(), "serve"],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr.decode(errors="replace")
    assert b"AUTH_TOKEN" in done.stderr


# -- .env.example (compose's env_file) --------------------------------------------------------


def env_example_lines() -> dict[str, tuple[bool, str]]:
    """``NAME -> (commented out, value)`` for each ``NAME=value`` or ``# NAME=value`` line."""
    found: dict[str, tuple[bool, str]] = {}
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        match = re.fullmatch(r"(#\s*)?([A-Z][A-Z0-9_]*)=(.*)", line.strip())
        if match:
            found[match.group(2)] = (bool(match.group(1)), match.group(3))
    return found


def test_env_example_lists_every_setting_with_its_true_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):
        if name.upper() in _SETTING_NAMES:
            monkeypatch.delenv(name)
    lines = env_example_lines()
    missing, unknown = sorted(_SETTING_NAMES - set(lines)), sorted(set(lines) - _SETTING_NAMES)
    assert not missing, f"missing from .env.example: {missing}"
    assert not unknown, f"not settings of config.py: {unknown}"
    for secret in ("APP_ID", "CLIENT_ID", "REFRESH_TOKEN", "USER_ID", "AUTH_TOKEN"):
        assert lines[secret] == (False, ""), f"{secret} must be present and empty"

    every_line_set = tmp_path / "all.env"
    every_line_set.write_text("".join(f"{k}={v}\n" for k, (_, v) in lines.items()))
    defaults = Settings(_env_file=None)
    assert Settings(_env_file=every_line_set).model_dump() == defaults.model_dump()
    assert Settings(_env_file=ENV_EXAMPLE).model_dump() == defaults.model_dump()
