"""compose.yaml's ``replicas`` profile, checked without a Docker engine and run as processes.

The file is read as Compose reads it (PyYAML resolves the ``<<: *replica`` merge keys), the
services that README's command starts are worked out from the command itself, and then both
replicas run as ``trae2api serve`` with the environment Compose would give their containers.
Only what a container network changes is translated: the ``redis`` host name, the container
port, the per-container ``/data`` and the all-interfaces HOST.
"""

from __future__ import annotations

import os
import re
import shlex
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
import yaml

from conftest import CLIENT_KEY, REDIS_TEST_URL, GatewayProcess, ask, free_port, gateway_env
from test_docker_path import ENV_EXAMPLE, image_env
from trae2api.config import Settings
from trae2api.testing import SimulatedTrae

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "compose.yaml"
README = ROOT / "README.md"
REPLICAS = ("replica-1", "replica-2")

SHUTDOWN_GRACE = float(Settings.model_fields["shutdown_grace"].default)
# Every name the gateway reads from its environment (field names and their aliases).
SETTING_NAMES = {name.upper() for name in Settings.model_fields} | {
    str(choice).upper()
    for field in Settings.model_fields.values()
    if field.validation_alias is not None and hasattr(field.validation_alias, "choices")
    for choice in field.validation_alias.choices
}
# `docker compose` options that take a value, before and after the subcommand.
_VALUE_OPTIONS = {
    "-f", "--file", "-p", "--project-name", "--profile", "--env-file",  # docker compose
    "-t", "--timeout", "--scale", "--exit-code-from", "--attach", "--no-attach", "--pull",
    "--wait-timeout",  # up
}  # fmt: skip


# -- reading compose.yaml as Compose does --------------------------------------------------------


pytestmark = pytest.mark.slow


def services() -> dict[str, dict[str, Any]]:
    """compose.yaml's services, merge keys resolved."""
    document = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    found: dict[str, dict[str, Any]] = document["services"]
    return found


def mapping(value: Any) -> dict[str, str]:
    """``environment`` in either form (mapping or ``KEY=value`` list), values as strings."""
    if isinstance(value, list):
        return dict(str(item).partition("=")[::2] for item in value)
    return {str(key): "" if item is None else str(item) for key, item in (value or {}).items()}


def dependencies(service: dict[str, Any]) -> dict[str, str]:
    """``depends_on`` in either form, as ``{service: condition}``."""
    value = service.get("depends_on") or {}
    if isinstance(value, list):
        return dict.fromkeys(value, "service_started")
    return {name: (spec or {}).get("condition", "service_started") for name, spec in value.items()}


def published(port: Any) -> tuple[int, int]:
    """``(host port, container port)`` of a ``ports`` entry, short or long syntax."""
    if isinstance(port, dict):
        return int(port["published"]), int(port["target"])
    *_, host, container = str(port).split("/")[0].split(":")
    return int(host), int(container)


def duration_seconds(value: Any) -> float:
    """A Compose duration (``30s``, ``1m30s``, ``500ms``) in seconds."""
    units = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    parts = re.findall(r"(\d+(?:\.\d+)?)(us|ms|s|m|h)", str(value))
    assert parts, f"not a duration: {value!r}"
    assert "".join(n + u for n, u in parts) == str(value), f"not a duration: {value!r}"
    return sum(float(number) * units[unit] for number, unit in parts)


def readme_section(title: str) -> str:
    """The text under README's heading ``title``, up to the next heading of its level or above
    (``#`` lines inside fenced code blocks are not headings)."""
    lines = README.read_text(encoding="utf-8").splitlines()
    level, found, fenced = 0, [], False
    for line in lines:
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        heading = None if fenced else re.match(r"(#{1,6})[ \t]+(.*?)[ \t]*$", line)
        if level and heading and len(heading.group(1)) <= level:
            break
        if level:
            found.append(line)
        elif heading and heading.group(2) == title:
            level = len(heading.group(1))
    assert level, f'README.md has no "{title}" section'
    return "\n".join(found)


