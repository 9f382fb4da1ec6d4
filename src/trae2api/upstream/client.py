"""Calls to Trae's ``/api/ide/*`` endpoints: headers (§3), model list (§4), chat stream (§5, §6).

It turns HTTP answers into events or ``ApiError``s; it must not retry, refresh or translate.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from trae2api.auth.credentials import DeviceIdentity
from trae2api.errors import (
    ApiError,
    RouteAbsent,
    SSEProtocolError,
    UpstreamError,
    UpstreamUnavailable,
    from_business_code,
    upstream_unavailable,
)
from trae2api.upstream.streams import ReadControl, StreamPool
from trae2api.upstream.transport import mapped_transport_errors
from trae2api.wire.sse import SSEEvent, SSEParser

_RATE_LIMIT_DEFAULT_RETRY_AFTER = 5


@dataclass(frozen=True)
class UpstreamIdentity:
    """The static part of the §3 headers."""

    app_id: str
    ide_version: str
    ide_version_code: str


class TraeClient:
    """One account's view of the legacy ``/api/ide`` endpoints."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        streams: StreamPool,
        *,
        base_url: str,
        identity: UpstreamIdentity,
    ):
        self._http = http
        self._streams = streams
        self._base_url = base_url
        self._identity = identity

    def headers(self, access_token: str, device: DeviceIdentity) -> dict[str, str]:
        """Protocol §3: the credential, the app, the IDE version and a stable device identity."""
        return {
            "x-ide-token": access_token,
            "x-app-id": self._identity.app_id,
            "x-ide-version": self._identity.ide_version,
            "x-ide-version-code": self._identity.ide_version_code,
            "x-ide-version-type": "stable",
            **device_headers(device),
            "content-type": "application/json",
            "accept": "*/*",
        }

    async def model_list(self, access_token: str, device: DeviceIdentity) -> list[dict[str, Any]]:
        """Protocol §4: the ``model_configs`` of the account."""
        url = f"{self._base_url}/api/ide/v1/model_list"
        with mapped_transport_errors("listing models"):
            response = await self._http.get(
                url, params={"type": "chat"}, headers=self.headers(access_token, device)
            )
        if response.status_code != 200:
            raise http_error(response.status_code, response.content, response.headers)
        payload = _json(response.content)
        configs = payload.get("model_configs") if isinstance(payload, dict) else None
        if not isinstance(configs, list):
            raise _business_error(payload) or UpstreamUnavailable(
                "Trae's model list answer had no model_configs"
            )
        return [item for item in configs if isinstance(item, dict) and item.get("name")]

    def chat(
        self,
        body: dict[str, Any],
        access_token: str,
        device: DeviceIdentity,
        control: ChatControl,
    ) -> AsyncGenerator[list[SSEEvent], None]:
        """Protocol §5: the chat stream's events a network read at a time."""
        url = f"{self._base_url}/api/ide/v1/chat"
        headers = self.headers(access_token, device)
        return event_batches(self._streams, url, body, headers, control)


def device_headers(device: DeviceIdentity) -> dict[str, str]:
    """Protocol §3 CHOICE: one stable device identity per account, on every request."""
    return {
        "x-device-id": device.device_id,
        "x-machine-id": device.machine_id,
        "x-device-cpu": device.cpu,
        "x-device-brand": device.brand,
        "x-device-type": device.device_type,
    }


# What the dialect selector looks at in each read: the position and error to stop at, if any.
BatchWatch = Callable[[list[SSEEvent]], "tuple[int, ApiError] | None"]


class ChatControl(ReadControl):
    """A chat's ``ReadControl``, plus the selector's hooks (a watch per read, absent routes)."""

    __slots__ = ("on_absent", "watch")

    def __init__(self, tick: float | None = None, deadline: float | None = None) -> None:
        super().__init__(tick, deadline)
        self.watch: BatchWatch | None = None
        self.on_absent: Callable[[RouteAbsent], None] | None = None


