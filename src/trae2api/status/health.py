"""Records when Trae last answered; readiness is judged from it and the credentials' state.

It must not call Trae itself: the routes decide when a probe is worth it.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class UpstreamHealth:
    """The last time Trae answered well and the last failure seen, in monotonic seconds."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.last_success: float | None = None
        self.last_failure: float | None = None
        self.last_failure_reason: str | None = None

    def success(self) -> None:
        self.last_success = self._clock()

    def failure(self, reason: str) -> None:
        self.last_failure = self._clock()
        self.last_failure_reason = reason

    def answered_within(self, seconds: float) -> bool:
        return self.last_success is not None and self._clock() - self.last_success <= seconds

    def summary(self) -> dict[str, object]:
        now = self._clock()
        return {
            "seconds_since_success": _age(now, self.last_success),
            "seconds_since_failure": _age(now, self.last_failure),
            "last_failure": self.last_failure_reason,
        }


def _age(now: float, then: float | None) -> float | None:
    return None if then is None else round(now - then, 1)
