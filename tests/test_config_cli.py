"""``trae2api serve`` / ``version`` as real child processes: configuration errors and start-up."""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import openai
import pytest

from conftest import CLIENT_KEY, free_port, wait_for
from trae2api import __version__
from trae2api.cli import listen
from trae2api.errors import ConfigError
from trae2api.testing import SimulatedTrae

# A refresh token nobody could mistake for anything else: it must never be echoed.
CANARY_REFRESH_TOKEN = "rt-CANARY-9f8e7d6c5b4a39281706f5e4d3c2b1a0"
# Nothing listens on the discard port: a gateway started by mistake cannot reach anything real.
NOWHERE = "http://127.0.0.1:9"


def base_env(tmp_path: Path) -> dict[str, str]:
    """An environment built from scratch: no account variable can leak in from the test run."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "TMPDIR": str(tmp_path),
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
    }


def account_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A complete, valid account configuration pointing nowhere real."""
    env = {
        **base_env(tmp_path),
        "APP_ID": "6eefa01c-1036-4c7e-9ca5-d891f63bfcd8",
        "CLIENT_ID": "ono9krqynydwx5",
        "REFRESH_TOKEN": CANARY_REFRESH_TOKEN,
        "BASE_URL": NOWHERE,
        "REFRESH_TOKEN_URL": NOWHERE,
        "DATA_DIR": str(tmp_path / "data"),
        "PORT": str(free_port()),
    }
    env.update(extra)
    return env


def sim_env(sim: SimulatedTrae, tmp_path: Path, **extra: str) -> dict[str, str]:
    """The account of ``sim`` as an operator would configure it."""
    account = sim.account
    return account_env(
        tmp_path,
        APP_ID=account.app_id,
        CLIENT_ID=account.client_id,
        USER_ID=account.user_id,
        REFRESH_TOKEN=account.refresh_token,
        BASE_URL=sim.url,
        REFRESH_TOKEN_URL=sim.url,
        **extra,
    )


