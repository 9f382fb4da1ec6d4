"""SIGTERM: running streams get SHUTDOWN_GRACE, then an in-band error and [DONE]; exit status 0."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import CLIENT_KEY, GatewayProcess, free_port, gateway_env, wait_for
from trae2api.testing import SimulatedTrae

GRACE = 2.0


async def stream(url: str, text: str, started: asyncio.Event) -> tuple[list[Any], float]:
    """Every SSE data payload of one streamed chat, and when the stream ended."""
    body = {"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": text}]}
    headers = {"Authorization": f"Bearer {CLIENT_KEY}"}
    payloads: list[Any] = []
    async with (
        httpx.AsyncClient(timeout=60) as http,
        http.stream("POST", f"{url}/v1/chat/completions", json=body, headers=headers) as response,
    ):
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                started.set()
                data = line[6:]
                payloads.append(data if data == "[DONE]" else json.loads(data))
    return payloads, time.monotonic()


async def during_shutdown(gateway: GatewayProcess) -> tuple[list[Any], list[Any], float, float]:
    assert gateway.process is not None
    short_started, long_started = asyncio.Event(), asyncio.Event()
    short = asyncio.create_task(
        stream(gateway.url, "[sim:slow 200] [sim:long 6] hi", short_started)
    )
    long = asyncio.create_task(
        stream(gateway.url, "[sim:slow 200] [sim:long 100] hi", long_started)
    )
    await asyncio.wait_for(asyncio.gather(short_started.wait(), long_started.wait()), 10)
    gateway.process.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    await asyncio.sleep(0.5)
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient() as http:
            await http.get(f"{gateway.url}/healthz")
    (short_payloads, _), (long_payloads, long_ended) = await asyncio.gather(short, long)
    return short_payloads, long_payloads, signalled, long_ended


@pytest.mark.slow
def test_sigterm_drains_streams_then_ends_the_rest_in_band(
    sim: SimulatedTrae, tmp_path: Path
) -> None:
    """A short stream finishes normally, a long one gets an error event + [DONE]; exit 0."""
    env = gateway_env(sim, tmp_path / "data", SHUTDOWN_GRACE=GRACE)
    gateway = GatewayProcess(env=env, port=free_port(), log_path=tmp_path / "gateway.log")
    gateway.start()
    assert wait_for(lambda: sim.control.stats()["exchanges_ok"] == 1)
    try:
        short, long, signalled, long_ended = asyncio.run(during_shutdown(gateway))
        assert gateway.process is not None
        assert gateway.process.wait(timeout=15) == 0
    finally:
        gateway.stop()
    assert short[-1] == "[DONE]"
    assert short[-2]["choices"][0]["finish_reason"] == "stop"
    assert "word6" in "".join(p["choices"][0]["delta"].get("content") or "" for p in short[1:-2])
    assert long[-1] == "[DONE]"
    error = long[-2]["error"]
    assert error["code"] == "server_shutting_down"
    assert "SHUTDOWN_GRACE" in error["message"]
    assert GRACE - 0.5 <= long_ended - signalled <= GRACE + 3
    log_text = gateway.log_path.read_text()
    assert '"shutdown_draining"' in log_text
    assert '"shutdown_grace_over"' in log_text
    assert "Traceback" not in log_text
