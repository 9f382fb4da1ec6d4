"""The chat use case: one OpenAI chat request through Trae, streamed or aggregated.

It owns retries before the first byte, the one refresh on 1001, queue waits, keepalives and
in-band errors (protocol §7). It yields the neutral answer events (chat.answer_events);
faces render them.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import structlog

from trae2api.auth.account import Account
from trae2api.chat.answer import Answer
from trae2api.chat.answer_events import AnswerFold, Failed, Steps
from trae2api.chat.attachments import Attachments
from trae2api.chat.dialect import Dialect
from trae2api.errors import (
    ApiError,
    ClientDisconnected,
    QueueTimeout,
    ReauthRequired,
    ShuttingDown,
    UpstreamError,
    UpstreamRejected,
    UpstreamUnavailable,
    from_business_code,
    trae_fields,
)
from trae2api.process.shutdown import SHUTDOWN_MESSAGE, Drain
from trae2api.status.credits import Credits
from trae2api.status.health import UpstreamHealth
from trae2api.status.metrics import Metrics
from trae2api.upstream.client import ChatControl
from trae2api.wire.events import CreditsReport, Delta, Failure, Finished, Item, interpret
from trae2api.wire.sse import SSEEvent
from trae2api.wire.translate import ChatRequest

log = structlog.get_logger(__name__)

_NONSTREAM_TICK = 1.0


@dataclass(frozen=True)
class ChatTuning:
    """Settings chat obeys (see config.py for their variables)."""

    retries: int = 2
    queue_timeout: float = 120.0
    keepalive_interval: float = 15.0
    retry_base_delay: float = 0.25
    first_byte_timeout: float = 120.0  # UPSTREAM_READ_TIMEOUT: all attempts together


@dataclass
class ChatStream:
    """A started stream: its first events, the rest, and the answer it is filling."""

    first: Steps
    events: AsyncGenerator[Steps, None]
    answer: Answer


class ChatService:
    """Runs chat completions against Trae for one account, over either dialect."""

    def __init__(
        self,
        *,
        dialect: Dialect,
        account: Account,
        health: UpstreamHealth,
        tuning: ChatTuning,
        attachments: Attachments | None = None,
        metrics: Metrics | None = None,
        drain: Drain | None = None,
        credits: Credits | None = None,
    ) -> None:
        self._dialect = dialect
        self._credits = credits
        self._metrics = metrics or Metrics()
        self._drain = drain or Drain(float("inf"))  # never started: chats are never ended
        self._attachments = attachments
        self._account = account
        self._health = health
        self._tuning = tuning

    async def _body(self, request: ChatRequest) -> dict[str, Any]:
        images = await self._attachments.load(request) if self._attachments else None
        return await self._dialect.body(request, self._account.device, images)

    def _answer(self, request: ChatRequest) -> Answer:
        return Answer(
            request,
            bridged=self._dialect.bridges_tools(request),
            queue_timeout=self._tuning.queue_timeout,
            clock=time.monotonic,
            new_call_id=_call_id,
        )

    async def complete(
        self,
        request: ChatRequest,
        is_disconnected: Callable[[], Awaitable[bool]] | None = None,
    ) -> tuple[AnswerFold, Answer]:
        """A non-streamed answer: the same events a stream carries, folded (one fold, any face)."""
        body = await self._body(request)  # first: in auto mode it settles the dialect
        answer = self._answer(request)
        fold = AnswerFold()
        events = self._events(request, answer, body, _NONSTREAM_TICK, in_band=False)
        checked_at = time.monotonic()
        try:
            async for steps in events:
                for step in steps:
                    for event in step:
                        fold.push(event)
                # Nobody would read the answer: stop Trae's work within about a second.
                if is_disconnected and time.monotonic() - checked_at >= _NONSTREAM_TICK:
                    checked_at = time.monotonic()
                    if await is_disconnected():
                        raise ClientDisconnected("the client went away")
        finally:
            await events.aclose()
        return fold, answer

    async def open_stream(self, request: ChatRequest) -> ChatStream:
        """Start a stream; errors before its first event raise here, later ones come in-band."""
        body = await self._body(request)  # first: in auto mode it settles the dialect
        answer = self._answer(request)
        events = self._events(request, answer, body, self._tuning.keepalive_interval)
        return ChatStream(await anext(events), events, answer)

    async def _events(
        self,
        request: ChatRequest,
        answer: Answer,
        body: dict[str, Any],
        tick: float,
        *,
        in_band: bool = True,
    ) -> AsyncGenerator[Steps, None]:
        """The neutral answer events, per upstream read; ends with ``Finish`` or ``Failed``.

        One generator from the upstream read to the face, no task between: a tick of silence
        is an empty read (a keepalive), shutdown interrupts the read in progress, and retries
        (the 1001 refresh included) are decided here, before the first answer byte and within
        one deadline, ``UPSTREAM_READ_TIMEOUT``, for all attempts together (protocol §7).
        """
        plan = _Plan(await self._account.access_token())
        deadline = asyncio.get_running_loop().time() + self._tuning.first_byte_timeout
        control = ChatControl(tick, deadline)
        device = self._account.device
        sent = False
        try:
            with self._drain.watch(partial(_shut, control)):
                while True:
                    stream = self._dialect.open_chat(body, plan.token, device, control)
                    try:
                        async for events in stream:
                            steps, failure = self._read(answer, events, control)
                            if steps:
                                sent = True
                                yield steps
                            if failure is not None:
                                raise failure
                            if answer.done:
                                break
                        if control.deadline is not None:  # nothing produced: not an answer
                            raise UpstreamUnavailable("Trae ended the stream without an answer")
                        break
                    except ApiError as exc:
                        await self._settle(exc, plan, control)  # raises, or try again
                    finally:
                        await stream.aclose()
        except ApiError as exc:
            if not (in_band and sent):
                raise
            log.warning(
                "stream_failed_in_band", code=exc.code, reason=exc.message, **trae_fields(exc)
            )
            yield [[Failed(exc)]]
            return
        yield [answer.closing(_prompt_text(request))]

    def _read(
        self, answer: Answer, events: list[SSEEvent], control: ChatControl
    ) -> tuple[Steps, UpstreamRejected | None]:
        """One upstream read's steps (``[]``: a tick of silence), and the error it ended on."""
        if not events:
            return answer.steps(None), None
        items: list[Item] = []
        failure = None
        for event in events:
            item = interpret(event)
            if isinstance(item, Failure):
                failure = self._explain(item.code, item.message)
                break  # what came before the error still counts
            if isinstance(item, CreditsReport):
                self._credit(item)
            elif item is not None:
                items.append(item)
        if control.deadline is not None and any(isinstance(i, Delta | Finished) for i in items):
            control.deadline = None  # the first answer byte: no more retries from here on
            self._health.success()
        return (answer.steps(items) if items else []), failure

    async def _settle(self, exc: ApiError, plan: _Plan, control: ChatControl) -> None:
        """The one place retries are decided: raise ``exc`` (or what it means), or return to
        try again (before the first answer byte, within the first-byte deadline)."""
        if isinstance(exc, ShuttingDown | QueueTimeout):
            raise exc  # the gateway's own ending, not the upstream's
        self._metrics.upstream_error(exc)
        if not isinstance(exc, UpstreamError):
            raise exc
        if isinstance(exc, UpstreamUnavailable):
            self._health.failure(exc.message)
        if control.deadline is None:
            raise exc  # after the first byte: in-band
        if isinstance(exc, UpstreamRejected) and exc.upstream_code == 1001:
            if plan.refreshed:
                raise ReauthRequired(
                    "Trae refused a freshly refreshed access token; the operator must "
                    "log in to Trae again and update REFRESH_TOKEN"
                ) from exc
            plan.token = await self._account.refresh_after_rejection(plan.token)
            plan.refreshed = True
            return
        if not exc.retryable:
            raise exc
        plan.attempt += 1
        if plan.attempt > self._tuning.retries:
            raise _gave_up(exc, plan.attempt) if isinstance(exc, UpstreamRejected) else exc
        await self._back_off(exc, plan.attempt, control.deadline)

    async def _back_off(self, exc: UpstreamError, attempt: int, deadline: float) -> None:
        # Protocol §7 and dialect §7 (3003): retried with backoff before the first byte, while
        # the first-byte deadline lasts; past it, the last failure is the answer.
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            raise exc
        delay = self._tuning.retry_base_delay * 2 ** (attempt - 1)
        log.info(
            "upstream_retry",
            attempt=attempt,
            of=self._tuning.retries + 1,
            reason=exc.message,
            delay=delay,
            **trae_fields(exc),
        )
        await asyncio.sleep(min(delay * (0.5 + random.random()), remaining))  # noqa: S311

    def _explain(self, code: int, message: str) -> UpstreamRejected:
        """The one place a Trae rejection gains what the gateway knows about it (dialect §7)."""
        note = ""
        if code == 4008 and self._credits is not None:
            note = self._credits.left_note()
            self._credits.exhausted()  # dialect §7: 4008 means ide_credits ran out
        return from_business_code(code, message, note=note)

    def _credit(self, report: CreditsReport) -> None:
        if self._credits is not None:
            self._credits.observe_report(
                report.ide_credits, report.work_credits, report.billing_mode
            )


@dataclass(slots=True)
class _Plan:
    """Where a chat's attempts stand: the access token, the refresh spent, retries made."""

    token: str
    refreshed: bool = False
    attempt: int = 0


def _gave_up(exc: UpstreamRejected, attempts: int) -> UpstreamRejected:
    """The last transient rejection, saying how often it was tried."""
    code = exc.upstream_code if exc.upstream_code is not None else 0
    return from_business_code(code, exc.trae_message, note=f"tried {attempts} times")


def _shut(control: ChatControl) -> None:
    # SHUTDOWN_GRACE ran out: end this chat as an error (in-band once streaming).
    control.interrupt(ShuttingDown(SHUTDOWN_MESSAGE))


def _call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def _prompt_text(request: ChatRequest) -> str:
    return "\n".join(turn.text for turn in request.turns)
