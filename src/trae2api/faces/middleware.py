"""Pure ASGI middleware: request ids with one access-log line, and the request body limit.

They wrap ``send``/``receive`` only; they must not buffer response bodies (streams pass through).
"""

from __future__ import annotations

import string
import time
import uuid

import orjson
import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from trae2api.errors import PayloadTooLarge
from trae2api.faces.anthropic_render import error_body, is_anthropic_path
from trae2api.faces.security import CLIENT_SCOPE_KEY
from trae2api.status.metrics import NO_LABEL, Metrics

log = structlog.get_logger("trae2api.access")
# The chat route leaves the requested model here, for the metrics.
MODEL_SCOPE_KEY = "trae2api.model"


class RequestContext:
    """Gives each request an id (``x-request-id``, echoed back), logs it once when done (with
    the client key's name) and counts it in the metrics by route template."""

    def __init__(self, app: ASGIApp, metrics: Metrics | None = None) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_id(scope) or uuid.uuid4().hex
        started = time.perf_counter()
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            client = scope.get(CLIENT_SCOPE_KEY, NO_LABEL)
            log.info(
                "request",
                method=scope["method"],
                path=scope["path"],
                status=status,
                client=client,
                duration_ms=round(elapsed * 1000, 1),
            )
            structlog.contextvars.unbind_contextvars("request_id", "client")
            if self.metrics is not None:
                self.metrics.request_done(
                    _route(scope),
                    scope["method"],
                    status,
                    scope.get(MODEL_SCOPE_KEY),
                    client,
                    elapsed,
                )


def _route(scope: Scope) -> str:
    # The matched route's template ("/v1/chat/completions"), never the raw path.
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


_ID_CHARS = frozenset(string.ascii_letters + string.digits + "-_.")


def _incoming_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            text: str = value.decode("latin-1")
            # Only a plain ASCII token is echoed back, so a header cannot be injected through it
            # (str.isalnum alone also accepts letters such as "é" or "²").
            if 0 < len(text) <= 128 and all(c in _ID_CHARS for c in text):
                return text
    return None


class BodyLimit:
    """Refuses request bodies over ``limit`` bytes with 413, declared or streamed."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.limit:
            await _send_too_large(send, self.limit, scope.get("path", ""))
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise PayloadTooLarge(_too_large_message(self.limit))
            return message

        await self.app(scope, counting_receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


def _too_large_message(limit: int) -> str:
    return f"The request body is larger than MAX_BODY_BYTES ({limit} bytes)."


async def _send_too_large(send: Send, limit: int, path: str = "") -> None:
    error = PayloadTooLarge(_too_large_message(limit))
    body = orjson.dumps(error_body(error) if is_anthropic_path(path) else error.envelope())
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})
