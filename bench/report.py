"""The benchmark's report: goals, Markdown tables, and the results section of bench/README.md.

Also the run's description (date, machine, revision) that heads the report.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import platform
import shlex
import subprocess
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
README = BENCH_DIR / "README.md"
MARK_START, MARK_END = "<!-- results:start -->", "<!-- results:end -->"
# Issue 11's four targets.
GOAL_ADDED_TTFB_MS = 1.0  # first content, p50 at one stream, gateway − direct
GOAL_RATIO = 0.5  # gateway ÷ direct chunks/s at 200 streams
GOAL_RATIO_STREAMS = 200
GOAL_HELD_STREAMS = 1000  # held with 0 errors ...
GOAL_RSS_MB = 150.0  # ... and gateway peak RSS at most this
GOAL_CPU_MS = 1.0  # gateway CPU per request (50 chunks), sequential requests
SATURATED = 90  # % of one core: a single-threaded process at this share is the bottleneck


# -- run description -------------------------------------------------------------------------


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
    """The commit of the trae2api the children import (wherever that tree is: another
    worktree or clone through its own venv), marked ``+dirty`` when its ``src/`` has changes."""
    import trae2api

    where = Path(trae2api.__file__).resolve().parent

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], capture_output=True, text=True, cwd=where)
        return done.stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    top = git("rev-parse", "--show-toplevel")
    dirty = git("status", "--porcelain", "--", str(Path(top) / "src")) if top else ""
    return commit + ("+dirty" if dirty else "")


def describe(argv: list[str]) -> dict[str, Any]:
    """When, where and on what the run was made, and the command that made it."""
    from trae2api import __version__

    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "trae2api": __version__,
        "revision": revision(),
        "command": shlex.join(["python", "bench/run.py", *argv]),
    }


# -- goals -----------------------------------------------------------------------------------


def total_errors(results: dict[str, Any]) -> int:
    latency = results["latency"]
    count = latency["direct"]["errors"] + latency["gateway"]["errors"]
    for row in results["throughput"]:
        count += row["direct"]["errors"] + row["gateway"]["errors"]
    return int(count)


def _level(results: dict[str, Any], streams: int) -> dict[str, Any] | None:
    return next((row for row in results["throughput"] if row["streams"] == streams), None)


def _level_errors(row: dict[str, Any] | None) -> str:
    if row is None:
        return "not run"
    return f"{row['direct']['errors']} / {row['gateway']['errors']} errors (direct / gateway)"


def goals(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 11's four targets, as measured in this run."""
    latency = results["latency"]
    added = latency["added"]["ttfb_p50_ms"]
    ratio_row = _level(results, GOAL_RATIO_STREAMS)
    ratio = ratio_row["gateway_over_direct"] if ratio_row else 0.0
    held = _level(results, GOAL_HELD_STREAMS)
    peak = results["memory"]["gateway"]["peak_rss_mb"]
    held_ok = held is not None and held["gateway"]["errors"] == 0 and peak <= GOAL_RSS_MB
    cpu = latency["gateway_cpu_ms_per_request"]
    chunks = results["options"]["chunks"]
    return [
        {
            "goal": "(a) first content p50 at 1 stream, gateway − direct",
            "target": f"≤ +{GOAL_ADDED_TTFB_MS:g} ms",
            "measured": f"+{added:.3f} ms",
            "met": added <= GOAL_ADDED_TTFB_MS,
        },
        {
            "goal": f"(b) chunks/s gateway ÷ direct at {GOAL_RATIO_STREAMS} streams",
            "target": f"≥ {GOAL_RATIO:g}",
            "measured": f"{ratio:.2f}" if ratio_row else "not run",
            "met": ratio >= GOAL_RATIO,
        },
        {
            "goal": f"(c) {GOAL_HELD_STREAMS} streams held; gateway peak RSS (VmHWM)",
            "target": f"0 errors; ≤ {GOAL_RSS_MB:g} MB",
            "measured": f"{_level_errors(held)}; {peak:.1f} MB",
            "met": held_ok,
        },
        {
            "goal": f"(d) gateway CPU per {chunks}-chunk request (sequential)",
            "target": f"≤ {GOAL_CPU_MS:g} ms",
            "measured": f"{cpu:.2f} ms",
            "met": cpu <= GOAL_CPU_MS,
        },
    ]


def load_notes(results: dict[str, Any]) -> list[str]:
    """Where the load generator (or the whole machine) was the limit, said plainly."""
    notes = []
    for row in results["throughput"]:
        for path in ("direct", "gateway"):
            share = row[path]["cpu_percent"]
            if share["client"] >= SATURATED:
                notes.append(
                    f"at {row['streams']} streams ({path}) the load generator used "
                    f"{share['client']} % of a core: it was the bottleneck"
                )
            busy = sum(share.values())
            if busy >= 190:
                notes.append(
                    f"at {row['streams']} streams ({path}) the machine was saturated "
                    f"({busy} % of 200 %, {share['other']} % of it jobs outside the benchmark)"
                )
    return notes


# -- Markdown --------------------------------------------------------------------------------


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
                f"{gateway['cpu_ms_per_request']['gateway']:.2f}",
                f"{direct['cpu_percent']['client']} / {gateway['cpu_percent']['client']} %",
                f"{row['gateway_memory']['peak_rss_mb']:.1f}",
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
        "gateway CPU ms/request",
        "load generator CPU direct / gateway",
        "gateway peak RSS MB",
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
        f"unreported run at {profile.get('streams', '?')} streams). Own time (the function "
        "itself was running):",
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
        f"Upstream dialect: **{opts.get('dialect', 'legacy')}**. Every answer streams "
        f"{opts['chunks']} deltas of 16 characters (`[sim:pieces …]`).",
        "",
        f"**Time to first content, one stream** ({latency['gateway']['chunks_per_reply']} content "
        f"chunks, {opts['requests']} sequential requests per path after {opts['warmup']} "
        "warm-up; ms):",
        "",
        latency_table(latency),
        "",
        f"Added time to first content, p50: **{added['ttfb_p50_ms']:.3f} ms** "
        f"(gateway ÷ direct = {added['ttfb_p50_ratio']:.2f}×); gateway CPU per request "
        f"**{latency['gateway_cpu_ms_per_request']:.2f} ms**. CPU used meanwhile by jobs "
        f"outside the benchmark: {latency['cpu_percent']['other']} % of one core, by the load "
        f"generator {latency['cpu_percent']['client']} %.",
        "",
        f"**Streaming throughput** ({opts['chunks']} content chunks per stream, "
        f"{opts['duration']:g} s per level and path, direct first):",
        "",
        throughput_table(results["throughput"]),
        "",
        "Load generator: "
        + ("; ".join(load_notes(results)) or "below 90 % of a core at every level, not the limit")
        + ".",
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
