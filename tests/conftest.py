"""Fixtures: the simulated Trae upstream and the gateway, both real servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import redis
import uvicorn

import rediskit
from trae2api.app import create_app
from trae2api.config import Settings, load_settings
from trae2api.testing import SimulatedTrae

CLIENT_KEY = "test-client-key-0123456789"


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def free_port() -> int:
    with free_socket() as sock:
        return int(sock.getsockname()[1])


def sdk(url: str, key: str = CLIENT_KEY, **kwargs: Any) -> openai.OpenAI:
    """The official client for a gateway at ``url``, without its own retries."""
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, **kwargs)


def key_works(url: str, key: str) -> bool:
    """Whether the gateway accepts ``key`` (it lists the models, or answers 401)."""
    try:
        with sdk(url, key) as client:
            client.models.list()
    except openai.AuthenticationError:
        return False
    return True


def ask(url: str, text: str, key: str = CLIENT_KEY) -> str:
    """One non-streamed chat through the official client; the reply text."""
    with sdk(url, key) as client:
        reply = client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": text}]
        )
    return reply.choices[0].message.content or ""


def ask_quietly(url: str, text: str = "doomed") -> None:
    """A chat expected to fail (its gateway is killed while it waits)."""
    with contextlib.suppress(openai.APIError):
        ask(url, text)


def new_user_env(sim: SimulatedTrae, data_dir: Path, **extra: Any) -> dict[str, str]:
    """Only what a new user sets (the account values, the hosts, a data directory), on ``sim``."""
    account = sim.account
    env = {
        "REFRESH_TOKEN": account.refresh_token,
        "CLIENT_ID": account.client_id,
        "USER_ID": account.user_id,
        "BASE_URL": sim.url,
        "REFRESH_TOKEN_URL": sim.url,
        "DATA_DIR": str(data_dir),
    }
    env.update({key: str(value) for key, value in extra.items()})
    return env


def gateway_env(sim: SimulatedTrae, data_dir: Path, **extra: Any) -> dict[str, str]:
    """The environment an operator would write for an account on ``sim``."""
    account = sim.account
    env = {
        "APP_ID": account.app_id,
        "CLIENT_ID": account.client_id,
        "USER_ID": account.user_id,
        "REFRESH_TOKEN": account.refresh_token,
        "BASE_URL": sim.url,
        "REFRESH_TOKEN_URL": sim.url,
        "GET_FILE_ID_URL": sim.url,
        "UPLOAD_FILE_URL": sim.url,
        "DATA_DIR": str(data_dir),
        "AUTH_TOKEN": CLIENT_KEY,
        # Most suites test the legacy dialect's behaviour (the seed's default until issue 10);
        # the dialect-selection suite passes UPSTREAM_DIALECT=auto itself.
        "UPSTREAM_DIALECT": "legacy",
    }
    env.update({key: str(value) for key, value in extra.items()})
    return env


def settings_for(sim: SimulatedTrae, data_dir: Path, **extra: Any) -> Settings:
    values = {key.lower(): value for key, value in gateway_env(sim, data_dir).items()}
    values.update(extra)
    return load_settings(None, **values)


@dataclass
class Gateway:
    """A gateway served by uvicorn in a thread of the test process."""

    settings: Settings
    sock: socket.socket = field(default_factory=free_socket)
    server: uvicorn.Server | None = None
    thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    @property
    def app(self) -> Any:
        assert self.server is not None
        return self.server.config.app

    def start(self) -> Gateway:
        config = uvicorn.Config(
            create_app(self.settings),
            log_config=None,
            access_log=False,
            lifespan="on",
            ws="none",
            timeout_graceful_shutdown=2,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the gateway did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self.server is not None and self.thread is not None:
            self.server.should_exit = True
            self.thread.join(timeout=10)
        self.sock.close()

    def client(self, key: str = CLIENT_KEY, **kwargs: Any) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=key, max_retries=0, **kwargs)

    def http(self, key: str | None = CLIENT_KEY) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


@pytest.fixture
def sim() -> Iterator[SimulatedTrae]:
    with SimulatedTrae() as simulated:
        yield simulated


@pytest.fixture
def start_gateway(sim: SimulatedTrae, tmp_path: Path) -> Iterator[Any]:
    """Start gateways against ``sim``; settings overrides as keyword arguments."""
    started: list[Gateway] = []

    def start(**extra: Any) -> Gateway:
        gateway = Gateway(settings_for(sim, tmp_path / "data", **extra)).start()
        started.append(gateway)
        return gateway

    yield start
    for gateway in started:
        gateway.stop()


@pytest.fixture
def gateway(start_gateway: Any) -> Gateway:
    return start_gateway()  # type: ignore[no-any-return]


@pytest.fixture
def client(gateway: Gateway) -> openai.OpenAI:
    return gateway.client()


def wait_for(predicate: Any, timeout: float = 5.0, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


@dataclass
class GatewayProcess:
    """``trae2api serve`` as a real child process (for restarts, signals and its log)."""

    env: dict[str, str]
    port: int
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *args: str, prefix: tuple[str, ...] = ()) -> GatewayProcess:
        """Start ``trae2api serve ARGS``, run by the command ``prefix`` if one is given."""
        env = {**os.environ, **self.env, "PORT": str(self.port), "LOG_FORMAT": "json"}
        self.log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [*prefix, sys.executable, "-m", "trae2api", "serve", "--env-file", "/dev/null", *args],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        if not wait_for(self._healthy, timeout=15):
            self.stop()
            raise RuntimeError(f"gateway did not start: {self.log_path.read_text()}")
        return self

    def _healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self, sig: int | None = None) -> None:
        if self.process is None:
            return
        if sig is None:
            self.process.terminate()
        else:
            self.process.send_signal(sig)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()
        self.process = None


def run_async(coro: Any) -> Any:
    return asyncio.run(coro)


# Redis for the replica tests: DB 11 of the Redis on 127.0.0.1:6379, or of a redis-server
# started for the run when none answers there (rediskit), unless TRAE2API_TEST_REDIS names
# another. Every test gets its own key prefix and deletes only its own keys. Set by
# pytest_configure, before the test modules import it.
REDIS_TEST_URL = rediskit.DEFAULT_URL
_REDIS = rediskit.TestRedis()


def pytest_configure(config: pytest.Config) -> None:
    global REDIS_TEST_URL, _REDIS
    _REDIS = rediskit.provide(os.environ.get("TRAE2API_TEST_REDIS"))
    REDIS_TEST_URL = _REDIS.url


def pytest_unconfigure(config: pytest.Config) -> None:
    _REDIS.stop()


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A fresh key prefix on the test Redis (the test is skipped when there is none)."""
    if _REDIS.missing:
        pytest.skip(_REDIS.missing)
    client = redis.Redis.from_url(REDIS_TEST_URL)
    prefix = f"trae2api-test-{os.urandom(6).hex()}:"
    yield prefix
    for key in client.scan_iter(match=f"{prefix}*"):
        client.delete(key)
    client.close()


@pytest.fixture(params=["agent", "legacy"])
def dialect(request: pytest.FixtureRequest) -> str:
    """Each dialect in turn, for tests that must hold on both."""
    return str(request.param)


@pytest.fixture
def gw(start_gateway: Any, dialect: str) -> Gateway:
    """A gateway speaking the ``dialect`` fixture's dialect to the simulator."""
    return start_gateway(upstream_dialect=dialect)  # type: ignore[no-any-return]


def model_for(dialect: str) -> str:
    """A chat model the simulator lists on ``dialect``."""
    return "glm-5.2" if dialect == "agent" else "gpt-4o"


_OPENED: list[Any] = []


def closed_after_test(client: Any) -> Any:
    """``client`` (an SDK client), closed when the test ends: no pooled socket outlives it."""
    _OPENED.append(client)
    return client


@pytest.fixture(autouse=True)
def _close_opened_clients() -> Iterator[None]:
    """Closes the clients ``closed_after_test`` handed out during the test."""
    yield
    while _OPENED:
        _OPENED.pop().close()
