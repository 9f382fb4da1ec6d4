"""Benchmark trae2api against the simulated Trae upstream it fronts, side by side.

Two child processes on loopback: the simulator (``python -m trae2api.testing``) and the
gateway (``trae2api serve``). The same streams are measured two ways:

* direct: the legacy chat body POSTed straight to the simulator's ``/api/ide/v1/chat``;
* gateway: ``POST /v1/chat/completions`` with ``stream=true`` through trae2api.

The direct requests replay exactly what the gateway sends: one gateway request per prompt is
made first and the simulator's ``/_sim/last_chat`` gives back its headers (including the
gateway's access token, which stays valid: access tokens are not single-use) and its body.

Usage: ``python bench/run.py`` (a few minutes on 2 cores), ``python bench/run.py --quick``
(a smoke run), ``--write-readme`` to refresh the results section of ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import platform
import secrets
import select
import shlex
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx
import orjson

from trae2api.config import Settings

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_JSON = BENCH_DIR / "results.json"
README = BENCH_DIR / "README.md"
MARK_START, MARK_END = "<!-- results:start -->", "<!-- results:end -->"
ACCOUNT_KEYS = ("APP_ID", "CLIENT_ID", "USER_ID", "REFRESH_TOKEN", "BASE_URL", "REFRESH_TOKEN_URL")
CHAT_PATH = "/api/ide/v1/chat"
MODEL = "claude-3-5-sonnet"
SHORT_PROMPT = "Say hello to the benchmark"
GOAL_ADDED_TTFB_MS = 2.0
GOAL_RSS_MB = 150.0
START_TIMEOUT = 30.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- child processes -------------------------------------------------------------------------


@dataclass
class Services:
    """The two running children and where they listen."""

    sim: subprocess.Popen[bytes]
    gateway: subprocess.Popen[bytes]
    sim_url: str
    gateway_url: str
    auth_token: str
    log_dir: Path

    @property
    def pids(self) -> dict[str, int]:
        return {"simulator": self.sim.pid, "gateway": self.gateway.pid, "client": os.getpid()}


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def read_account(proc: subprocess.Popen[bytes], timeout: float = START_TIMEOUT) -> dict[str, str]:
    """The ``KEY=value`` lines the simulator prints once it is bound."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    account: dict[str, str] = {}
    while not set(ACCOUNT_KEYS) <= account.keys():
        ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            raise RuntimeError("the simulator did not print its account in time")
        line = proc.stdout.readline().decode()
        if not line:
            raise RuntimeError(f"the simulator exited with status {proc.wait()}")
        key, sep, value = line.strip().partition("=")
        if sep:
            account[key] = value
    return account


def start_simulator(log: IO[bytes]) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    command = [sys.executable, "-m", "trae2api.testing", "--host", "127.0.0.1", "--port", "0"]
    # bufsize=0: readline() then reads the pipe byte by byte, so select() stays truthful.
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, bufsize=0)
    try:
        return proc, read_account(proc)
    except BaseException:
        stop(proc)
        raise


def gateway_env(account: dict[str, str], port: int, data_dir: Path, token: str) -> dict[str, str]:
    """The inherited environment minus any trae2api setting, plus the benchmark's own."""
    fields = {name.upper() for name in Settings.model_fields}
    env = {key: value for key, value in os.environ.items() if key.upper() not in fields}
    env.update({key: account[key] for key in ACCOUNT_KEYS})
    env.update(
        HOST="127.0.0.1",
        PORT=str(port),
        DATA_DIR=str(data_dir),
        AUTH_TOKEN=token,
        LOG_LEVEL="WARNING",
    )
    return env


def start_gateway(env: dict[str, str], log: IO[bytes], cwd: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "trae2api", "serve", "--env-file", "/dev/null"]
    return subprocess.Popen(command, env=env, stdout=log, stderr=log, cwd=cwd)


