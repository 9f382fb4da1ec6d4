"""``--profile``: ``py-spy record`` of the gateway under load, boiled down to its hot spots."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any


class Profiler:
    """``py-spy record`` of the gateway during an extra run at the largest level."""

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
