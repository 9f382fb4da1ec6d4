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
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
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
from trae2api.wire.events import CreditsReport, Delta, Failure, Finished, Item, interpret
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


@dataclass
class ChatStream:
    """A started stream: its neutral events, and the answer it is filling (response headers)."""

    events: AsyncIterator[Steps]
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
        first = await events.__anext__()
        return ChatStream(_prepend(first, events), answer)

    async def _events(
        self,
        request: ChatRequest,
        answer: Answer,
        body: dict[str, Any],
        tick: float,
        *,
        in_band: bool = True,
    ) -> AsyncGenerator[Steps, None]:
        """The neutral answer events, per upstream read; ends with ``Finish`` or ``Failed``."""
        batches = self._relay(self._items(body), tick)
        sent = False
        try:
            async for batch in batches:
                steps = answer.steps(batch)
                if steps:
                    sent = True
                    yield steps
                if answer.done:
                    break
        except ApiError as exc:
            if not (in_band and sent):
                raise
            log.warning(
                "stream_failed_in_band", code=exc.code, reason=exc.message, **trae_fields(exc)
            )
            yield [[Failed(exc)]]
            return
        finally:
            await batches.aclose()
        yield [answer.closing(_prompt_text(request))]

    async def _items(self, body: dict[str, Any]) -> AsyncIterator[list[Item]]:
        """Upstream items for one request, with retries while nothing has been produced."""
        attempt, refreshed = 0, False
        token = await self._account.access_token()
        while True:
            produced = False
            try:
                async for batch in self._attempt(body, token):
                    produced = produced or any(isinstance(i, Delta | Finished) for i in batch)
                    yield batch
                if not produced:
                    raise UpstreamUnavailable("Trae ended the stream without an answer")
                return
            except UpstreamError as exc:
                if isinstance(exc, UpstreamUnavailable):
                    self._health.failure(exc.message)
                if produced:
                    raise
                if isinstance(exc, UpstreamRejected) and exc.upstream_code == 1001:
                    if refreshed:
                        raise ReauthRequired(
                            "Trae refused a freshly refreshed access token; the operator must "
                            "log in to Trae again and update REFRESH_TOKEN"
                        ) from exc
                    token, refreshed = await self._account.refresh_after_rejection(token), True
                    continue
                if not exc.retryable:
                    raise
                attempt += 1
                if attempt <= self._tuning.retries:
                    await self._back_off(exc, attempt)
                elif isinstance(exc, UpstreamRejected):
                    raise _gave_up(exc, attempt) from exc
                else:
                    raise

    async def _back_off(self, exc: UpstreamError, attempt: int) -> None:
        # Protocol §7 and dialect §7 (3003): retried with backoff before the first byte.
        delay = self._tuning.retry_base_delay * 2 ** (attempt - 1)
        log.info(
            "upstream_retry",
            attempt=attempt,
            of=self._tuning.retries + 1,
            reason=exc.message,
            delay=delay,
            **trae_fields(exc),
        )
        await asyncio.sleep(delay * (0.5 + random.random()))  # noqa: S311

    async def _attempt(self, body: dict[str, Any], token: str) -> AsyncIterator[list[Item]]:
        try:
            async with self._dialect.open_chat(body, token, self._account.device) as batches:
                self._health.success()
                async for events in batches:
                    items: list[Item] = []
                    for event in events:
                        item = interpret(event)
                        if isinstance(item, Failure):
                            if items:
                                yield items  # what came before the error still counts
                            raise self._explain(item.code, item.message)
                        if isinstance(item, CreditsReport):
                            self._credit(item)
                        elif item is not None:
                            items.append(item)
                    if items:
                        yield items
        except ApiError as exc:
            self._metrics.upstream_error(exc)
            raise

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

    async def _relay(
        self, batches: AsyncIterator[list[Item]], tick: float
    ) -> AsyncGenerator[list[Item] | None, None]:
        """Batches as they come, and ``None`` after every ``tick`` seconds of silence.

        The upstream is read by its own task so that a silent upstream can be waited on
        with a timeout without cancelling (and so losing) the read in progress.
        """
        queue: asyncio.Queue[list[Item] | _End] = asyncio.Queue()

        async def pump() -> None:
            try:
                async for batch in batches:
                    queue.put_nowait(batch)
            except Exception as exc:
                queue.put_nowait(_End(exc))
            else:
                queue.put_nowait(_End(None))

        def stop() -> None:
            # SHUTDOWN_GRACE ran out: end this chat as an error (in-band once streaming).
            queue.put_nowait(_End(ShuttingDown(SHUTDOWN_MESSAGE)))

        task = asyncio.create_task(pump())
        try:
            with self._drain.watch(stop):
                while True:
                    try:
                        async with asyncio.timeout(tick):
                            got = await queue.get()
                    except TimeoutError:
                        yield None
                        continue
                    if isinstance(got, _End):
                        if got.error is not None:
                            raise got.error
                        return
                    yield got
        finally:
            # Cancelling the reader closes the upstream response (client gone or answer done).
            task.cancel()


@dataclass(frozen=True, slots=True)
class _End:
    error: Exception | None


def _gave_up(exc: UpstreamRejected, attempts: int) -> UpstreamRejected:
    """The last transient rejection, saying how often it was tried."""
    code = exc.upstream_code if exc.upstream_code is not None else 0
    return from_business_code(code, exc.trae_message, note=f"tried {attempts} times")


async def _prepend(first: Steps, rest: AsyncIterator[Steps]) -> AsyncIterator[Steps]:
    yield first
    async for chunk in rest:
        yield chunk


def _call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def _prompt_text(request: ChatRequest) -> str:
    return "\n".join(turn.text for turn in request.turns)
