"""The account's Trae credits as last reported (dialect §7), for ``/status``, ``/metrics`` and logs.

Fed by chat (``notify_usage`` after a turn) and by the balance query (``upstream.balance``),
which ``poll_balance`` runs in the background. It logs a warning when ``ide_credits`` (what chat
spends) fall under ``CREDITS_LOW_THRESHOLD``; it never calls Trae itself.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import structlog

from trae2api.errors import ApiError
from trae2api.status.metrics import Metrics

log = structlog.get_logger(__name__)

NOTIFY_USAGE = "notify_usage"
BALANCE = "balance"
EXHAUSTED = "trae_error_4008"
# The balance sums every entitlement pack (work packs too, per the public record), so a chat's
# own notify_usage report is preferred; the balance fills in when none is this recent.
PREFER_REPORT_FOR = 3600.0


class Credits:
    """The last known credits; ``observe`` is cheap and safe on the event loop."""

    def __init__(
        self,
        *,
        low_threshold: float,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._threshold = low_threshold
        self._metrics = metrics
        self._clock = clock
        self.ide_credits: float | None = None
        self.work_credits: float | None = None
        self.billing_mode: str | None = None
        self.source: str | None = None
        self.updated_at: float | None = None
        self.balance: float | None = None
        self.balance_at: float | None = None
        self._low = False

    def observe_report(
        self, ide_credits: float | None, work_credits: float | None, billing_mode: str | None
    ) -> None:
        """A chat's ``notify_usage`` (dialect §7): what it reports replaces what was known."""
        if ide_credits is not None:
            self.ide_credits = ide_credits
        if work_credits is not None:
            self.work_credits = work_credits
        self.billing_mode = billing_mode or self.billing_mode
        self._stamp(NOTIFY_USAGE)

    def observe_balance(self, remaining: float) -> None:
        """The balance endpoint's sum; it stands for ide_credits unless a report is recent."""
        now = self._clock()
        self.balance, self.balance_at = remaining, now
        if self._metrics is not None:
            self._metrics.credits.labels("balance").set(remaining)
        recent = self.source == NOTIFY_USAGE and self.updated_at is not None
        if recent and now - (self.updated_at or 0.0) < PREFER_REPORT_FOR:
            return
        self.ide_credits = remaining
        self._stamp(BALANCE)

    def exhausted(self) -> None:
        """Trae answered 4008: the ide credits ran out, whatever the last report said."""
        self.ide_credits = 0.0
        self._stamp(EXHAUSTED)

    def left_note(self) -> str:
        """For a 4008: how many ide credits were left at the last report, and when."""
        if self.ide_credits is None or self.updated_at is None:
            return "the gateway has seen no credits report yet"
        return (
            f"{_number(self.ide_credits)} ide credits were left at the last report "
            f"({self.source}, {_iso(self.updated_at)})"
        )

    def status(self) -> dict[str, Any]:
        """The ``credits`` object of ``/status`` (counts and times only)."""
        return {
            "ide_credits": self.ide_credits,
            "work_credits": self.work_credits,
            "billing_mode": self.billing_mode,
            "source": self.source,
            "updated_at": _iso(self.updated_at) if self.updated_at is not None else None,
            "balance": self.balance,
            "balance_updated_at": _iso(self.balance_at) if self.balance_at is not None else None,
            "low_threshold": self._threshold,
        }

    def _stamp(self, source: str) -> None:
        self.source, self.updated_at = source, self._clock()
        if self._metrics is not None:
            for kind, value in (("ide", self.ide_credits), ("work", self.work_credits)):
                if value is not None:
                    self._metrics.credits.labels(kind).set(value)
        self._check_low()

    def _check_low(self) -> None:
        # One warning per fall under the threshold; it re-arms once credits are back above it.
        if self.ide_credits is None:
            return
        low = self.ide_credits < self._threshold
        if low and not self._low:
            log.warning(
                "trae_credits_low",
                ide_credits=self.ide_credits,
                work_credits=self.work_credits,
                threshold=self._threshold,
                source=self.source,
                hint="top up the Trae account (CREDITS_LOW_THRESHOLD sets this warning's level)",
            )
        self._low = low


async def poll_balance(
    credits: Credits, fetch: Callable[[], Awaitable[float | None]], interval: float
) -> None:
    """Query the balance now and every ``interval`` seconds until cancelled.

    A failure is logged once (info) until a query succeeds again, and never raised: the
    balance is a courtesy and the account host may not answer it at all (dialect §7).
    """
    failing = False
    while True:
        try:
            remaining = await fetch()
        except (ApiError, OSError, ValueError) as exc:
            if not failing:
                log.info("trae_balance_unavailable", reason=str(exc)[:200])
            failing = True
        else:
            failing = False
            if remaining is not None:
                credits.observe_balance(remaining)
        if interval <= 0:
            return
        await asyncio.sleep(interval)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _number(value: float) -> str:
    return str(int(value)) if math.isfinite(value) and value == int(value) else f"{value:g}"
