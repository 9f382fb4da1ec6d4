"""Response classes: JSON rendered by orjson (the hot path), SSE with the right headers."""

from __future__ import annotations

from collections.abc import AsyncIterable
from typing import Any

import orjson
from starlette.responses import Response, StreamingResponse

SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


class ORJSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def sse_response(chunks: AsyncIterable[bytes], headers: dict[str, str] | None = None) -> Response:
    """A ``text/event-stream`` response; proxies are told not to buffer it."""
    return StreamingResponse(
        chunks, media_type="text/event-stream", headers={**SSE_HEADERS, **(headers or {})}
    )
