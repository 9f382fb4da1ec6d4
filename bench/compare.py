"""Before/after: `run.py` on two or more trees, alternated round by round, issue 11's four
targets side by side (medians and every run).

Each tree is an interpreter whose trae2api is that tree (its own venv, editable install):
``python bench/compare.py --tree main=.venv/bin/python --tree issue11=/tmp/v/bin/python``.
On a shared machine one run is noise-prone; alternating spreads the drift over both trees.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
from report import BENCH_DIR, table

RUN = BENCH_DIR / "run.py"


def targets(results: dict[str, Any]) -> dict[str, Any]:
    """The four figures of one run (and its revision)."""
    levels = {row["streams"]: row for row in results["throughput"]}
    held = levels.get(1000)
    return {
        "revision": results["meta"]["revision"],
        "a": results["latency"]["added"]["ttfb_p50_ms"],
        "b": levels[200]["gateway_over_direct"] if 200 in levels else None,
        "c_errors": held["gateway"]["errors"] if held else None,
        "c_rss": results["memory"]["gateway"]["peak_rss_mb"],
        "d": results["latency"]["gateway_cpu_ms_per_request"],
        "other": results["latency"]["cpu_percent"]["other"],
    }


def run_once(python: str, output: Path, extra: list[str]) -> dict[str, Any]:
    command = [python, str(RUN), "--output", str(output), *extra]
    done = subprocess.run(command, capture_output=True, text=True)
    if not output.exists():
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    return targets(orjson.loads(output.read_bytes()))


def median(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [run[key] for run in runs if run[key] is not None]
    return statistics.median(values) if values else None


def summary(trees: dict[str, list[dict[str, Any]]]) -> str:
    rows = []
    for name, runs in trees.items():
        errors = [run["c_errors"] for run in runs]
        rows.append(
            [
                f"{name} ({runs[0]['revision']})",
                f"+{median(runs, 'a'):.2f} ms",
                f"{median(runs, 'b'):.2f}",
                f"{max(e for e in errors if e is not None)} errors, {median(runs, 'c_rss'):.0f} MB",
                f"{median(runs, 'd'):.2f} ms",
                " / ".join(
                    f"{run['a']:+.2f}, {run['b']:.2f}, {run['c_rss']:.0f}, {run['d']:.2f}"
                    for run in runs
                ),
            ]
        )
    headers = [
        "tree",
        "(a) first content p50, added",
        "(b) chunks/s ratio at 200",
        "(c) 1000 streams: worst errors, peak RSS",
        "(d) gateway CPU per request",
        "every run: a, b, RSS, d",
    ]
    return table(headers, rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", action="append", required=True, help="NAME=PYTHON")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out-dir", type=Path, default=BENCH_DIR / "compare")
    opts, extra = parser.parse_known_args()
    opts.out_dir.mkdir(parents=True, exist_ok=True)  # bench/compare/ is git-ignored
    pythons = dict(item.split("=", 1) for item in opts.tree)
    trees: dict[str, list[dict[str, Any]]] = {name: [] for name in pythons}
    for index in range(opts.rounds):
        order = list(pythons) if index % 2 == 0 else list(pythons)[::-1]
        for name in order:
            output = opts.out_dir / f"{name}-{index}.json"
            trees[name].append(run_once(pythons[name], output, extra))
            print(f"round {index + 1} {name}: {trees[name][-1]}", file=sys.stderr)
    text = summary(trees)
    print(text)
    (opts.out_dir / "summary.md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
