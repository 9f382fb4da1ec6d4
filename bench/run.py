"""Benchmark trae2api against the simulated Trae upstream it fronts, side by side.

Command line and orchestration; usage and how to read the figures: bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

# load, profiler, report and servers are this directory's modules: Python puts a script's
# directory first on sys.path, so they import alike from the repository root and from bench/.
import orjson
from load import (
    LoadClient,
    answer_prompt,
    direct_target,
    gateway_target,
    latency_phase,
    throughput_phase,
    timed_streams,
)
from profiler import Profiler
from report import BENCH_DIR, describe, goals, markdown, total_errors, write_readme
from servers import CpuMeter, Services, memory_mb, services

QUICK = {"requests": 30, "warmup": 5, "streams": [1, 20], "duration": 1.0}


async def measure(svc: Services, opts: argparse.Namespace) -> dict[str, Any]:
    """All the figures, with the two paths interleaved or back to back."""
    client = LoadClient()
    try:
        answer = gateway_target(svc, answer_prompt(opts.chunks), opts.chunks)
        direct = await direct_target(client, svc, answer)
        idle = memory_mb(svc.gateway.pid)
        meter = CpuMeter(svc.pids)
        latency = await latency_phase(client, [direct, answer], meter, opts)
        throughput = await throughput_phase(client, svc, [direct, answer], opts)
        if opts.profiler is not None:
            # An extra run, not reported: py-spy pauses the process to sample it.
            opts.profiler.start()
            streams = opts.profile_streams
            await timed_streams(client, answer, streams, opts.profiler.seconds + 0.5)
    finally:
        client.close()
    memory = {
        "gateway_idle": idle,
        "gateway": memory_mb(svc.gateway.pid),
        "simulator": memory_mb(svc.sim.pid),
        "client": memory_mb(os.getpid()),
    }
    return {"latency": latency, "throughput": throughput, "memory": memory}


# -- command line ----------------------------------------------------------------------------


def levels(text: str) -> list[int]:
    values = sorted({int(item) for item in text.split(",") if item.strip()})
    if not values or values[0] < 1:
        raise argparse.ArgumentTypeError("a comma-separated list of positive integers")
    return values


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300, help="sequential requests per path")
    parser.add_argument("--warmup", type=int, default=30, help="warm-up requests per path")
    parser.add_argument("--streams", type=levels, default=[1, 200, 1000], help="e.g. 1,200,1000")
    parser.add_argument("--chunks", type=int, default=50, help="16-char deltas per answer")
    parser.add_argument("--dialect", choices=("agent", "legacy"), default="agent")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per level and path")
    parser.add_argument("--quick", action="store_true", help="small numbers: a smoke run")
    parser.add_argument("--profile", action="store_true", help="py-spy the gateway under load")
    parser.add_argument("--profile-streams", type=int, default=200, help="streams when profiling")
    parser.add_argument("--write-readme", action="store_true", help="update bench/README.md")
    parser.add_argument("--output", type=Path, help="JSON results (default bench/results.json)")
    if "--quick" in argv:
        parser.set_defaults(**QUICK)
    opts = parser.parse_args(argv)
    default = "results-quick.json" if opts.quick else "results.json"
    opts.output = opts.output or BENCH_DIR / default
    return opts


def run(opts: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    results: dict[str, Any] = {"meta": describe(argv)}
    keys = ("requests", "warmup", "streams", "chunks", "duration", "dialect")
    results["options"] = {key: getattr(opts, key) for key in keys}
    with services(opts.dialect) as svc:
        opts.profiler = None
        if opts.profile:
            # The raw py-spy output stays in the run's temporary directory; only its summary
            # (the hot spots) goes into the results.
            seconds = max(2.0, opts.duration)
            opts.profiler = Profiler(svc.gateway.pid, seconds, svc.log_dir / "profile-gateway.txt")
        results.update(_run_loop(measure(svc, opts)))
        if opts.profiler is not None:
            results["profile"] = opts.profiler.hotspots()
            results["profile"]["streams"] = opts.profile_streams
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
