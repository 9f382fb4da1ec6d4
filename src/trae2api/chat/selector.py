"""Which dialect the configured hosts answer (``UPSTREAM_DIALECT``), behind the ``Dialect`` seam.

``DialectSelector`` is the one dialect ChatService and the catalogue talk to. In ``legacy`` and
``agent`` mode it is a fixed choice. In ``auto`` mode (dialect §1, §7) it probes the agent
catalogue on BASE_URL, then on AGENT_BASE_URL, prefers the agent dialect, and falls back to
legacy on BASE_URL only where the agent catalogue is absent. It looks again (at most every
DIALECT_RECHECK_INTERVAL seconds) when the upstream changes its mind: a route answering 404, or
the legacy chat answering 3003/4023, several times in a row. It also turns the 4001 every chat
gets from an empty model table into the fix (dialect §7). It must not build bodies or interpret
answers beyond an error event's code: the dialects and chat/service.py do.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal, Protocol

import orjson
import structlog

from trae2api.auth.account import Account
from trae2api.auth.credentials import DeviceIdentity
from trae2api.chat.attachments import TurnImages
from trae2api.chat.catalogue import AliasTable, empty_table_message
from trae2api.chat.dialect import Dialect, EventStream
from trae2api.errors import ApiError, RouteAbsent, UpstreamRejected, UpstreamUnavailable
from trae2api.upstream.client import ChatControl
from trae2api.wire.agent_body import Probe
from trae2api.wire.sse import SSEEvent
from trae2api.wire.translate import ChatRequest

log = structlog.get_logger(__name__)

Mode = Literal["auto", "legacy", "agent"]
# Dialect §7: what a dying legacy endpoint answers to every request.
_LEGACY_DEAD_CODES = frozenset({3003, 4023})
# Consecutive hints that the chosen dialect is gone before it is looked for again.
SUSPICIONS_BEFORE_RECHECK = 3


class AgentCandidate(Dialect, Protocol):
    """An agent dialect on one host, which can be asked whether that host serves it."""

    @property
    def host(self) -> str: ...

    async def probe(self, access_token: str, device: DeviceIdentity) -> Probe: ...


@dataclass(frozen=True)
class Choice:
    """The dialect in use, on which host, and why (logged and shown on /status)."""

    dialect: Dialect
    host: str
    reason: str


class DialectSelector:
    """The dialect in use; a ``Dialect`` itself, delegating to the chosen one."""

    def __init__(
        self,
        mode: Mode,
        *,
        agents: Sequence[AgentCandidate],
        legacy: tuple[Dialect, str] | None,
        account: Account,
        version_code: str,
        recheck_interval: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.mode = mode
        self._agents = list(agents)
        self._legacy = legacy
        self._account = account
        self._version_code = version_code
        self._recheck_interval = recheck_interval
        self._clock = clock
        self._choice: Choice | None = None
        self._undecided = "not probed yet"
        self._detections = 0
        self._detected_at: float | None = None
        self._suspicions = 0
        self._lock = asyncio.Lock()
        self._recheck: asyncio.Task[None] | None = None
        self._on_switch: list[Callable[[], None]] = []
        self.generation = 0  # one more each time the dialect in use changes
        # Dialect §7: the last catalogue was empty, so a chat's 4001 means a stale version code.
        self.table_empty = False
        if mode != "auto":
            self._choose(self._fixed_choice(mode), "configuration")

    def _fixed_choice(self, mode: Mode) -> Choice:
        reason = f"UPSTREAM_DIALECT={mode}"
        if mode == "agent":
            return Choice(self._agents[0], self._agents[0].host, reason)
        assert self._legacy is not None
        return Choice(self._legacy[0], self._legacy[1], reason)

    def on_switch(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` whenever the dialect in use changes (the catalogue's names do)."""
        self._on_switch.append(callback)

    # -- the choice ------------------------------------------------------------------------

    async def current(self) -> Dialect:
        """The chosen dialect, detecting it first if nothing is chosen yet."""
        if self._choice is None:
            await self.detect("start-up")
        if self._choice is None:
            raise UpstreamUnavailable(
                f"could not tell which dialect Trae speaks yet ({self._undecided})",
                code="upstream_dialect_unknown",
            )
        return self._choice.dialect

    async def detect(self, why: str) -> None:
        """Probe the hosts (auto mode) and choose; concurrent callers share one detection."""
        seen = self._detections
        async with self._lock:
            if self.mode != "auto" or (self._detections != seen and self._choice is not None):
                return
            self._detections += 1
            self._detected_at = self._clock()
            self._suspicions = 0
            choice, undecided = await self._probe_all()
        if choice is None:
            self._undecided = undecided
            kept = self._choice.dialect.name if self._choice else None
            log.warning("upstream.dialect_undecided", why=why, reason=undecided, kept=kept)
            return
        self._choose(choice, why)

    async def _probe_all(self) -> tuple[Choice | None, str]:
        token = await self._account.access_token()
        notes, unknown = [], False
        for candidate in self._agents:
            probe = await candidate.probe(token, self._account.device)
            if probe.kind == "present":
                reason = f"the agent catalogue answers on {candidate.host} ({probe.detail})"
                return Choice(candidate, candidate.host, reason), ""
            unknown = unknown or probe.kind == "unknown"
            notes.append(f"{candidate.host}: {probe.detail}")
        summary = "; ".join(notes)
        if unknown or self._legacy is None:
            return None, f"the agent catalogue did not answer ({summary})"
        reason = f"the agent catalogue is absent ({summary}); legacy chat on {self._legacy[1]}"
        return Choice(self._legacy[0], self._legacy[1], reason), ""

    def _choose(self, choice: Choice, why: str) -> None:
        old = self._choice
        self._choice = choice
        self._undecided = ""
        if old is not None and (old.dialect, old.host) == (choice.dialect, choice.host):
            log.info("upstream.dialect_kept", dialect=choice.dialect.name, why=why)
            return
        log.info(
            "upstream.dialect_chosen",
            dialect=choice.dialect.name,
            host=choice.host,
            reason=choice.reason,
            why=why,
        )
        self.table_empty = False
        self.generation += 1
        for callback in self._on_switch:
            callback()

    def _suspect(self, reason: str) -> None:
        """One more hint that the chosen dialect is gone; look again when they add up."""
        if self.mode != "auto":
            return
        self._suspicions += 1
        if self._suspicions < SUSPICIONS_BEFORE_RECHECK:
            return
        last = self._detected_at
        if last is not None and self._clock() - last < self._recheck_interval:
            return
        if self._recheck is not None and not self._recheck.done():
            return
        log.warning("upstream.dialect_recheck", reason=reason, suspicions=self._suspicions)
        self._recheck = asyncio.create_task(self._quiet_detect(f"recheck: {reason}"))

    async def _quiet_detect(self, why: str) -> None:
        try:
            await self.detect(why)
        except Exception as exc:  # a background recheck must not die loudly; try again later
            log.warning("upstream.dialect_recheck_failed", reason=str(exc) or type(exc).__name__)

    def describe(self) -> dict[str, Any]:
        """For /status: the mode, the dialect in use, its host and why (no secrets)."""
        choice = self._choice
        return {
            "mode": self.mode,
            "dialect": choice.dialect.name if choice else None,
            "host": choice.host if choice else None,
            "reason": choice.reason if choice else self._undecided,
        }

    # -- the Dialect protocol --------------------------------------------------------------

    def _guess(self) -> Dialect:
        # Before the first detection: the preferred dialect (dialect §7).
        if self._choice is not None:
            return self._choice.dialect
        return self._agents[0] if self._agents else self._fixed_choice("legacy").dialect

    @property
    def name(self) -> str:
        return self._guess().name

    @property
    def aliases(self) -> AliasTable:
        return self._guess().aliases

    @property
    def needs_image_bytes(self) -> bool:
        return self._guess().needs_image_bytes

    def bridges_tools(self, request: ChatRequest) -> bool:
        return self._guess().bridges_tools(request)

    async def body(
        self, request: ChatRequest, device: DeviceIdentity, images: TurnImages | None = None
    ) -> dict[str, Any]:
        return await (await self.current()).body(request, device, images)

    def open_chat(
        self,
        body: dict[str, Any],
        access_token: str,
        device: DeviceIdentity,
        control: ChatControl,
    ) -> EventStream:
        dialect = self._for_body(body)
        # Plain calls from the read itself, not a wrapping generator: no re-yield per read.
        control.watch = partial(self._watch, dialect.name)
        control.on_absent = partial(self._absent, dialect.name)
        return dialect.open_chat(body, access_token, device, control)

    def _for_body(self, body: dict[str, Any]) -> Dialect:
        """The dialect that built ``body`` (the choice may have changed since)."""
        wanted = "legacy" if "user_input" in body else "agent"
        current = self._guess()
        if current.name == wanted:
            return current
        if wanted == "legacy" and self._legacy is not None:
            return self._legacy[0]
        return next((d for d in self._agents if d.name == wanted), current)

    def _absent(self, dialect: str, exc: RouteAbsent) -> None:
        self._suspect(f"the {dialect} chat answered: {exc.message}")

    def _watch(self, dialect: str, events: list[SSEEvent]) -> tuple[int, ApiError] | None:
        """One read's events: a stale table's 4001 stops there; dead legacy codes add up."""
        if self._suspicions and any(event.event == "output" for event in events):
            self._suspicions = 0
        for position, event in enumerate(events):
            if event.event == "error":
                code, message = _error_code(event.data)
                if code == 4001 and self.table_empty:
                    return position, self._stale_table(message)
                if dialect == "legacy" and code in _LEGACY_DEAD_CODES:
                    self._suspect(f"the legacy chat answered code {code}")
        return None

    def _stale_table(self, message: str) -> UpstreamRejected:
        detail = f"Trae error 4001: {message}" if message else "Trae error 4001"
        return UpstreamRejected(
            f"{empty_table_message(self._version_code)} ({detail})",
            upstream_code=4001,
            status=502,
            type="upstream_error",
            code="ide_version_stale",
            should_retry=False,
        )

    async def catalogue(self, access_token: str, device: DeviceIdentity) -> list[dict[str, Any]]:
        dialect = await self.current()
        try:
            entries = await dialect.catalogue(access_token, device)
        except RouteAbsent as exc:
            self._suspect(f"the {dialect.name} catalogue answered: {exc.message}")
            raise
        self.table_empty = not entries
        return entries

    async def aclose(self) -> None:
        if self._recheck is not None:
            self._recheck.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._recheck
        dialects: list[Dialect] = list(self._agents)
        if self._legacy is not None:
            dialects.append(self._legacy[0])
        for dialect in dialects:
            await dialect.aclose()


def _error_code(data: str) -> tuple[int | None, str]:
    """The business code and message of an ``error`` event's data (protocol §6)."""
    try:
        payload = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None, ""
    if not isinstance(payload, dict):
        return None, ""
    try:
        code = int(payload.get("code"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None, ""
    message = payload.get("message") or payload.get("msg") or ""
    return code, str(message)[:300]
