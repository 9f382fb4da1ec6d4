"""No secret in any log line, response or metric across a broad run; state files are private."""

from __future__ import annotations

import base64
import json
import re
import stat
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from conftest import GatewayProcess, free_port, gateway_env
from test_images_e2e import png
from trae2api.testing import SimulatedTrae

MAIN_KEY = "main-client-key-0123456789abcdef"
BURST_KEY = "burst-client-key-fedcba9876543210"
BAD_KEY = "bad-client-key-00000000000000000"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def sdk(url: str, key: str, http_client: httpx.Client) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, http_client=http_client)


def hi(text: str = "hi") -> list[Any]:
    return [{"role": "user", "content": text}]


def exercise(client: openai.OpenAI, sim: SimulatedTrae) -> set[str]:
    """Models, chat, stream, tools, an image, a refresh after expiry; the access tokens used."""
    tokens = set()
    assert client.models.list().data
    client.chat.completions.create(model="gpt-4o", messages=hi(), max_tokens=50)
    tokens.add(sim.control.last_chat()["headers"]["x-ide-token"])
    stream = client.chat.completions.create(model="gpt-4o", messages=hi(), stream=True)
    assert "You said" in "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    call = f"[sim:bridge-call get_weather {json.dumps({'city': 'Oslo'})}]"
    tool = client.chat.completions.create(model="gpt-4o", messages=hi(call), tools=[WEATHER])
    assert tool.choices[0].finish_reason == "tool_calls"
    image = "data:image/png;base64," + base64.b64encode(png(8, 8)).decode()
    parts = [{"type": "text", "text": "see"}, {"type": "image_url", "image_url": {"url": image}}]
    client.chat.completions.create(
        model="claude-3-5-sonnet", messages=[{"role": "user", "content": parts}]
    )
    sim.control.expire_access()
    client.chat.completions.create(model="gpt-4o", messages=hi(), stream=False)
    tokens.add(sim.control.last_chat()["headers"]["x-ide-token"])
    return tokens


@pytest.mark.slow
def test_no_secret_anywhere_across_a_broad_run(sim: SimulatedTrae, tmp_path: Path) -> None:
    """At DEBUG no token, key or upload credential reaches the log, a response or /metrics."""
    keys_file = tmp_path / "keys.txt"
    keys_file.write_text(f"# clients\nmain: {MAIN_KEY}\nburst: {BURST_KEY}  # rate limited\n")
    data_dir = tmp_path / "data"
    env = gateway_env(
        sim,
        data_dir,
        LOG_LEVEL="DEBUG",
        AUTH_TOKEN="",
        API_KEYS_FILE=keys_file,
        RATE_LIMIT_RPM=1,
        RATE_LIMIT_BURST=12,
    )
    gateway = GatewayProcess(env=env, port=free_port(), log_path=tmp_path / "gateway.log")
    seen: list[str] = []

    def record(response: httpx.Response) -> None:
        response.read()
        seen.append(f"{response.status_code}\n{response.headers}\n{response.text}")

    gateway.start()
    try:
        with httpx.Client(event_hooks={"response": [record]}, timeout=30) as http:
            access_tokens = exercise(sdk(gateway.url, MAIN_KEY, http), sim)
            with pytest.raises(openai.AuthenticationError):
                sdk(gateway.url, BAD_KEY, http).models.list()
            burst = sdk(gateway.url, BURST_KEY, http)
            for _ in range(12):
                burst.models.list()
            with pytest.raises(openai.RateLimitError) as limited:
                burst.models.list()
            assert int(limited.value.response.headers["retry-after"]) >= 1
            for path in ("/status", "/readyz", "/metrics"):
                http.get(gateway.url + path, headers={"Authorization": f"Bearer {MAIN_KEY}"})
    finally:
        gateway.stop()
    credentials = sim.state.images.issued_credentials()
    assert credentials, "the image scenario asked for upload credentials"
    stats = sim.control.stats()
    assert stats["exchanges_ok"] == 2
    secrets = {
        sim.account.refresh_token,
        stats["current_refresh_token"],
        *access_tokens,
        MAIN_KEY,
        BURST_KEY,
        BAD_KEY,
        *(c.access_key_id for c in credentials),
        *(c.secret_access_key for c in credentials),
        *(c.session_token for c in credentials),
    }
    assert len(access_tokens) == 2
    log_text = gateway.log_path.read_text()
    assert '"level": "debug"' in log_text
    for secret in secrets:
        assert secret not in log_text
        for response in seen:
            assert secret not in response
        assert secret[:16] not in log_text
    assert not re.search(r"bearer\s+(?!\[REDACTED\])\S", log_text, re.IGNORECASE)
    assert_request_log(log_text, seen)
    assert_private_files(data_dir)


def assert_request_log(log_text: str, seen: list[str]) -> None:
    """Request lines name the key (never the key itself) and carry the id sent back."""
    requests = [json.loads(line) for line in log_text.splitlines() if '"event": "request"' in line]
    clients = {line.get("client") for line in requests}
    assert {"main", "burst", "-"} <= clients
    metrics = next(text for text in seen if "trae2api_requests_total" in text)
    assert 'client="burst"' in metrics
    assert 'route="/v1/chat/completions"' in metrics
    assert 'trae2api_rate_limited_total{client="burst"} 1.0' in metrics
    ids = {line["request_id"] for line in requests}
    assert all(any(request_id in text for request_id in ids) for text in seen)


def assert_private_files(data_dir: Path) -> None:
    """The state database and its -wal/-shm files are 0600 in a 0700 directory."""
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    files = list(data_dir.iterdir())
    assert any(path.name.endswith(".sqlite3") for path in files)
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
