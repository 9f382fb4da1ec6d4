"""Gateway CPU per request of two or more trees, their gateways serving alternated requests.

``compare.py`` runs whole benchmarks one tree after the other; on a shared machine the drift
between runs can exceed a small change. Here every tree's gateway runs at once, each on its own
simulated upstream (refresh tokens are single-use), and one sequential client sends the same
streamed chat to each in turn, alternating the order, block after block. Each gateway's CPU
time (``/proc/<pid>/task/*/schedstat``, nanoseconds) over a block ÷ its requests is one sample;
drift hits every tree alike. The processes share the cores, so absolute figures run higher
than ``run.py``'s; read the differences.

A tree is ``NAME=DIR``: a checkout whose ``DIR/src`` goes first on its gateway's PYTHONPATH
(``git worktree add /tmp/old <commit>`` makes one). The simulators run this interpreter's tree.

    python bench/interleave.py old=/tmp/old new=. --requests 2000 --blocks 4
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
from pathlib import Path

from load import LoadClient, Target, answer_prompt, gateway_target, run_stream
from servers import services as started


def schedstat_seconds(pid: int) -> float:
    """CPU time of every thread of ``pid`` so far (schedstat: nanoseconds, not clock ticks)."""
    tasks = Path(f"/proc/{pid}/task")
    return sum(int((task / "schedstat").read_text().split()[0]) for task in tasks.iterdir()) / 1e9


async def measure(
    targets: dict[str, Target], pids: dict[str, int], opts: argparse.Namespace
) -> dict[str, list[float]]:
    """Per tree, CPU milliseconds per request in each block (after an untimed warm-up)."""
    client = LoadClient()
    names = list(targets)
    per_block = opts.requests // opts.blocks
    samples: dict[str, list[float]] = {name: [] for name in names}
    before: dict[str, float] = {}
    try:
        for index in range(opts.warmup + opts.blocks * per_block):
            if index >= opts.warmup and (index - opts.warmup) % per_block == 0:
                before = {name: schedstat_seconds(pids[name]) for name in names}
            for name in names if index % 2 == 0 else names[::-1]:
                result = await run_stream(client, targets[name])
                if result.error:
                    raise SystemExit(f"{name}: {result.error}")
            if index >= opts.warmup and (index - opts.warmup + 1) % per_block == 0:
                for name in names:
                    used = schedstat_seconds(pids[name]) - before[name]
                    samples[name].append(1000 * used / per_block)
    finally:
        client.close()
    return samples


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("trees", nargs="+", help="NAME=DIR (a checkout with DIR/src)")
    parser.add_argument("--requests", type=int, default=2000, help="timed requests per tree")
    parser.add_argument("--blocks", type=int, default=4, help="samples per tree")
    parser.add_argument("--warmup", type=int, default=200, help="untimed requests per tree")
    parser.add_argument("--chunks", type=int, default=50, help="16-char deltas per answer")
    parser.add_argument("--dialect", choices=["agent", "legacy"], default="agent")
    return parser.parse_args()


def main() -> None:
    opts = parse_args()
    trees = {name: Path(path).resolve() for name, _, path in (t.partition("=") for t in opts.trees)}
    with contextlib.ExitStack() as stack:
        services = {
            name: stack.enter_context(started(opts.dialect, source))
            for name, source in trees.items()
        }
        prompt = answer_prompt(opts.chunks)
        targets = {name: gateway_target(svc, prompt, opts.chunks) for name, svc in services.items()}
        pids = {name: svc.gateway.pid for name, svc in services.items()}
        samples = asyncio.run(measure(targets, pids, opts))
    print(f"gateway CPU per {opts.chunks}-chunk request, ms ({opts.requests} requests per tree)")
    for name, values in samples.items():
        blocks = " ".join(f"{value:.3f}" for value in values)
        print(f"  {name:<12} median {statistics.median(values):.3f}   blocks {blocks}")


if __name__ == "__main__":
    main()
