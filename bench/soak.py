"""Soak test: hold many concurrent streams through the gateway for minutes; watch errors and RSS.

    python bench/soak.py                      500 streams for 180 s (the defaults)
    python bench/soak.py --streams 100 --duration 30 --write-readme

Each of ``--streams`` workers opens a slow, long stream (``[sim:slow MS] [sim:long WORDS]``),
reads it to ``[DONE]`` and opens the next at once, until ``--duration`` is over. The gateway's
RSS is sampled every ``--interval`` seconds. Exit status 1 when any stream failed.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from servers import Services, memory_mb, services

README = Path(__file__).with_name("README.md")


@dataclass
class Tally:
    completed: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    chunks: int = 0
    rss: list[tuple[float, float]] = field(default_factory=list)
    examples: list[str] = field(default_factory=list)

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


def raise_fd_limit(streams: int) -> None:
    """Client and gateway (which inherits it) each hold a few descriptors per stream."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max(soft, min(hard, 4 * streams + 1024))
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


async def one_stream(http: httpx.AsyncClient, svc: Services, prompt: str, tally: Tally) -> None:
    body = {"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": prompt}]}
    headers = {"Authorization": f"Bearer {svc.auth_token}"}
    last = ""
    async with http.stream(
        "POST", f"{svc.gateway_url}/v1/chat/completions", json=body, headers=headers
    ) as response:
        if response.status_code != 200:
            tally.error(f"http {response.status_code}")
            await response.aread()
            return
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                tally.chunks += 1
                last = line
                if line.startswith('data: {"error"'):
                    tally.error("in-band error")
                    tally.examples.append(line[:300])
    if last == "data: [DONE]":
        tally.completed += 1
    else:
        tally.error("no [DONE]")


async def worker(
    http: httpx.AsyncClient, svc: Services, opts: argparse.Namespace, tally: Tally, deadline: float
) -> None:
    prompt = f"[sim:slow {opts.slow_ms}] [sim:long {opts.words}] soak"
    while time.monotonic() < deadline:
        try:
            await one_stream(http, svc, prompt, tally)
        except httpx.HTTPError as exc:
            tally.error(type(exc).__name__)
            await asyncio.sleep(1)


async def sample_rss(pid: int, tally: Tally, interval: float, deadline: float) -> None:
    started = time.monotonic()
    while time.monotonic() < deadline:
        tally.rss.append((time.monotonic() - started, memory_mb(pid)["rss_mb"]))
        await asyncio.sleep(interval)


async def soak(svc: Services, opts: argparse.Namespace) -> Tally:
    tally = Tally()
    limits = httpx.Limits(max_connections=opts.streams, max_keepalive_connections=opts.streams)
    timeout = httpx.Timeout(60.0, pool=60.0)
    deadline = time.monotonic() + opts.duration
    async with httpx.AsyncClient(limits=limits, timeout=timeout, trust_env=False) as http:
        sampler = asyncio.create_task(sample_rss(svc.gateway.pid, tally, opts.interval, deadline))
        workers = [worker(http, svc, opts, tally, deadline) for _ in range(opts.streams)]
        await asyncio.gather(*workers)
        await sampler
    tally.rss.append((opts.duration, memory_mb(svc.gateway.pid)["rss_mb"]))
    return tally


def slope_mb_per_min(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of RSS over the second half of the run (after warm-up)."""
    half = samples[len(samples) // 2 :]
    if len(half) < 2:
        return 0.0
    mean_t = sum(t for t, _ in half) / len(half)
    mean_m = sum(m for _, m in half) / len(half)
    var = sum((t - mean_t) ** 2 for t, _ in half) or 1e-9
    return 60 * sum((t - mean_t) * (m - mean_m) for t, m in half) / var


def markdown(opts: argparse.Namespace, tally: Tally) -> str:
    rss = [m for _, m in tally.rss]
    quarter = max(1, len(rss) // 4)
    step = max(1, len(rss) // 12)
    points = ", ".join(f"{m:.0f}" for m in rss[::step])
    return "\n".join(
        [
            "## Soak",
            "",
            f"`python bench/soak.py --streams {opts.streams} --duration {opts.duration:g}` "
            f"(each stream `[sim:slow {opts.slow_ms}] [sim:long {opts.words}]`, about "
            f"{opts.slow_ms * opts.words / 1000:g} s, reconnecting as it ends), "
            f"run {time.strftime('%Y-%m-%d')}.",
            "",
            "| figure | value |",
            "|---|---|",
            f"| concurrent streams | {opts.streams} |",
            f"| duration | {opts.duration:g} s |",
            f"| streams completed | {tally.completed} |",
            f"| data chunks read | {tally.chunks} |",
            f"| errors | {sum(tally.errors.values())} {tally.errors or ''} |",
            f"| gateway RSS first quarter (mean) | {sum(rss[:quarter]) / quarter:.1f} MB |",
            f"| gateway RSS last quarter (mean) | {sum(rss[-quarter:]) / quarter:.1f} MB |",
            f"| gateway RSS peak | {max(rss):.1f} MB |",
            f"| RSS trend, second half | {slope_mb_per_min(tally.rss):+.2f} MB/min |",
            "",
            f"RSS (MB), one sample in {step} of those taken every {opts.interval:g} s: {points}.",
            "",
        ]
    )


def write_readme(section: str) -> None:
    text = README.read_text()
    pattern = re.compile(r"^## Soak\n.*?(?=^## |\Z)", re.MULTILINE | re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    README.write_text(text)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=500, help="concurrent streams")
    parser.add_argument("--duration", type=float, default=180.0, help="seconds of load")
    parser.add_argument("--slow-ms", type=int, default=1000, help="ms between words")
    parser.add_argument("--words", type=int, default=30, help="words per stream")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between RSS samples")
    parser.add_argument("--write-readme", action="store_true", help="update bench/README.md")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(sys.argv[1:] if argv is None else argv)
    raise_fd_limit(opts.streams)
    with services() as svc:
        try:
            import uvloop
        except ImportError:
            tally = asyncio.run(soak(svc, opts))
        else:
            tally = uvloop.run(soak(svc, opts))
    section = markdown(opts, tally)
    print(section)
    for example in tally.examples[:3]:
        print("error example:", example, file=sys.stderr)
    if opts.write_readme:
        write_readme(section)
    return 1 if tally.errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
