"""The benchmark's load: timed streams (TTFB, total, chunk counts) through either path.

Sequential latency sampling and concurrent-stream throughput runs, with their summaries.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
from rawhttp import READ_SIZE, Connection, Dechunker, HttpError, Pool, build_request, read_head
from servers import CpuMeter, Services, cpu_percent, memory_mb

CHAT_PATHS = {"legacy": "/api/ide/v1/chat", "agent": "/api/agent/v3/llm_utils_chat"}
# A non-reasoning model of each dialect's catalogue: every upstream output is answer text.
MODELS = {"legacy": "claude-3-5-sonnet", "agent": "claude-sonnet-4.5"}
# How each dialect frames an event (protocol §6; dialect: no space after the colon).
DIRECT_MARKS = {
    "legacy": (b"event: output", b"event: done"),
    "agent": (b"event:output", b"event:done"),
}
DELTA_CHARS = 16


def answer_prompt(pieces: int) -> str:
    """A prompt whose answer streams as ``pieces`` deltas of exactly 16 characters each
    (``[sim:pieces a|b|c]``: the simulator's outputs are exactly these texts)."""
    texts = [f"delta-{index:03d}-abcdef" for index in range(pieces)]
    assert all(len(text) == DELTA_CHARS for text in texts)
    return f"[sim:pieces {'|'.join(texts)}] answer for the benchmark"


# -- one stream ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One way to ask for a stream: where, with what, and how to recognise its chunks."""

    name: str
    url: str
    headers: dict[str, str]
    body: bytes
    mark: bytes  # occurs once per content chunk
    end: bytes  # occurs once the stream is complete
    expected: int | None  # content chunks per stream, when known

    @property
    def request(self) -> tuple[str, int, bytes]:
        return build_request(self.url, self.headers, self.body)


@dataclass(frozen=True)
class StreamResult:
    ttfb: float
    total: float
    chunks: int
    error: str | None = None


class Scanner:
    """Counts ``mark`` and spots ``end`` in a byte stream, across read boundaries."""

    def __init__(self, mark: bytes, end: bytes) -> None:
        self.mark, self.end = mark, end
        self.keep = max(len(mark), len(end)) - 1
        self.tail = b""
        self.chunks = 0
        self.ended = False

    def feed(self, data: bytes) -> int:
        window = self.tail + data
        # Marks lying wholly in the tail were counted with the previous read.
        found = window.count(self.mark) - self.tail.count(self.mark)
        self.ended = self.ended or self.end in window
        self.tail = window[-self.keep :]
        self.chunks += found
        return found


class LoadClient:
    """The load generator's connections: one keep-alive pool per server, requests built once."""

    def __init__(self) -> None:
        self.pools: dict[tuple[str, int], Pool] = {}
        self.built: dict[int, tuple[Pool, bytes]] = {}  # by id(target): targets live for the run

    def prepare(self, target: Target) -> tuple[Pool, bytes]:
        if id(target) not in self.built:
            host, port, request = target.request
            pool = self.pools.setdefault((host, port), Pool(host, port))
            self.built[id(target)] = (pool, request)
        return self.built[id(target)]

    def close(self) -> None:
        for pool in self.pools.values():
            pool.close()


async def run_stream(client: LoadClient, target: Target) -> StreamResult:
    """One request, timed to its first content chunk and to its end."""
    pool, request = client.prepare(target)
    scanner = Scanner(target.mark, target.end)
    ttfb = 0.0
    conn: Connection | None = None
    start = time.perf_counter()
    try:
        conn = await pool.acquire()
        conn.writer.write(request)
        status, fields = await read_head(conn.reader)
        if status != 200 or fields.get(b"transfer-encoding") != b"chunked":
            conn.close()
            return StreamResult(0.0, 0.0, 0, f"HTTP {status}")
        dechunker = Dechunker()
        while not dechunker.complete:
            data = await conn.reader.read(READ_SIZE)
            if not data:
                raise HttpError("connection closed mid-body")
            if scanner.feed(dechunker.feed(data)) and not ttfb:
                ttfb = time.perf_counter() - start
    except (OSError, HttpError, ValueError) as exc:
        if conn is not None:
            conn.close()
        where = f"after {scanner.chunks} chunks" if ttfb else "before the first chunk"
        return StreamResult(0.0, 0.0, scanner.chunks, f"{type(exc).__name__} {where}: {exc!s:.80}")
    total = time.perf_counter() - start
    if fields.get(b"connection") == b"close":
        conn.close()
    else:
        pool.release(conn)
    return StreamResult(ttfb, total, scanner.chunks, _stream_error(scanner, target))


def _stream_error(scanner: Scanner, target: Target) -> str | None:
    if not scanner.ended:
        return "stream did not end"
    if scanner.chunks == 0 or target.expected not in (None, scanner.chunks):
        return f"{scanner.chunks} content chunks (expected {target.expected or '> 0'})"
    return None


# -- targets ---------------------------------------------------------------------------------


def gateway_target(svc: Services, prompt: str, expected: int | None) -> Target:
    model = MODELS[svc.dialect]
    body = {"model": model, "stream": True, "messages": [{"role": "user", "content": prompt}]}
    headers = {"authorization": f"Bearer {svc.auth_token}", "content-type": "application/json"}
    url = svc.gateway_url + "/v1/chat/completions"
    mark, end = b'"delta":{"content":"', b"data: [DONE]"
    return Target("gateway", url, headers, orjson.dumps(body), mark, end, expected)


async def direct_target(client: LoadClient, svc: Services, gateway: Target) -> Target:
    """The simulator-direct twin of ``gateway``: the very request the gateway sent upstream
    (headers and body, read back from the simulator's record of the last chat)."""
    result = await run_stream(client, gateway)
    if result.error:
        raise RuntimeError(f"the gateway failed the capture request: {result.error}")
    async with httpx.AsyncClient(trust_env=False) as http:
        captured = (await http.get(svc.sim_url + "/_sim/last_chat")).raise_for_status().json()
    dialect = captured.get("dialect", "legacy")
    if dialect != svc.dialect:
        raise RuntimeError(f"the gateway spoke the {dialect} dialect, not {svc.dialect}")
    headers = {
        name: value
        for name, value in captured["headers"].items()
        if name not in ("host", "content-length")
    }
    body = orjson.dumps(captured["body"])
    url = svc.sim_url + CHAT_PATHS[dialect]
    mark, end = DIRECT_MARKS[dialect]
    return Target("direct", url, headers, body, mark, end, gateway.expected)


# -- summaries -------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile ``q`` (0–100) of ``values``; 0 when empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def error_summary(results: list[StreamResult]) -> dict[str, Any]:
    errors = [r.error for r in results if r.error]
    return {"errors": len(errors), "error_examples": sorted(set(errors))[:3]}


def latency_summary(results: list[StreamResult]) -> dict[str, Any]:
    ok = [r for r in results if not r.error]
    ttfb, total = [r.ttfb for r in ok], [r.total for r in ok]
    return {
        "requests": len(results),
        "ttfb_p50_ms": ms(percentile(ttfb, 50)),
        "ttfb_p90_ms": ms(percentile(ttfb, 90)),
        "ttfb_p99_ms": ms(percentile(ttfb, 99)),
        "total_p50_ms": ms(percentile(total, 50)),
        "total_p99_ms": ms(percentile(total, 99)),
        "chunks_per_reply": ok[0].chunks if ok else 0,
        **error_summary(results),
    }


def added_latency(direct: dict[str, Any], gateway: dict[str, Any]) -> dict[str, float]:
    """What the gateway adds to the direct path's latency figures."""
    return {
        "ttfb_p50_ms": round(gateway["ttfb_p50_ms"] - direct["ttfb_p50_ms"], 3),
        "ttfb_p99_ms": round(gateway["ttfb_p99_ms"] - direct["ttfb_p99_ms"], 3),
        "ttfb_p50_ratio": round(gateway["ttfb_p50_ms"] / max(direct["ttfb_p50_ms"], 1e-9), 2),
        "total_p50_ms": round(gateway["total_p50_ms"] - direct["total_p50_ms"], 3),
    }


# -- phases ----------------------------------------------------------------------------------


async def latency_phase(
    client: LoadClient, targets: list[Target], meter: CpuMeter, opts: argparse.Namespace
) -> dict[str, Any]:
    """Sequential requests, alternating which path goes first so drift hits both alike."""
    samples: dict[str, list[StreamResult]] = {target.name: [] for target in targets}
    for index in range(opts.warmup + opts.requests):
        if index == opts.warmup:
            meter.start()
        for target in targets if index % 2 == 0 else targets[::-1]:
            result = await run_stream(client, target)
            if index >= opts.warmup:
                samples[target.name].append(result)
    used = meter.read()
    summary: dict[str, Any] = {"cpu_percent": cpu_percent(used)}
    summary.update((name, latency_summary(results)) for name, results in samples.items())
    summary["added"] = added_latency(summary["direct"], summary["gateway"])
    # Only gateway requests reach the gateway; its CPU over the phase is theirs.
    summary["gateway_cpu_ms_per_request"] = round(1000 * used["gateway"] / opts.requests, 3)
    return summary


async def timed_streams(
    client: LoadClient, target: Target, streams: int, duration: float
) -> tuple[list[StreamResult], float]:
    """``streams`` workers, each starting streams back to back until ``duration`` is over."""
    start = time.perf_counter()
    deadline = start + duration

    async def worker() -> list[StreamResult]:
        results = [await run_stream(client, target)]
        while time.perf_counter() < deadline:
            results.append(await run_stream(client, target))
        return results

    batches = await asyncio.gather(*(worker() for _ in range(streams)))
    return [result for batch in batches for result in batch], time.perf_counter() - start


async def throughput_run(
    client: LoadClient,
    target: Target,
    streams: int,
    opts: argparse.Namespace,
    meter: CpuMeter,
) -> dict[str, Any]:
    """Chunks per second at ``streams`` concurrent streams, with each process's CPU share."""
    warm = await asyncio.gather(*(run_stream(client, target) for _ in range(streams)))
    meter.start()
    results, elapsed = await timed_streams(client, target, streams, opts.duration)
    used = meter.read()
    chunks = sum(result.chunks for result in results)
    ok = [result.ttfb for result in results if not result.error]
    per_chunk = {name: round(1e6 * value / max(chunks, 1), 1) for name, value in used.items()}
    per_request = {
        name: round(1e3 * value / max(len(results), 1), 3) for name, value in used.items()
    }
    return {
        "streams_completed": len(results),
        "seconds": round(elapsed, 3),
        "chunks": chunks,
        "chunks_per_s": round(chunks / elapsed),
        "ttfb_p50_ms": ms(percentile(ok, 50)),
        "ttfb_p99_ms": ms(percentile(ok, 99)),
        "cpu_percent": cpu_percent(used),
        "cpu_us_per_chunk": {k: v for k, v in per_chunk.items() if k not in ("wall", "other")},
        "cpu_ms_per_request": {k: v for k, v in per_request.items() if k not in ("wall", "other")},
        **error_summary([*warm, *results]),
    }


async def throughput_phase(
    client: LoadClient, svc: Services, targets: list[Target], opts: argparse.Namespace
) -> list[dict[str, Any]]:
    """Every concurrency level, direct then gateway; the gateway's RSS after each level."""
    meter = CpuMeter(svc.pids)
    rows = []
    for streams in opts.streams:
        row: dict[str, Any] = {"streams": streams}
        for target in targets:
            row[target.name] = await throughput_run(client, target, streams, opts, meter)
        row["gateway_over_direct"] = round(
            row["gateway"]["chunks_per_s"] / max(row["direct"]["chunks_per_s"], 1), 3
        )
        row["gateway_memory"] = memory_mb(svc.gateway.pid)
        rows.append(row)
    return rows
