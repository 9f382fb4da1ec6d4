"""Calls to the agent dialect: headers (dialect §2), catalogue (§3) and chat stream (§4, §5).

It turns HTTP answers into event batches or ``ApiError``s; it must not retry or translate.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator
from typing import Any

import httpx
import orjson

from trae2api.auth.credentials import DeviceIdentity
from trae2api.errors import UpstreamUnavailable, from_business_code
from trae2api.upstream.client import (
    ChatControl,
    UpstreamIdentity,
    business_code,
    device_headers,
    event_batches,
    http_error,
)
from trae2api.upstream.streams import StreamPool
from trae2api.upstream.transport import mapped_transport_errors
from trae2api.wire.agent_body import (
    Probe,
    catalogue_items,
    catalogue_request,
    classify_probe,
    parse_catalogue,
)
from trae2api.wire.sse import SSEEvent


class AgentClient:
    """One account's view of ``/api/agent/v3/llm_utils_chat`` and ``get_detail_param``."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        streams: StreamPool,
        *,
        base_url: str,
        identity: UpstreamIdentity,
        user_id: str,
        pools: tuple[str, ...],
    ) -> None:
        self._http = http
        self._streams = streams
        self.base_url = base_url
        self._identity = identity
        self._user_id = user_id
        self.pools = pools

    def headers(self, access_token: str, device: DeviceIdentity, accept: str) -> dict[str, str]:
        """Dialect §2: the token three times, app and version, device, a fresh request id."""
        identity = self._identity
        headers = {
            "authorization": f"Cloud-IDE-JWT {access_token}",
            "x-cloudide-token": access_token,
            "x-ide-token": access_token,
            "x-app-id": identity.app_id,
            "x-ide-version": identity.ide_version,
            "x-ide-version-code": identity.ide_version_code,
            "x-app-version-code": identity.ide_version_code,
            "x-ide-version-type": "stable",
            "x-app-version": "default",
            "request-traffic-type": "prod",
            "user-agent": f"Trae/{identity.ide_version}",
            "x-request-id": str(uuid.uuid4()),
            **device_headers(device),
            "content-type": "application/json",
            "accept": accept,
        }
        if self._user_id:
            headers["x-uid"] = self._user_id
        return headers

    async def catalogue(
        self, pool: str, access_token: str, device: DeviceIdentity
    ) -> list[dict[str, Any]]:
        """Dialect §3/§7: one pool's visible models as catalogue entries."""
        with mapped_transport_errors("listing models"):
            response = await self._post_catalogue(pool, access_token, device)
        if response.status_code != 200:
            raise http_error(response.status_code, response.content, response.headers)
        try:
            payload = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            payload = None
        found = business_code(payload)
        if found:
            raise from_business_code(*found)
        if catalogue_items(payload) is None:
            raise UpstreamUnavailable("Trae's catalogue answer had no config_info_list")
        return parse_catalogue(payload, pool)

    async def probe(self, access_token: str, device: DeviceIdentity) -> Probe:
        """Whether this host serves the agent catalogue (selector.py); never raises."""
        try:
            with mapped_transport_errors("probing the agent catalogue"):
                response = await self._post_catalogue(self.pools[0], access_token, device)
        except UpstreamUnavailable as exc:
            # A timeout says nothing; a refused connection or an unknown name means no agent here.
            timed_out = exc.code == "upstream_timeout"
            return Probe("unknown" if timed_out else "absent", exc.message)
        content_type = response.headers.get("content-type", "")
        return classify_probe(response.status_code, content_type, response.content)

    async def _post_catalogue(
        self, pool: str, access_token: str, device: DeviceIdentity
    ) -> httpx.Response:
        return await self._http.post(
            f"{self.base_url}/api/ide/v1/get_detail_param",
            content=orjson.dumps(catalogue_request(pool)),
            headers=self.headers(access_token, device, "application/json"),
        )

    def chat(
        self,
        body: dict[str, Any],
        access_token: str,
        device: DeviceIdentity,
        control: ChatControl,
    ) -> AsyncGenerator[list[SSEEvent], None]:
        """Dialect §4: the chat stream's events a network read at a time."""
        url = f"{self.base_url}/api/agent/v3/llm_utils_chat"
        headers = self.headers(access_token, device, "text/event-stream")
        return event_batches(self._streams, url, body, headers, control)