def readme_replicas_command() -> list[str]:
    """The ``docker compose ... up`` command in README's "Several replicas" section."""
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", readme_section("Several replicas"), re.S | re.M)
    commands = [shlex.split(line) for block in blocks for line in block.splitlines()]
    ups = [words for words in commands if words[:2] == ["docker", "compose"] and "up" in words]
    assert len(ups) == 1, f"expected one `docker compose ... up` in the section, found {ups}"
    return ups[0]


def started_by(command: list[str], all_services: dict[str, dict[str, Any]]) -> set[str]:
    """The services ``docker compose [--profile P] up [options] [services]`` starts."""
    profiles: set[str] = set()
    named: list[str] = []
    words = iter(command[2:])
    seen_up = False
    for word in words:
        if word in _VALUE_OPTIONS:
            value = next(words)
            if word == "--profile":
                profiles.add(value)
        elif word.startswith("--profile="):
            profiles.add(word.split("=", 1)[1])
        elif word == "up":
            seen_up = True
        elif seen_up and not word.startswith("-"):
            named.append(word)
    assert seen_up
    # Named services start with their dependencies, and naming one activates its profiles;
    # without names, every service of an active profile starts, and every one without profiles.
    if named:
        profiles |= {p for name in named for p in all_services.get(name, {}).get("profiles", [])}
    wanted = named or [
        name
        for name, service in all_services.items()
        if not service.get("profiles") or profiles & set(service["profiles"])
    ]
    started: set[str] = set()
    while wanted:
        name = wanted.pop()
        assert name in all_services, f"the command names {name}, which compose.yaml lacks"
        if name not in started:
            started.add(name)
            wanted.extend(dependencies(all_services[name]))
    for name in started:  # Compose refuses a dependency outside the active profiles
        own = set(all_services[name].get("profiles") or [])
        assert not own or own & profiles, f"{name} is only in the profiles {own}, not {profiles}"
    return started


# -- what the command starts and what the replicas rely on -------------------------------------


def test_readme_command_starts_redis_and_both_replicas_but_not_the_single_service() -> None:
    """README's command starts exactly redis and the two replicas, not the SQLite service."""
    command = readme_replicas_command()
    all_services = services()
    assert started_by(command, all_services) == {"redis", *REPLICAS}
    assert "--build" in command
    # The profile-less service would start beside the replicas if the services were not named.
    assert "replicas" not in (all_services["trae2api"].get("profiles") or [])
    unnamed = [word for word in command if word not in {"redis", *REPLICAS}]
    assert "trae2api" in started_by(unnamed, all_services)


def test_replicas_run_one_image_on_one_redis_behind_distinct_ports() -> None:
    """Both replicas run the image built once from this directory, share REDIS_URL pointing at
    the redis service and publish the gateway's port on different host ports."""
    all_services = services()
    replicas = [all_services[name] for name in REPLICAS]
    images = {replica["image"] for replica in replicas}
    assert len(images) == 1, f"the replicas run different images: {images}"
    builders = [name for name in REPLICAS if "build" in all_services[name]]
    # One builder: two services building the same tag race to store it on a first build.
    assert len(builders) == 1, f"{builders} all build {images}"
    build = all_services[builders[0]]["build"]
    context = build if isinstance(build, str) else build.get("context", ".")
    assert (COMPOSE_FILE.parent / context).resolve() == ROOT
    assert (ROOT / "Dockerfile").is_file()

    environments = [mapping(replica["environment"]) for replica in replicas]
    assert environments[0] == environments[1], "the replicas are configured differently"
    environment = environments[0]
    assert not set(environment) - SETTING_NAMES, "compose sets variables the gateway never reads"
    url = urlsplit(environment["REDIS_URL"])
    assert url.scheme == "redis"
    assert url.hostname == "redis"
    assert url.port in (None, 6379)  # redis-server's default port: the command sets none
    assert {replica["env_file"] for replica in replicas} == {".env"}

    ports = [[published(port) for port in replica["ports"]] for replica in replicas]
    assert all(len(each) == 1 for each in ports)
    hosts = [each[0][0] for each in ports]
    assert len(set(hosts)) == len(hosts), f"the replicas publish the same host port: {hosts}"
    assert {each[0][1] for each in ports} == {int(environment["PORT"])}, "not the port it serves"
    section = readme_section("Several replicas")
    assert all(str(port) in section for port in hosts), "README names other ports"


