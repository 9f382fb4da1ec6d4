"""The one response body of every streamed face: a started chat's events, rendered a read at a time.

Each face brings its pure renderer (``Steps`` to bytes); this is where a stream is counted as
active and where the upstream read is ended when the client goes or the answer is done. It must
not shape events: the renderers do.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Awaitable, Callable

from trae2api.chat.answer_events import Steps
from trae2api.chat.service import ChatService, ChatStream
from trae2api.status.metrics import Metrics
from trae2api.wire.translate import ChatRequest


async def start_stream(
    chat: ChatService, request: ChatRequest, metrics: Metrics, model: str
) -> ChatStream:
    """A started chat (errors before its first event raise here), its wait for it measured."""
    started = time.perf_counter()
    stream = await chat.open_stream(request)
    metrics.first_chunk.labels(metrics.model_label(model, 200)).observe(
        time.perf_counter() - started
    )
    return stream


async def rendered_body(
    render: Callable[[Steps], bytes],
    stream: ChatStream,
    metrics: Metrics,
    after: Callable[[], Awaitable[None]] | None = None,
) -> AsyncGenerator[bytes, None]:
    """The body bytes; ``after`` runs once the answer was rendered to its end."""
    events = stream.events
    metrics.active_streams.inc()
    try:
        out = render(stream.first)
        if out:
            yield out
        async for steps in events:
            out = render(steps)
            if out:
                yield out
        if after is not None:
            await after()
    finally:
        metrics.active_streams.dec()
        metrics.queued(stream.answer)
        await events.aclose()  # ends the upstream read now, not when garbage collected