def run_cli(
    *args: str, env: dict[str, str], cwd: Path, timeout: float = 20
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m trae2api ARGS`` to completion (a server that starts is a timeout)."""
    return subprocess.run(
        [sys.executable, "-m", "trae2api", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def assert_config_error(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    """Exit status 2 and one readable stderr line containing every needle; returns the line."""
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@contextmanager
def serving(*args: str, env: dict[str, str], cwd: Path, url: str) -> Iterator[Path]:
    """``trae2api ARGS`` running until the block ends; yields the path of its output."""
    log_path = cwd / "serve.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "trae2api", *args],
            env=env,
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            if not wait_for(lambda: healthy(url) or process.poll() is not None, timeout=15):
                pytest.fail(f"the gateway did not start: {log_path.read_text()}")
            assert process.poll() is None, log_path.read_text()
            assert healthy(url), log_path.read_text()
            yield log_path
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


MISSING = {"APP_ID": "ai_1_stdout.log", "CLIENT_ID": "main.log", "REFRESH_TOKEN": "storage.json"}
MALFORMED = [
    ("PORT", "not-a-port"),
    ("PORT", "70000"),
    ("BASE_URL", "ftp://trae-api-sg.mchost.guru"),
    ("REFRESH_TOKEN_URL", "trae.example"),
    ("IDE_VERSION_CODE", "twenty"),
    ("REASONING_MODE", "bogus"),
]

SEVERAL_MALFORMED = [("PORT", "not-a-port"), ("BASE_URL", "ftp://x"), ("REASONING_MODE", "bogus")]


def _failing_cases(root: Path) -> dict[str, dict[str, str]]:
    """Every start-up that must be refused, as case name -> environment."""
    cases: dict[str, dict[str, str]] = {}
    for variable in MISSING:
        # APP_ID is required by the legacy dialect only (agent and auto send Trae's own).
        env = account_env(root, UPSTREAM_DIALECT="legacy")
        del env[variable]
        cases[f"missing-{variable}"] = env
    cases["blank-REFRESH_TOKEN"] = account_env(root, REFRESH_TOKEN="   ")
    for variable, value in MALFORMED:
        cases[f"malformed-{variable}-{value}"] = account_env(root, **{variable: value})
    cases["nothing-configured"] = base_env(root)
    several = account_env(root, UPSTREAM_DIALECT="legacy", **dict(SEVERAL_MALFORMED))
    del several["CLIENT_ID"], several["APP_ID"]
    cases["several-wrong"] = several
    cases["public-host-no-key"] = account_env(root, HOST="0.0.0.0")
    blocker = root / "not-a-directory"
    blocker.write_text("")
    cases["data-dir-blocked"] = account_env(root, DATA_DIR=str(blocker / "data"))
    return cases


@pytest.fixture(scope="module")
def refused(
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, subprocess.CompletedProcess[str]]:
    """The refused start-ups, run concurrently once (each is a full interpreter start)."""
    root = tmp_path_factory.mktemp("refused")
    running = {
        name: subprocess.Popen(
            [sys.executable, "-m", "trae2api", "serve", "--env-file", "/dev/null"],
            env=env,
            cwd=root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, env in _failing_cases(root).items()
    }
    results = {}
    for name, process in running.items():
        try:
            stdout, stderr = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:  # it started serving: the test will fail on the status
            process.kill()
            stdout, stderr = process.communicate()
        results[name] = subprocess.CompletedProcess(
            process.args, process.returncode, stdout, stderr
        )
    return results


@pytest.mark.slow
@pytest.mark.parametrize(("variable", "where"), list(MISSING.items()))
def test_missing_account_variable_names_it_and_where_to_find_it(
    refused: dict[str, subprocess.CompletedProcess[str]], variable: str, where: str
) -> None:
    """A missing account variable exits 2 with one line naming it and where Trae keeps it."""
    result = refused[f"missing-{variable}"]
    assert_config_error(result, variable, where)
    assert CANARY_REFRESH_TOKEN not in result.stderr + result.stdout


@pytest.mark.parametrize(("variable", "value"), MALFORMED)
def test_malformed_variable_is_named_and_no_secret_is_echoed(
    refused: dict[str, subprocess.CompletedProcess[str]], variable: str, value: str
) -> None:
    """A malformed value exits 2 naming the variable and never echoes the refresh token."""
    result = refused[f"malformed-{variable}-{value}"]
    assert_config_error(result, variable)
    assert CANARY_REFRESH_TOKEN not in result.stderr + result.stdout


def test_empty_refresh_token_counts_as_missing(
    refused: dict[str, subprocess.CompletedProcess[str]],
) -> None:
    """A blank REFRESH_TOKEN is reported like a missing one, not accepted."""
    assert_config_error(refused["blank-REFRESH_TOKEN"], "REFRESH_TOKEN", "storage.json")


def test_nothing_configured_names_every_account_variable_and_the_demo(
    refused: dict[str, subprocess.CompletedProcess[str]],
) -> None:
    """With no configuration, one line names both required variables and ``serve --demo``."""
    required = {name: where for name, where in MISSING.items() if name != "APP_ID"}
    line = assert_config_error(
        refused["nothing-configured"], *required, *required.values(), "trae2api serve --demo"
    )
    assert line.count("is not set") == 2  # APP_ID: the default dialect sends Trae's own


def test_every_missing_and_malformed_variable_is_named_at_once(
    refused: dict[str, subprocess.CompletedProcess[str]],
) -> None:
    """Two missing and three malformed variables: one line names all five, no secret, no demo."""
    result = refused["several-wrong"]
    names = ["APP_ID", "CLIENT_ID", *(name for name, _ in SEVERAL_MALFORMED)]
    line = assert_config_error(result, *names, "ai_1_stdout.log", "main.log")
    assert "REFRESH_TOKEN" not in line  # it is set
    assert "--demo" not in line  # something is configured: not a newcomer
    assert CANARY_REFRESH_TOKEN not in result.stderr + result.stdout


def test_public_host_without_auth_token_refuses(
    refused: dict[str, subprocess.CompletedProcess[str]],
) -> None:
    """HOST=0.0.0.0 with no AUTH_TOKEN exits 2 with a message naming AUTH_TOKEN."""
    line = assert_config_error(refused["public-host-no-key"], "AUTH_TOKEN", "--insecure-no-auth")
    assert "0.0.0.0" in line


def test_data_dir_that_cannot_be_created_is_named(
    refused: dict[str, subprocess.CompletedProcess[str]],
) -> None:
    """A DATA_DIR below a regular file exits 2 naming DATA_DIR."""
    assert_config_error(refused["data-dir-blocked"], "DATA_DIR", "cannot create")


@pytest.mark.slow
def test_env_file_in_cwd_is_read(sim: SimulatedTrae, tmp_path: Path) -> None:
    """The account in ./.env (and nothing in the environment) is enough to start and serve."""
    configured = sim_env(sim, tmp_path, AUTH_TOKEN=CLIENT_KEY)
    port = configured["PORT"]
    account_keys = set(configured) - set(base_env(tmp_path))
    (tmp_path / ".env").write_text(
        "".join(f"{key}={configured[key]}\n" for key in sorted(account_keys))
    )
    url = f"http://127.0.0.1:{port}"
    with serving("serve", env=base_env(tmp_path), cwd=tmp_path, url=url):
        with openai.OpenAI(base_url=f"{url}/v1", api_key=CLIENT_KEY, max_retries=0) as client:
            models = client.models.list()
        assert "glm-5.2" in {model.id for model in models.data}
        assert sim.control.stats()["exchanges_ok"] == 1
    assert (tmp_path / "data" / "trae2api.sqlite3").exists()


@pytest.mark.slow
def test_explicit_env_file_is_read(sim: SimulatedTrae, tmp_path: Path) -> None:
    """``--env-file PATH`` reads the account from PATH instead of ./.env."""
    configured = sim_env(sim, tmp_path)
    env_file = tmp_path / "elsewhere.env"
    env_file.write_text(
        "".join(f"{key}={value}\n" for key, value in configured.items() if key != "PATH")
    )
    (tmp_path / ".env").write_text("APP_ID=\n")  # would fail if it were read instead
    url = f"http://127.0.0.1:{configured['PORT']}"
    with serving(
        "serve", "--env-file", str(env_file), env=base_env(tmp_path), cwd=tmp_path, url=url
    ):
        assert wait_for(lambda: sim.control.stats()["exchanges_ok"] == 1)


@pytest.mark.slow
def test_host_and_port_flags_override_the_environment(sim: SimulatedTrae, tmp_path: Path) -> None:
    """``--host/--port`` win over HOST/PORT: a 0.0.0.0 HOST without keys no longer refuses."""
    env_port, flag_port = free_port(), free_port()
    env = sim_env(sim, tmp_path, HOST="0.0.0.0", PORT=str(env_port))
    url = f"http://127.0.0.1:{flag_port}"
    args = ("serve", "--env-file", "/dev/null", "--host", "127.0.0.1", "--port", str(flag_port))
    with serving(*args, env=env, cwd=tmp_path, url=url):
        assert not healthy(f"http://127.0.0.1:{env_port}")


@pytest.mark.slow
def test_public_host_with_insecure_no_auth_starts(sim: SimulatedTrae, tmp_path: Path) -> None:
    """``--insecure-no-auth`` lets HOST=0.0.0.0 start without keys, and any client is served."""
    env = sim_env(sim, tmp_path, HOST="0.0.0.0")
    url = f"http://127.0.0.1:{env['PORT']}"
    with (
        serving(
            "serve", "--env-file", "/dev/null", "--insecure-no-auth", env=env, cwd=tmp_path, url=url
        ),
        openai.OpenAI(base_url=f"{url}/v1", api_key="anything", max_retries=0) as client,
    ):
        assert client.models.list().data


def test_version_prints_the_package_version(tmp_path: Path) -> None:
    """``trae2api version`` prints the version and exits 0."""
    result = run_cli("version", env=base_env(tmp_path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == __version__


@pytest.mark.slow
def test_demo_serves_without_any_account(tmp_path: Path) -> None:
    """``serve --demo`` needs no account variable; auto picks today's agent dialect and the
    openai SDK lists models, chats and sends an image."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = ("serve", "--demo", "--env-file", "/dev/null", "--port", str(port))
    with (
        serving(*args, env=base_env(tmp_path), cwd=tmp_path, url=url),
        openai.OpenAI(base_url=f"{url}/v1", api_key="demo", max_retries=0) as client,
    ):
        models = [model.id for model in client.models.list().data]
        assert "glm-5.3" in models
        assert httpx.get(f"{url}/status", timeout=10).json()["dialect"] == "agent"
        reply = client.chat.completions.create(
            model="glm-5.2", messages=[{"role": "user", "content": "hello demo"}]
        )
        assert "hello demo" in (reply.choices[0].message.content or "")
        pixel = base64.b64decode(
            "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
        )
        image = {"type": "image_url", "image_url": {"url": _data_url(pixel)}}
        seen = client.chat.completions.create(
            model="claude-sonnet-4.5",
            messages=[{"role": "user", "content": [{"type": "text", "text": "see"}, image]}],  # type: ignore[list-item]
        )
        assert "saw 1 image(s): 1x1 png" in (seen.choices[0].message.content or "")


def _data_url(image: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(image).decode()


@pytest.mark.slow
def test_demo_speaks_the_agent_dialect(tmp_path: Path) -> None:
    """``UPSTREAM_DIALECT=agent serve --demo`` lists the agent catalogue and calls tools."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**base_env(tmp_path), "UPSTREAM_DIALECT": "agent"}
    args = ("serve", "--demo", "--env-file", "/dev/null", "--port", str(port))
    tool = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
    with (
        serving(*args, env=env, cwd=tmp_path, url=url),
        openai.OpenAI(base_url=f"{url}/v1", api_key="demo", max_retries=0) as client,
    ):
        assert "auto" in [model.id for model in client.models.list().data]
        reply = client.chat.completions.create(
            model="glm-5.2",
            messages=[{"role": "user", "content": "find it"}],
            tools=[tool],  # type: ignore[list-item]
            tool_choice="required",
        )
        assert reply.choices[0].finish_reason == "tool_calls"


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write to a mode 0500 directory")
def test_read_only_data_dir_is_named(tmp_path: Path) -> None:
    """An existing DATA_DIR without write permission exits 2 naming DATA_DIR."""
    data_dir = tmp_path / "read-only"
    data_dir.mkdir(mode=0o500)
    try:
        env = account_env(tmp_path, DATA_DIR=str(data_dir))
        result = run_cli("serve", "--env-file", "/dev/null", env=env, cwd=tmp_path)
        assert_config_error(result, "DATA_DIR")
    finally:
        data_dir.chmod(0o700)


@contextmanager
def port_taken() -> Iterator[int]:
    """A port some other program listens on for the duration of the block."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        yield other.getsockname()[1]


@pytest.mark.slow
def test_busy_port_is_named_before_any_start_up_work(sim: SimulatedTrae, tmp_path: Path) -> None:
    """A port in use exits 2 with one line naming PORT and the address, before any exchange."""
    with port_taken() as port:
        env = sim_env(sim, tmp_path, PORT=str(port))
        result = run_cli("serve", "--env-file", "/dev/null", env=env, cwd=tmp_path)
    line = assert_config_error(result, "PORT", f"127.0.0.1:{port}", "already in use", "--port")
    assert result.stdout == ""  # nothing started, nothing logged
    assert sim.control.stats()["exchanges_ok"] == 0
    assert CANARY_REFRESH_TOKEN not in line


def test_busy_port_in_demo_mode_is_named_and_leaves_nothing_behind(tmp_path: Path) -> None:
    """``serve --demo --port P`` with P taken exits 2 naming it; no demo directory is left."""
    env = {**base_env(tmp_path), "TMPDIR": str(tmp_path / "tmp")}
    (tmp_path / "tmp").mkdir()
    with port_taken() as port:
        args = ("serve", "--demo", "--env-file", "/dev/null", "--port", str(port))
        result = run_cli(*args, env=env, cwd=tmp_path)
    assert_config_error(result, "PORT", f"127.0.0.1:{port}", "already in use")
    assert list((tmp_path / "tmp").iterdir()) == []


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_demo_removes_its_directory_and_logs_start_up_once(tmp_path: Path, sig: int) -> None:
    """The demo's data directory is gone after Ctrl-C or SIGTERM; its start-up lines appear once."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    port = free_port()
    env = {**base_env(tmp_path), "TMPDIR": str(temp), "LOG_FORMAT": "json"}
    log_path = tmp_path / "demo.log"
    with log_path.open("wb") as log:
        args = ["serve", "--demo", "--env-file", "/dev/null", "--port", str(port)]
        process = subprocess.Popen(
            [sys.executable, "-m", "trae2api", *args],
            env=env,
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            assert wait_for(lambda: healthy(url), timeout=15), log_path.read_text()
            (demo_dir,) = temp.iterdir()
            assert demo_dir.name.startswith("trae2api-demo-")
            with openai.OpenAI(base_url=f"{url}/v1", api_key="demo", max_retries=0) as client:
                assert client.models.list().data  # credentials are now stored in demo_dir
            assert any(demo_dir.iterdir())
            process.send_signal(sig)
            assert process.wait(timeout=30) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert list(temp.iterdir()) == []
    output = log_path.read_text()
    assert output.count("Started server process") == 1, output
    assert output.count("Application startup complete") == 1, output
    assert f"base_url='http://127.0.0.1:{port}/v1'" in output  # the "try it" hint


@pytest.mark.slow
def test_help_is_user_text(tmp_path: Path) -> None:
    """``--help`` reads as user text: the demo and .env mentioned, no markup or developer notes."""
    result = run_cli("--help", env=base_env(tmp_path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "trae2api serve --demo" in result.stdout
    assert ".env" in result.stdout
    assert "Ctrl-C" in result.stdout
    for developer_text in ("``", "exit status", "traceback", "Traceback"):
        assert developer_text not in result.stdout
    serve_help = run_cli("serve", "--help", env=base_env(tmp_path), cwd=tmp_path)
    assert serve_help.returncode == 0, serve_help.stderr
    assert "--demo" in serve_help.stdout
    assert "``" not in serve_help.stdout


@pytest.mark.parametrize(
    ("host", "variable", "needle"),
    [
        ("192.0.2.1", "HOST", "not an address of this machine"),  # TEST-NET-1: nobody's
        ("no-such-host.invalid", "HOST", "not an address of this machine"),
    ],
)
def test_a_host_this_machine_cannot_listen_on_is_named(
    host: str, variable: str, needle: str
) -> None:
    """``listen`` turns an unusable HOST into a ConfigError naming HOST, not an OSError."""
    with pytest.raises(ConfigError) as caught:
        listen(host, free_port())
    assert caught.value.variable == variable
    assert needle in str(caught.value)


def test_listen_binds_every_address_of_localhost_and_reports_a_busy_one() -> None:
    """``localhost`` is bound on each address it names; a second bind is the busy-port error."""
    port = free_port()
    sockets = listen("localhost", port)
    try:
        assert {sock.getsockname()[1] for sock in sockets} == {port}
        with pytest.raises(ConfigError, match="already in use") as caught:
            listen("127.0.0.1", port)
        assert caught.value.variable == "PORT"
    finally:
        for sock in sockets:
            sock.close()