def test_replicas_wait_for_a_healthy_redis_that_fsyncs_every_write() -> None:
    """The replicas depend on a healthy redis, which has a health check, appendonly yes and
    appendfsync always, and keeps its data in a named volume."""
    all_services = services()
    for name in REPLICAS:
        assert dependencies(all_services[name]) == {"redis": "service_healthy"}
    redis_service = all_services["redis"]
    assert redis_service["healthcheck"]["test"], "service_healthy needs a health check"
    command = redis_service["command"]
    words = shlex.split(command) if isinstance(command, str) else [str(w) for w in command]
    assert words[0] == "redis-server"
    options = dict(zip(words[1::2], words[2::2], strict=True))
    assert options.get("--appendonly") == "yes"
    assert options.get("--appendfsync") == "always"
    volumes = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))["volumes"]
    mounts = [str(volume).split(":") for volume in redis_service["volumes"]]
    assert any(source in volumes and target == "/data" for source, target, *_ in mounts)


def test_replicas_stop_grace_outlasts_the_gateway_shutdown_grace() -> None:
    """A stopped replica gets longer than SHUTDOWN_GRACE before Compose sends SIGKILL."""
    all_services = services()
    for name in REPLICAS:
        grace = duration_seconds(all_services[name]["stop_grace_period"])
        assert grace > SHUTDOWN_GRACE, f"{name}: {grace} s <= SHUTDOWN_GRACE {SHUTDOWN_GRACE} s"


# -- the profile, run -----------------------------------------------------------------------


def operator_env_file(path: Path, sim: SimulatedTrae) -> Path:
    """.env.example with the account values (and Trae's URLs) of ``sim`` filled in, as an
    operator edits it after ``cp .env.example .env``."""
    values = gateway_env(sim, path.parent)
    del values["DATA_DIR"]  # compose sets it; the operator leaves the example's line alone
    lines = []
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        match = re.fullmatch(r"#?\s*([A-Z][A-Z0-9_]*)=.*", line.strip())
        if match and match.group(1) in values:
            line = f"{match.group(1)}={values.pop(match.group(1))}"
        lines.append(line)
    assert not values, f"not in .env.example: {sorted(values)}"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def read_env_file(path: Path) -> dict[str, str]:
    """An env_file as Compose reads it: ``NAME=value`` lines, ``#`` comments, blank lines."""
    env: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, sep, value = line.partition("=")
            assert sep, f"not NAME=value: {line!r}"
            env[name.strip()] = value
    return env


def container_env(service: dict[str, Any], env_file: Path) -> dict[str, str]:
    """The container's environment: the image's ENV, then env_file, then ``environment``."""
    assert service["env_file"] == ".env"
    return {**image_env(), **read_env_file(env_file), **mapping(service["environment"])}


