"""The simulated account's credits (dialect §7): the ``ide_credits`` chat spends, the
``work_credits`` it does not, and the entitlement packs the balance endpoint reports.

Owned by ``SimState`` (as ``state.credits``) and thread-safe behind its own lock; it must not do
I/O or know about HTTP (the balance route lives in ``trae2api.testing.billing``).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

DEFAULT_IDE_CREDITS = 1000
DEFAULT_WORK_CREDITS = 200
DEFAULT_PER_CHAT = 1
CREDIT_CONFIG_KEYS = frozenset({"ide_credits", "work_credits", "credits_per_chat"})
PACKS = ("monthly", "bonus")  # the first pack is spent first


def pack_list(limit: int, remaining: int) -> list[dict[str, Any]]:
    """``user_entitlement_pack_list`` for a total ``limit`` of which ``remaining`` is left:
    two packs (3/5 and 2/5 of the limit), the first one used up first, so that the sum of
    ``credits_limit`` minus the sum of ``credits_amount`` is ``remaining``."""
    first = limit * 3 // 5
    limits = (first, limit - first)
    used = limit - remaining
    packs = []
    for name, pack_limit in zip(PACKS, limits, strict=True):
        spent = min(used, pack_limit)
        used -= spent
        packs.append(
            {
                "entitlement_base_info": {
                    "product_name": f"sim {name} pack",
                    "quota": {"credits_limit": pack_limit},
                },
                "usage": {"credits_amount": spent},
                "status": 1,
            }
        )
    return packs


class CreditBook:
    """Remaining credits; every method is thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._initial = DEFAULT_IDE_CREDITS
        self.reset()

    def reset(self, ide_credits: int | None = None) -> None:
        """Back to the defaults (``ide_credits`` when given becomes the new initial balance)."""
        if ide_credits is not None and ide_credits < 0:
            raise ValueError("ide_credits must be a non-negative integer")
        with self._lock:
            if ide_credits is not None:
                self._initial = ide_credits
            self._ide = self._initial
            self._limit = max(DEFAULT_IDE_CREDITS, self._initial)
            self._work = DEFAULT_WORK_CREDITS
            self._per_chat = DEFAULT_PER_CHAT

    def configure(self, changes: Mapping[str, Any]) -> None:
        """``ide_credits`` (the balance; raises the total limit when above it), ``work_credits``,
        ``credits_per_chat`` (what a chat spends); non-negative integers."""
        values = {key: int(value) for key, value in changes.items()}
        if any(value < 0 for value in values.values()):
            raise ValueError("credits must be non-negative integers")
        with self._lock:
            if "ide_credits" in values:
                self._ide = values["ide_credits"]
                self._limit = max(self._limit, self._ide)
            self._work = values.get("work_credits", self._work)
            self._per_chat = values.get("credits_per_chat", self._per_chat)

    def exhausted(self) -> bool:
        """Whether ``ide_credits`` is 0 (dialect §7: chat answers 4008)."""
        with self._lock:
            return self._ide <= 0

    def spend(self) -> tuple[int, int]:
        """Spend one chat's credits (never below 0); the ``(ide_credits, work_credits)`` left."""
        with self._lock:
            self._ide = max(0, self._ide - self._per_chat)
            return self._ide, self._work

    def packs(self) -> list[dict[str, Any]]:
        """The balance endpoint's ``user_entitlement_pack_list``."""
        with self._lock:
            return pack_list(self._limit, self._ide)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "ide_credits": self._ide,
                "work_credits": self._work,
                "credits_limit": self._limit,
                "credits_per_chat": self._per_chat,
            }
