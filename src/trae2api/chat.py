"""The chat use case: one OpenAI chat request through Trae, streamed or aggregated.

It owns retries before the first byte, the one refresh on 1001, queue waits, keepalives and
in-band errors (protocol §7). Translation and rendering stay pure in translate/render.
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
from trae2api.errors import (
    ApiError,
    GatewayError,
    QueueTimeout,
    ReauthRequired,
    UpstreamRejected,
    UpstreamUnavailable,
    from_business_code,
)
from trae2api.events import (
    Delta,
    Failure,
    Finished,
    Item,
    Queued,
    UsageReport,
    interpret,
    usage_payload,
)
from trae2api.render import ChunkRenderer, OutputShaper, completion_body, error_event
from trae2api.sse import DONE, encode_comment
from trae2api.status.health import UpstreamHealth
from trae2api.translate import (
    LegacyContext,
    ReasoningMode,
    Turn,
    build_legacy_body,
    session_id_for,
)
from trae2api.upstream.client import TraeClient

log = structlog.get_logger(__name__)

_WORKSPACES = {
    "Windows": "C:\\Users\\trae\\workspace",
    "macOS": "/Users/trae/workspace",
    "Linux": "/home/trae/workspace",
}
_NONSTREAM_TICK = 1.0


class ClientDisconnected(GatewayError):
    """The client went away before its non-streamed answer was ready."""


@dataclass(frozen=True)
class ChatRequest:
    """A validated OpenAI chat request, reduced to what trae2api acts on."""

    model: str
    turns: list[Turn]
    stream: bool = False
    include_usage: bool = False
    stops: tuple[str, ...] = ()
    reasoning_mode: ReasoningMode = "reasoning_content"
    client_name: str = "anonymous"


@dataclass(frozen=True)
class ChatTuning:
    """Settings chat obeys (see config.py for their variables)."""

    version_code: int
    retries: int = 2
    queue_timeout: float = 120.0
    keepalive_interval: float = 15.0
    retry_base_delay: float = 0.25


class _Progress:
    """Folds items into the answer so far; shared by the streamed and aggregated paths."""

    def __init__(self, request: ChatRequest, tuning: ChatTuning, clock: Callable[[], float]):
        self.shaper = OutputShaper(request.reasoning_mode, request.stops)
        self._clock = clock
        self._queue_timeout = tuning.queue_timeout
        self.queued_since: float | None = None
        self.finish: str | None = None
        self.usage: UsageReport | None = None
        self.raw_text: list[str] = []
        self.done = False

    def delta(self, item: Delta) -> tuple[str, str]:
        self.queued_since = None
        self.raw_text.append(item.content)
        self.raw_text.append(item.reasoning)
        out = self.shaper.push(item.content, item.reasoning)
        if item.finish:
            self.finish = item.finish
        if self.shaper.stopped:
            self.finish, self.done = "stop", True
        return out

    def note(self, item: Item | None) -> None:
        """Book-keeping for everything but deltas; raises ``QueueTimeout`` when due."""
        if isinstance(item, Queued) and self.queued_since is None:
            self.queued_since = self._clock()
        elif isinstance(item, Finished):
            self.finish = self.finish or item.reason
            self.done = True
        elif isinstance(item, UsageReport):
            self.usage = item
        if (
            self.queued_since is not None
            and self._clock() - self.queued_since > self._queue_timeout
        ):
            raise QueueTimeout(
                f"Trae kept the request queued for more than {self._queue_timeout:g} s "
                f"(QUEUE_TIMEOUT); try again later"
            )

    def usage_payload(self, prompt_text: str) -> dict[str, Any]:
        return usage_payload(self.usage, prompt_text, "".join(self.raw_text))


class ChatService:
    """Runs chat completions against Trae for one account."""

    def __init__(
        self,
        *,
        upstream: TraeClient,
        account: Account,
        health: UpstreamHealth,
        tuning: ChatTuning,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._upstream = upstream
        self._account = account
        self._health = health
        self._tuning = tuning
        self._clock = clock

    def body_for(self, request: ChatRequest, trae_model: str) -> dict[str, Any]:
        device = self._account.device
        context = LegacyContext(
            trae_model=trae_model,
            session_id=session_id_for(request.turns, request.client_name),
            version_code=self._tuning.version_code,
            current_time=time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self._clock())),
            system_type=device.system_type,
            workspace_path=_WORKSPACES.get(device.system_type, _WORKSPACES["Linux"]),
        )
        return build_legacy_body(request.turns, context)

    async def complete(
        self,
        request: ChatRequest,
        trae_model: str,
        is_disconnected: Callable[[], Awaitable[bool]] | None = None,
    ) -> dict[str, Any]:
        """A non-streamed completion, aggregated from the same events a stream would carry."""
        progress = _Progress(request, self._tuning, time.monotonic)
        content: list[str] = []
        reasoning: list[str] = []
        batches = self._relay(self._items(self.body_for(request, trae_model)), _NONSTREAM_TICK)
        checked_at = time.monotonic()
        try:
            async for batch in batches:
                for item in batch or (None,):
                    if isinstance(item, Delta):
                        text, thought = progress.delta(item)
                        content.append(text)
                        reasoning.append(thought)
                    else:
                        progress.note(item)
                    if progress.done:
                        break
                if progress.done:
                    break
                # Nobody would read the answer: stop Trae's work within about a second.
                if is_disconnected and time.monotonic() - checked_at >= _NONSTREAM_TICK:
                    checked_at = time.monotonic()
                    if await is_disconnected():
                        raise ClientDisconnected("the client went away")
        finally:
            await batches.aclose()
        content.append(progress.shaper.flush())
        return completion_body(
            completion_id=_completion_id(),
            created=int(self._clock()),
            model=request.model,
            content="".join(content),
            reasoning="".join(reasoning),
            finish_reason=progress.finish or "stop",
            usage=progress.usage_payload(_prompt_text(request)),
        )

    async def open_stream(self, request: ChatRequest, trae_model: str) -> AsyncIterator[bytes]:
        """Start a stream; errors before its first byte raise here, later ones go in-band."""
        chunks = self._sse(request, trae_model)
        first = await chunks.__anext__()
        return _prepend(first, chunks)

    async def _sse(self, request: ChatRequest, trae_model: str) -> AsyncIterator[bytes]:
        writer = _StreamWriter(
            ChunkRenderer(
                _completion_id(), int(self._clock()), request.model, request.include_usage
            ),
            _Progress(request, self._tuning, time.monotonic),
        )
        batches = self._relay(
            self._items(self.body_for(request, trae_model)), self._tuning.keepalive_interval
        )
        try:
            async for batch in batches:
                out = writer.batch(batch)
                if out:
                    yield out
                if writer.progress.done:
                    break
        except ApiError as exc:
            if not writer.sent:
                raise
            log.warning("stream_failed_in_band", code=exc.code, reason=exc.message)
            yield error_event(exc.envelope()) + DONE
            return
        finally:
            await batches.aclose()
        yield writer.ending(request.include_usage, _prompt_text(request))

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
            except UpstreamRejected as exc:
                if exc.upstream_code != 1001 or produced:
                    raise
                if refreshed:
                    raise ReauthRequired(
                        "Trae refused a freshly refreshed access token; the operator must log "
                        "in to Trae again and update REFRESH_TOKEN"
                    ) from exc
                token, refreshed = await self._account.refresh_after_rejection(token), True
            except UpstreamUnavailable as exc:
                self._health.failure(exc.message)
                if produced or attempt >= self._tuning.retries:
                    raise
                attempt += 1
                delay = self._tuning.retry_base_delay * 2 ** (attempt - 1)
                log.info("upstream_retry", attempt=attempt, reason=exc.message, delay=delay)
                await asyncio.sleep(delay * (0.5 + random.random()))  # noqa: S311

    async def _attempt(self, body: dict[str, Any], token: str) -> AsyncIterator[list[Item]]:
        async with self._upstream.chat(body, token, self._account.device) as batches:
            self._health.success()
            async for events in batches:
                items: list[Item] = []
                for event in events:
                    item = interpret(event)
                    if isinstance(item, Failure):
                        if items:
                            yield items  # what came before the error still counts
                        raise from_business_code(item.code, item.message)
                    if item is not None:
                        items.append(item)
                if items:
                    yield items

    @staticmethod
    async def _relay(
        batches: AsyncIterator[list[Item]], tick: float
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

        task = asyncio.create_task(pump())
        try:
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


class _StreamWriter:
    """Turns item batches into SSE bytes: role first, deltas, comments, then the ending."""

    def __init__(self, renderer: ChunkRenderer, progress: _Progress) -> None:
        self.renderer = renderer
        self.progress = progress
        self.sent = False
        self._role_sent = False

    def batch(self, batch: list[Item] | None) -> bytes:
        if batch is None:
            self.progress.note(None)
            self.sent = True
            return _comment(None)
        out: list[bytes] = []
        for item in batch:
            if isinstance(item, Delta):
                if not self._role_sent:
                    out.append(self.renderer.role())
                    self._role_sent = True
                content, reasoning = self.progress.delta(item)
                if content or reasoning:
                    out.append(self.renderer.delta(content, reasoning))
            else:
                self.progress.note(item)
                if isinstance(item, Queued):
                    out.append(_comment(item))
            if self.progress.done:
                break
        self.sent = self.sent or bool(out)
        return b"".join(out)

    def ending(self, include_usage: bool, prompt_text: str) -> bytes:
        out = [] if self._role_sent else [self.renderer.role()]
        tail = self.progress.shaper.flush()
        if tail:
            out.append(self.renderer.delta(tail, ""))
        out.append(self.renderer.finish(self.progress.finish or "stop"))
        if include_usage:
            out.append(self.renderer.usage(self.progress.usage_payload(prompt_text)))
        out.append(DONE)
        return b"".join(out)


@dataclass(frozen=True, slots=True)
class _End:
    error: Exception | None


async def _prepend(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    yield first
    async for chunk in rest:
        yield chunk


def _comment(item: Item | None) -> bytes:
    if isinstance(item, Queued):
        return encode_comment(f"queued position={item.position if item.position else '?'}")
    return encode_comment("keepalive")


def _completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def _prompt_text(request: ChatRequest) -> str:
    return "\n".join(turn.text for turn in request.turns)