def on_this_host(env: dict[str, str], data_dir: Path, redis_prefix: str) -> dict[str, str]:
    """``env`` with only what the container network changes translated to this host."""
    local = dict(env)
    # "redis" is the redis service's name inside the compose network; here the test Redis
    # answers, on its own DB and under a fresh key prefix so no other test's keys are touched.
    url, test_url = urlsplit(env["REDIS_URL"]), urlsplit(REDIS_TEST_URL)
    assert url.hostname == "redis"
    local["REDIS_URL"] = urlunsplit(url._replace(netloc=test_url.netloc, path=test_url.path))
    local["REDIS_KEY_PREFIX"] = redis_prefix
    # Each container has its own /data; here each replica has its own directory.
    local["DATA_DIR"] = str(data_dir)
    # HOST 0.0.0.0 is every interface of the container; on this machine it would be every
    # interface of the host, so the replicas listen on loopback instead. AUTH_TOKEN stays set.
    assert env["HOST"] == "0.0.0.0"
    local["HOST"] = "127.0.0.1"
    # PORT: GatewayProcess puts a free local port in place of the container's 17080.
    return local


def account_status(url: str) -> dict[str, Any]:
    """``/status``'s account part (credential version and state) of one replica."""
    response = httpx.get(
        f"{url}/status", headers={"Authorization": f"Bearer {CLIENT_KEY}"}, timeout=10
    )
    response.raise_for_status()
    account: dict[str, Any] = response.json()["account"]
    return account


@pytest.fixture
def compose_replicas(
    sim: SimulatedTrae, tmp_path: Path, redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[list[GatewayProcess]]:
    """replica-1 and replica-2 as compose configures them, started together on this host."""
    for name in list(os.environ):  # a container sees none of this shell's settings
        if name.upper() in SETTING_NAMES:
            monkeypatch.delenv(name)
    env_file = operator_env_file(tmp_path / ".env", sim)
    all_services = services()
    group = [
        GatewayProcess(
            env=on_this_host(
                container_env(all_services[name], env_file), tmp_path / name, redis_prefix
            ),
            port=free_port(),
            log_path=tmp_path / f"{name}.log",
        )
        for name in REPLICAS
    ]
    try:
        with ThreadPoolExecutor(max_workers=len(group)) as pool:
            list(pool.map(lambda replica: replica.start(), group))
        yield group
    finally:
        for replica in group:
            replica.stop()


@pytest.mark.timeout(60)
def test_replicas_profile_shares_one_login_and_one_refresh(
    sim: SimulatedTrae, compose_replicas: list[GatewayProcess], redis_prefix: str
) -> None:
    """Both replicas as compose runs them serve chats with one shared login, one shared refresh
    after the access token expires, one device identity and one credential version."""
    urls = [replica.url for replica in compose_replicas]
    for index, url in enumerate(urls):
        assert f"You said: before {index}" in ask(url, f"before {index}")
    assert sim.control.stats()["exchanges_ok"] == 1  # one first login for both replicas

    sim.control.expire_access()
    per_replica = 4
    barrier = threading.Barrier(per_replica * len(urls))

    def one(index: int) -> str:
        barrier.wait(timeout=10)
        return ask(urls[index % len(urls)], f"after {index}")

    with ThreadPoolExecutor(max_workers=per_replica * len(urls)) as pool:
        replies = list(pool.map(one, range(per_replica * len(urls))))
    assert all(f"You said: after {i}" in reply for i, reply in enumerate(replies)), replies

    import redis  # only now: the redis_prefix fixture skips the test when there is none

    stats = sim.control.stats()
    assert stats["exchanges_ok"] == 2  # the first login and one refresh, for both replicas
    assert stats["exchanges_rejected"] == 0
    assert stats["device_changes"] == 0  # one device identity, kept in Redis
    with redis.Redis.from_url(REDIS_TEST_URL, decode_responses=True) as client:
        stored = int(client.hget(f"{redis_prefix}account", "version") or -1)
    accounts = [account_status(url) for url in urls]
    assert [account["state"] for account in accounts] == ["ok", "ok"]
    assert [account["version"] for account in accounts] == [stored, stored]
    for url in urls:
        ready = httpx.get(f"{url}/readyz", timeout=10)
        assert (ready.status_code, ready.json()["status"]) == (200, "ready")