def wait_ready(
    base_url: str, proc: subprocess.Popen[bytes], timeout: float = START_TIMEOUT
) -> None:
    """Poll ``/readyz`` (then ``/healthz``) until it answers 200."""
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=5.0, trust_env=False) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"the gateway exited with status {proc.returncode}")
            for path in ("/readyz", "/healthz"):
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(base_url + path).status_code == 200 and path == "/readyz":
                        return
            time.sleep(0.1)
    raise RuntimeError(f"the gateway at {base_url} was not ready within {timeout:g} s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 10 s; only this one child."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


@contextlib.contextmanager
def services() -> Iterator[Services]:
    """Start the simulator and the gateway; always stop both (and delete the temp dir)."""
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="trae2api-bench-")))
        sim_log = stack.enter_context((tmp / "simulator.log").open("wb"))
        gw_log = stack.enter_context((tmp / "gateway.log").open("wb"))
        sim, account = start_simulator(sim_log)
        stack.callback(stop, sim)
        port, token = free_port(), "bench-" + secrets.token_hex(16)
        env = gateway_env(account, port, tmp / "data", token)
        gateway = start_gateway(env, gw_log, tmp)
        stack.callback(stop, gateway)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_ready(url, gateway)
        except RuntimeError:
            sys.stderr.write((tmp / "gateway.log").read_text(errors="replace")[-3000:])
            raise
        yield Services(sim, gateway, account["BASE_URL"], url, token, tmp)


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


async def run_stream(client: httpx.AsyncClient, target: Target) -> StreamResult:
    """One request, timed to its first content chunk and to its end."""
    scanner = Scanner(target.mark, target.end)
    ttfb = 0.0
    start = time.perf_counter()
    try:
        request = client.stream("POST", target.url, content=target.body, headers=target.headers)
        async with request as response:
            if response.status_code != 200:
                await response.aread()
                return StreamResult(0.0, 0.0, 0, f"HTTP {response.status_code}")
            async for data in response.aiter_raw():
                if scanner.feed(data) and not ttfb:
                    ttfb = time.perf_counter() - start
    except httpx.HTTPError as exc:
        where = f"after {scanner.chunks} chunks" if ttfb else "before the first chunk"
        error = f"{type(exc).__name__} {where}: {exc!r:.120}"
        return StreamResult(0.0, 0.0, scanner.chunks, error)
    total = time.perf_counter() - start
    return StreamResult(ttfb, total, scanner.chunks, _stream_error(scanner, target))


def _stream_error(scanner: Scanner, target: Target) -> str | None:
    if not scanner.ended:
        return "stream did not end"
    if scanner.chunks == 0 or target.expected not in (None, scanner.chunks):
        return f"{scanner.chunks} content chunks (expected {target.expected or '> 0'})"
    return None


# -- targets ---------------------------------------------------------------------------------


def gateway_target(svc: Services, prompt: str, expected: int | None) -> Target:
    body = {"model": MODEL, "stream": True, "messages": [{"role": "user", "content": prompt}]}
    headers = {"authorization": f"Bearer {svc.auth_token}", "content-type": "application/json"}
    url = svc.gateway_url + "/v1/chat/completions"
    mark, end = b'"delta":{"content":', b"data: [DONE]"
    return Target("gateway", url, headers, orjson.dumps(body), mark, end, expected)


async def direct_target(client: httpx.AsyncClient, svc: Services, gateway: Target) -> Target:
    """The simulator-direct twin of ``gateway``: the very request the gateway sent upstream."""
    result = await run_stream(client, gateway)
    if result.error:
        raise RuntimeError(f"the gateway failed the capture request: {result.error}")
    captured = (await client.get(svc.sim_url + "/_sim/last_chat")).raise_for_status().json()
    headers = {
        name: value
        for name, value in captured["headers"].items()
        if name.startswith("x-") or name in ("content-type", "accept")
    }
    body = orjson.dumps(captured["body"])
    url = svc.sim_url + CHAT_PATH
    return Target("direct", url, headers, body, b"event: output", b"event: done", gateway.expected)


# -- process figures -------------------------------------------------------------------------


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """User + system CPU time of each process so far (all threads), and of the whole machine
    (``machine``: every busy jiffy of ``/proc/stat``, whoever spent it)."""
    times = {}
    for name, pid in pids.items():
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
        times[name] = (int(fields[11]) + int(fields[12])) / CLK_TCK
    jiffies = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    times["machine"] = (sum(jiffies[:8]) - jiffies[3] - jiffies[4]) / CLK_TCK  # minus idle, iowait
    return times


