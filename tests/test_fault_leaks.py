"""A thousand faulted requests against one ``trae2api serve`` process leak nothing.

Measured on the gateway process after a warm-up batch and again after the thousand: its TCP
connections to the simulator (psutil), its asyncio tasks (``/status``) and its RSS.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from conftest import CLIENT_KEY, GatewayProcess, free_port, gateway_env
from faultkit import classify
from trae2api.testing import SimulatedTrae

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]
CONCURRENCY = 20
WARM_UP = 200
REQUESTS = 1000
# (directive, how the client behaves): "read" reads the whole answer, "hangup" closes a stream
# after its first bytes, "impatient" gives up on a non-streamed answer after 0.1 s.
MIX = [
    ("", "read"),
    ("[sim:reset]", "read"),
    ("[sim:fault reset-midstream]", "read"),
    ("[sim:http 500]", "read"),
    ("[sim:fault stall-headers 2]", "read"),
    ("[sim:wait 2]", "read"),
    ("[sim:fault stall-midstream 2]", "read"),
    ("[sim:fault drip 0]", "read"),
    ("[sim:fault malformed]", "read"),
    ("[sim:fault oversized]", "read"),
    ("[sim:fault bad-utf8]", "read"),
    ("[sim:fault garbage]", "read"),
    ("[sim:midstream-error 5001]", "read"),
    ("[sim:nodone]", "read"),
    ("[sim:slow 50]", "hangup"),
    ("[sim:wait 1]", "impatient"),
]
MAX_TASK_GROWTH = 3
MAX_CONNECTION_GROWTH = 5
MAX_RSS_GROWTH = 16 * 1024 * 1024


async def one(http: httpx.AsyncClient, index: int) -> None:
    directive, behaviour = MIX[index % len(MIX)]
    stream = (index // len(MIX)) % 2 == 1 or behaviour == "hangup"
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": f"hi {directive}"}]}
    if behaviour == "impatient":
        with pytest.raises(httpx.ReadTimeout):
            # Only the answer is awaited impatiently: a connect slowed by a busy machine must
            # not end as a ConnectTimeout instead.
            await http.post("/v1/chat/completions", json=body, timeout=httpx.Timeout(15, read=0.1))
        return
    async with http.stream(
        "POST", "/v1/chat/completions", json={**body, "stream": stream}
    ) as response:
        if behaviour == "hangup":
            async for _ in response.aiter_raw():
                return  # closes the connection with the answer half read
        raw = await response.aread()
    classify(response.status_code, response.headers["content-type"], raw, stream=stream)


async def batch(url: str, start: int, count: int) -> None:
    limits = httpx.Limits(max_connections=CONCURRENCY)
    headers = {"Authorization": f"Bearer {CLIENT_KEY}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=15) as http:
        semaphore = asyncio.Semaphore(CONCURRENCY)

        async def limited(index: int) -> None:
            async with semaphore:
                await one(http, index)

        await asyncio.gather(*(limited(i) for i in range(start, start + count)))


def measure(gateway: GatewayProcess, sim_port: int) -> dict[str, int]:
    """Upstream connections, asyncio tasks and RSS of the gateway, once it is quiet again."""
    assert gateway.process is not None
    process = psutil.Process(gateway.process.pid)
    time.sleep(1.0)  # in-flight cleanups (a cancelled read, a closing socket) settle
    headers = {"Authorization": f"Bearer {CLIENT_KEY}"}
    status = httpx.get(f"{gateway.url}/status", headers=headers, timeout=5).json()
    connections = [
        c for c in process.net_connections(kind="tcp") if c.raddr and c.raddr.port == sim_port
    ]
    return {
        "upstream_connections": len(connections),
        "asyncio_tasks": status["runtime"]["asyncio_tasks"],
        "rss": process.memory_info().rss,
    }


def test_a_thousand_faulted_requests_leak_nothing(sim: SimulatedTrae, tmp_path: Path) -> None:
    """Connections, tasks and memory stay flat across 1,000 faulted requests."""
    env = gateway_env(
        sim,
        tmp_path / "data",
        UPSTREAM_READ_TIMEOUT=0.3,
        UPSTREAM_RETRIES=1,
        LOG_LEVEL="ERROR",
    )
    gateway = GatewayProcess(env, free_port(), tmp_path / "gateway.log").start()
    sim_port = int(sim.url.rsplit(":", 1)[1])
    try:
        asyncio.run(batch(gateway.url, 0, WARM_UP))
        before = measure(gateway, sim_port)
        started = time.monotonic()
        asyncio.run(batch(gateway.url, WARM_UP, REQUESTS))
        elapsed = time.monotonic() - started
        after = measure(gateway, sim_port)
    finally:
        gateway.stop()
    report(before, after, elapsed)
    assert after["asyncio_tasks"] <= before["asyncio_tasks"] + MAX_TASK_GROWTH
    assert after["upstream_connections"] <= max(before["upstream_connections"], CONCURRENCY) + (
        MAX_CONNECTION_GROWTH
    )
    assert after["rss"] - before["rss"] <= MAX_RSS_GROWTH


def report(before: dict[str, Any], after: dict[str, Any], elapsed: float) -> None:
    print(f"leak-check {REQUESTS} requests in {elapsed:.1f}s")
    for key in before:
        print(f"leak-check {key:22} before={before[key]:>12} after={after[key]:>12}")