async def event_batches(
    streams: StreamPool,
    url: str,
    body: dict[str, Any],
    headers: dict[str, str],
    control: ChatControl,
) -> AsyncGenerator[list[SSEEvent], None]:
    """POST ``body`` and yield the answer's events a network read at a time (protocol §5),
    and ``[]`` after each ``control.tick`` of silence, before the head as after it.
    A non-stream answer raises."""
    with mapped_transport_errors("opening the chat stream"):
        response = await streams.open(url, orjson.dumps(body), headers)
    try:
        with mapped_transport_errors("opening the chat stream"):
            while not await response.head(control):
                yield []
        content_type = response.header("content-type") or ""
        if response.status != 200 or content_type.startswith("application/json"):
            # A JSON answer instead of a stream is an error, whatever its status.
            with mapped_transport_errors("reading an error answer"):
                content = await response.read()
            error = http_error(response.status, content, response.headers)
            if isinstance(error, RouteAbsent) and control.on_absent is not None:
                control.on_absent(error)
            raise error
        # Batches, not single events: the per-item cost downstream is paid once per read.
        parser = SSEParser()
        watch = control.watch
        with mapped_transport_errors("reading the chat stream"):
            try:
                stop = None
                async for raw in response.chunks(control):
                    if not raw:
                        yield []
                        continue
                    events = parser.feed(raw)
                    stop = watch(events) if events and watch is not None else None
                    if stop is not None:
                        break
                    if events:
                        yield events
                else:
                    events = parser.close()  # the last event may lack its blank line
                    stop = watch(events) if events and watch is not None else None
                    if events and stop is None:
                        yield events
                if stop is not None:  # the selector stops the stream at an error (dialect §7)
                    if stop[0]:
                        yield events[: stop[0]]
                    raise stop[1]
            except SSEProtocolError as exc:
                raise UpstreamUnavailable(f"Trae sent a malformed event stream: {exc}") from exc
    finally:
        # Synchronous, so a cancellation cannot land inside it: the socket is pooled or closed.
        response.close()


_ABSENT = frozenset({404, 405, 410})


def http_error(status: int, content: bytes, headers: httpx.Headers) -> ApiError:
    """An upstream non-200 answer as the error a client can act on (protocol §7)."""
    payload = _json(content)
    if status in (401, 403):
        # Protocol §7: HTTP 401/403 mean the access token was refused, like code 1001.
        return from_business_code(1001, "the access token was refused")
    if status == 429:
        return UpstreamError(
            "Trae is rate limiting this account (HTTP 429)",
            status=429,
            type="rate_limit_error",
            code="rate_limit_exceeded",
            retry_after=_retry_after(headers),
        )
    business = _business_error(payload)
    if business is not None and status < 500:
        return business
    if status == 200:
        return upstream_unavailable("Trae answered JSON instead of an event stream")
    if status >= 500:
        return upstream_unavailable(f"Trae answered HTTP {status}")
    if status in _ABSENT:
        return RouteAbsent(f"Trae answered HTTP {status}")
    return UpstreamError(f"Trae answered HTTP {status}")


def business_code(payload: Any) -> tuple[int, str] | None:
    """The ``code``/``message`` pair of a Trae error body, if it is one."""
    if not isinstance(payload, dict) or "code" not in payload:
        return None
    try:
        code = int(payload["code"])
    except (TypeError, ValueError):
        return None
    if code == 0:
        return None
    message = payload.get("message") or payload.get("msg") or ""
    return code, str(message)[:300]


def _business_error(payload: Any) -> ApiError | None:
    found = business_code(payload)
    return from_business_code(*found) if found else None


def _json(content: bytes) -> Any:
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        return None


def _retry_after(headers: httpx.Headers) -> int:
    value = headers.get("retry-after", "")
    return int(value) if value.isdigit() else _RATE_LIMIT_DEFAULT_RETRY_AFTER