class CpuMeter:
    """CPU used by each process since ``start()``, and by the rest of the machine (``other``:
    other jobs sharing the cores skew every figure, so it is reported alongside)."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.before = cpu_seconds(pids)
        self.started = time.perf_counter()

    def start(self) -> None:
        self.before, self.started = cpu_seconds(self.pids), time.perf_counter()

    def read(self) -> dict[str, float]:
        """Seconds of CPU per process since ``start()``, plus ``wall``."""
        now = cpu_seconds(self.pids)
        used = {name: now[name] - self.before[name] for name in now}
        used["other"] = max(0.0, used.pop("machine") - sum(used.values()))
        used["wall"] = time.perf_counter() - self.started
        return used


def cpu_percent(used: dict[str, float]) -> dict[str, int]:
    """CPU per process as a percentage of one core over the wall time."""
    wall = max(used["wall"], 1e-9)
    return {name: round(100 * value / wall) for name, value in used.items() if name != "wall"}


def memory_mb(pid: int) -> dict[str, float]:
    """``VmRSS`` (now) and ``VmHWM`` (peak) in MB, from ``/proc/<pid>/status``."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = round(int(value.split()[0]) / 1024, 1)
    return {"rss_mb": found["VmRSS"], "peak_rss_mb": found["VmHWM"]}


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


# -- phases ----------------------------------------------------------------------------------


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


async def latency_phase(
    client: httpx.AsyncClient, targets: list[Target], meter: CpuMeter, opts: argparse.Namespace
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
    summary: dict[str, Any] = {"cpu_percent": cpu_percent(meter.read())}
    summary.update((name, latency_summary(results)) for name, results in samples.items())
    direct, gateway = summary["direct"], summary["gateway"]
    summary["added"] = {
        "ttfb_p50_ms": round(gateway["ttfb_p50_ms"] - direct["ttfb_p50_ms"], 3),
        "ttfb_p99_ms": round(gateway["ttfb_p99_ms"] - direct["ttfb_p99_ms"], 3),
        "ttfb_p50_ratio": round(gateway["ttfb_p50_ms"] / max(direct["ttfb_p50_ms"], 1e-9), 2),
        "total_p50_ms": round(gateway["total_p50_ms"] - direct["total_p50_ms"], 3),
    }
    return summary


async def timed_streams(
    client: httpx.AsyncClient, target: Target, streams: int, duration: float
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
    client: httpx.AsyncClient,
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
    return {
        "streams_completed": len(results),
        "seconds": round(elapsed, 3),
        "chunks": chunks,
        "chunks_per_s": round(chunks / elapsed),
        "ttfb_p50_ms": ms(percentile(ok, 50)),
        "ttfb_p99_ms": ms(percentile(ok, 99)),
        "cpu_percent": cpu_percent(used),
        "cpu_us_per_chunk": {k: v for k, v in per_chunk.items() if k not in ("wall", "other")},
        **error_summary([*warm, *results]),
    }


class Profiler:
    """``py-spy record`` of the gateway during the largest gateway run (``--profile``)."""

    def __init__(self, pid: int, seconds: float, output: Path) -> None:
        self.pid, self.seconds, self.output = pid, seconds, output
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = ["py-spy", "record", "--pid", str(self.pid), "--duration", f"{self.seconds:g}"]
        command += ["--rate", "250", "--function", "--format", "raw", "--output", str(self.output)]
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def hotspots(self, top: int = 12) -> dict[str, Any]:
        """The top functions by own ("self") and inclusive ("total") share of samples."""
        if self.proc is None:
            return {}
        _, err = self.proc.communicate(timeout=self.seconds + 30)
        if self.proc.returncode != 0 or not self.output.exists():
            return {"error": err.decode(errors="replace")[-500:]}
        own: dict[str, int] = {}
        inclusive: dict[str, int] = {}
        total = 0
        for line in self.output.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            frames, samples = stack.split(";"), int(count)
            total += samples
            own[frames[-1]] = own.get(frames[-1], 0) + samples
            for frame in set(frames):
                inclusive[frame] = inclusive.get(frame, 0) + samples
        ours = {frame: count for frame, count in inclusive.items() if "trae2api/" in frame}
        return {
            "samples": total,
            "self": _top(own, total, top),
            "total": _top(inclusive, total, top),
            "trae2api_total": _top(ours, total, top),
        }


def _top(counts: dict[str, int], total: int, top: int) -> list[list[Any]]:
    ranked = sorted(counts.items(), key=lambda item: -item[1])[:top]
    return [[frame, round(100 * count / max(total, 1), 1)] for frame, count in ranked]


async def throughput_phase(
    client: httpx.AsyncClient, svc: Services, targets: list[Target], opts: argparse.Namespace
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


async def measure(svc: Services, opts: argparse.Namespace) -> dict[str, Any]:
    """All the figures, with the two paths interleaved or back to back."""
    limit = max(opts.streams) + 16
    # Idle connections are dropped after 1 s, well before uvicorn's 5 s keep-alive timeout on
    # both servers: with equal timers a request can go out on a connection the server is just
    # closing (httpx ReadError), and each timed run leaves the other path idle for ~5 s.
    limits = httpx.Limits(
        max_connections=limit, max_keepalive_connections=limit, keepalive_expiry=1.0
    )
    client = httpx.AsyncClient(timeout=httpx.Timeout(120.0), limits=limits, trust_env=False)
    async with client:
        short = gateway_target(svc, SHORT_PROMPT, None)
        long = gateway_target(
            svc, f"[sim:long {opts.chunks}] stream for the benchmark", opts.chunks
        )
        short_direct = await direct_target(client, svc, short)
        long_direct = await direct_target(client, svc, long)
        idle = memory_mb(svc.gateway.pid)
        meter = CpuMeter(svc.pids)
        latency = await latency_phase(client, [short_direct, short], meter, opts)
        throughput = await throughput_phase(client, svc, [long_direct, long], opts)
        if opts.profiler is not None:
            # An extra run, not reported: py-spy pauses the process to sample it.
            opts.profiler.start()
            await timed_streams(client, long, opts.streams[-1], opts.profiler.seconds + 0.5)
    memory = {
        "gateway_idle": idle,
        "gateway": memory_mb(svc.gateway.pid),
        "simulator": memory_mb(svc.sim.pid),
        "client": memory_mb(os.getpid()),
    }
    return {"latency": latency, "throughput": throughput, "memory": memory}


# -- report ----------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
    }


def revision() -> str:
    """The commit benchmarked, marked ``+dirty`` when the working tree has changes."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], capture_output=True, text=True, cwd=BENCH_DIR)
        return done.stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return commit + ("+dirty" if git("status", "--porcelain", "--", "../src") else "")


def total_errors(results: dict[str, Any]) -> int:
    latency = results["latency"]
    count = latency["direct"]["errors"] + latency["gateway"]["errors"]
    for row in results["throughput"]:
        count += row["direct"]["errors"] + row["gateway"]["errors"]
    return int(count)


def goals(results: dict[str, Any]) -> list[dict[str, Any]]:
    added = results["latency"]["added"]["ttfb_p50_ms"]
    top = results["throughput"][-1]
    errors = total_errors(results)
    peak = results["memory"]["gateway"]["peak_rss_mb"]
    return [
        {
            "goal": "added TTFB p50 (gateway − direct)",
            "target": f"≤ {GOAL_ADDED_TTFB_MS:g} ms",
            "measured": f"{added:.3f} ms",
            "met": added <= GOAL_ADDED_TTFB_MS,
        },
        {
            "goal": f"{top['streams']} concurrent streams, every request of the run",
            "target": "200 streams, 0 errors",
            "measured": f"{errors} errors",
            "met": errors == 0 and top["streams"] >= 200,
        },
        {
            "goal": "gateway peak RSS (VmHWM)",
            "target": f"≤ {GOAL_RSS_MB:g} MB",
            "measured": f"{peak:.1f} MB",
            "met": peak <= GOAL_RSS_MB,
        },
    ]


def table(headers: list[str], rows: list[list[Any]]) -> str:
    """A Markdown table padded so that it also reads well in a terminal."""
    cells = [headers, *[[str(cell) for cell in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: list[str]) -> str:
        return (
            "| "
            + " | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
            + " |"
        )

    rule = "|" + "|".join("-" * (width + 2) for width in widths) + "|"
    return "\n".join([line(cells[0]), rule, *(line(row) for row in cells[1:])])


def latency_table(latency: dict[str, Any]) -> str:
    keys = ["ttfb_p50_ms", "ttfb_p90_ms", "ttfb_p99_ms", "total_p50_ms", "total_p99_ms"]
    rows = [
        [name, *(f"{latency[name][key]:.3f}" for key in keys), latency[name]["errors"]]
        for name in ("direct", "gateway")
    ]
    added = latency["added"]
    rows.append(
        [
            "**added by the gateway**",
            f"+{added['ttfb_p50_ms']:.3f}",
            "",
            f"+{added['ttfb_p99_ms']:.3f}",
            f"+{added['total_p50_ms']:.3f}",
            "",
            "",
        ]
    )
    headers = ["path", "TTFB p50", "TTFB p90", "TTFB p99", "total p50", "total p99", "errors"]
    return table(headers, rows)


def throughput_table(rows: list[dict[str, Any]]) -> str:
    body = []
    for row in rows:
        direct, gateway = row["direct"], row["gateway"]
        body.append(
            [
                row["streams"],
                f"{direct['chunks_per_s']:,}",
                f"{gateway['chunks_per_s']:,}",
                f"{row['gateway_over_direct']:.2f}",
                f"{direct['ttfb_p50_ms']:.1f} / {gateway['ttfb_p50_ms']:.1f}",
                f"{direct['errors']} / {gateway['errors']}",
                f"{gateway['cpu_percent']['gateway']} %",
                f"{direct['cpu_percent']['other']} / {gateway['cpu_percent']['other']} %",
                f"{gateway['cpu_us_per_chunk']['gateway']:.1f}",
                f"{row['gateway_memory']['rss_mb']:.1f}",
            ]
        )
    headers = [
        "streams",
        "direct chunks/s",
        "gateway chunks/s",
        "gateway ÷ direct",
        "TTFB p50 ms direct / gateway",
        "errors direct / gateway",
        "gateway CPU",
        "other jobs' CPU direct / gateway",
        "gateway CPU µs/chunk",
        "gateway RSS MB",
    ]
    return table(headers, body)


def memory_table(memory: dict[str, Any], top: int) -> str:
    labels = {
        "gateway_idle": "gateway, after start-up",
        "gateway": f"gateway, after the {top}-stream run",
        "simulator": "simulator (reference)",
        "client": "load generator (reference)",
    }
    rows = [
        [label, f"{memory[key]['rss_mb']:.1f}", f"{memory[key]['peak_rss_mb']:.1f}"]
        for key, label in labels.items()
    ]
    return table(["process", "RSS MB (VmRSS)", "peak MB (VmHWM)"], rows)


def goals_table(results: dict[str, Any]) -> str:
    rows = [
        [goal["goal"], goal["target"], goal["measured"], "yes" if goal["met"] else "**no**"]
        for goal in results["goals"]
    ]
    return table(["goal", "target", "measured", "met"], rows)


def hotspots_section(profile: dict[str, Any]) -> list[str]:
    if not profile:
        return []
    if "error" in profile:
        return ["", f"py-spy failed: `{profile['error'].strip()}`"]
    own = [[f"`{frame}`", f"{share} %"] for frame, share in profile["self"]]
    ours = [[f"`{frame}`", f"{share} %"] for frame, share in profile["trae2api_total"]]
    return [
        "",
        f"**Gateway hot spots** (`--profile`: py-spy, {profile['samples']} samples of an extra, "
        "unreported run at the largest level). Own time (the function itself was running):",
        "",
        table(["function", "self"], own),
        "",
        "Inclusive time of trae2api's own functions (callees included):",
        "",
        table(["function", "total"], ours),
    ]


def markdown(results: dict[str, Any]) -> str:
    meta, opts, latency = results["meta"], results["options"], results["latency"]
    box = meta["machine"]
    top = results["throughput"][-1]["streams"]
    added = latency["added"]
    lines = [
        f"Measured {meta['date']} on {box['nproc']} CPUs ({box['cpu']}), Python {box['python']}, "
        f"{box['platform']}; trae2api {meta['trae2api']} at {meta['revision']}.",
        "",
        f"Command: `{meta['command']}`",
        "",
        f"**Latency, short reply** ({latency['gateway']['chunks_per_reply']} content chunks, "
        f"{opts['requests']} sequential requests per path after {opts['warmup']} warm-up; ms):",
        "",
        latency_table(latency),
        "",
        f"Added time to first chunk, p50: **{added['ttfb_p50_ms']:.3f} ms** "
        f"(gateway ÷ direct = {added['ttfb_p50_ratio']:.2f}×). CPU used meanwhile by jobs "
        f"outside the benchmark: {latency['cpu_percent']['other']} % of one core.",
        "",
        f"**Streaming throughput** (`[sim:long {opts['chunks']}]`: {opts['chunks']} content "
        f"chunks per stream, {opts['duration']:g} s per level and path):",
        "",
        throughput_table(results["throughput"]),
        "",
        "**Memory:**",
        "",
        memory_table(results["memory"], top),
        "",
        "**Goals:**",
        "",
        goals_table(results),
        *hotspots_section(results.get("profile", {})),
    ]
    return "\n".join(lines) + "\n"


def write_readme(section: str) -> None:
    """Replace what lies between the result markers of ``bench/README.md``."""
    text = README.read_text() if README.exists() else f"# Benchmark\n\n{MARK_START}\n{MARK_END}\n"
    head, found, rest = text.partition(MARK_START)
    if not found or MARK_END not in rest:
        raise SystemExit(f"{README} lacks the markers {MARK_START} / {MARK_END}")
    tail = rest.split(MARK_END, 1)[1]
    README.write_text(f"{head}{MARK_START}\n{section}{MARK_END}{tail}")


# -- command line ----------------------------------------------------------------------------

QUICK = {"requests": 30, "warmup": 5, "streams": [1, 20], "chunks": 50, "duration": 1.0}


def levels(text: str) -> list[int]:
    values = sorted({int(item) for item in text.split(",") if item.strip()})
    if not values or values[0] < 1:
        raise argparse.ArgumentTypeError("a comma-separated list of positive integers")
    return values


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300, help="sequential requests per path")
    parser.add_argument("--warmup", type=int, default=30, help="warm-up requests per path")
    parser.add_argument("--streams", type=levels, default=[1, 50, 200], help="e.g. 1,50,200")
    parser.add_argument("--chunks", type=int, default=200, help="content chunks per stream")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per level and path")
    parser.add_argument("--quick", action="store_true", help="small numbers: a smoke run")
    parser.add_argument("--profile", action="store_true", help="py-spy the gateway under load")
    parser.add_argument("--write-readme", action="store_true", help="update bench/README.md")
    parser.add_argument("--output", type=Path, help="JSON results (default bench/results.json)")
    if "--quick" in argv:
        parser.set_defaults(**QUICK)
    opts = parser.parse_args(argv)
    default = "results-quick.json" if opts.quick else "results.json"
    opts.output = opts.output or BENCH_DIR / default
    return opts


def describe(opts: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    from trae2api import __version__

    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "trae2api": __version__,
        "revision": revision(),
        "command": shlex.join(["python", "bench/run.py", *argv]),
    }


def run(opts: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    results: dict[str, Any] = {"meta": describe(opts, argv)}
    keys = ("requests", "warmup", "streams", "chunks", "duration")
    results["options"] = {key: getattr(opts, key) for key in keys}
    with services() as svc:
        opts.profiler = None
        if opts.profile:
            seconds = max(2.0, opts.duration)
            opts.profiler = Profiler(svc.gateway.pid, seconds, BENCH_DIR / "profile-gateway.txt")
        results.update(_run_loop(measure(svc, opts)))
        if opts.profiler is not None:
            results["profile"] = opts.profiler.hotspots()
        results["logs"] = {
            name: (svc.log_dir / f"{name}.log").read_text(errors="replace").splitlines()[-30:]
            for name in ("gateway", "simulator")
        }
    results["goals"] = goals(results)
    return results


def _run_loop(job: Awaitable[dict[str, Any]]) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        return await job

    try:
        import uvloop
    except ImportError:
        return asyncio.run(main())
    return uvloop.run(main())


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    opts = parse_args(argv)
    results = run(opts, argv)
    section = markdown(results)
    print(section)
    opts.output.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2) + b"\n")
    opts.output.with_suffix(".md").write_text(section)
    if opts.write_readme:
        write_readme(section)
    print(f"wrote {opts.output} and {opts.output.with_suffix('.md')}", file=sys.stderr)
    return 1 if total_errors(results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
