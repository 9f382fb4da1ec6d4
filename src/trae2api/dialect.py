"""The two upstream dialects behind one seam: the request builder and the catalogue source.

Each dialect is a small adapter over the shared translation core (translate, events, render);
it must not read streams or decide retries — chat.py does that for both.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

import structlog

from trae2api import bridge
from trae2api.agent import AUTO_MODEL, bare_model_name, build_agent_body
from trae2api.attachments import TurnImages
from trae2api.auth.account import Account
from trae2api.auth.credentials import DeviceIdentity
from trae2api.config import DEFAULT_MULTI_MEDIA_ITEM
from trae2api.errors import InvalidRequest, UpstreamRejected
from trae2api.images import ImageData
from trae2api.sse import SSEEvent
from trae2api.translate import (
    ChatRequest,
    LegacyContext,
    Turn,
    build_legacy_body,
    session_id_for,
)
from trae2api.upstream.agent_client import AgentClient
from trae2api.upstream.client import TraeClient
from trae2api.upstream.upload_answers import UploadedImage

log = structlog.get_logger(__name__)
_WORKSPACES = {
    "Windows": "C:\\Users\\trae\\workspace",
    "macOS": "/Users/trae/workspace",
    "Linux": "/home/trae/workspace",
}

EventStream = AbstractAsyncContextManager[AsyncIterator[list[SSEEvent]]]


class Limits(Protocol):
    """What a dialect may ask the catalogue: a model's output limit."""

    async def max_tokens(self, model_id: str) -> int | None: ...


class DefaultModel(Protocol):
    """What the legacy dialect asks the catalogue: the Trae name ``auto`` stands for."""

    async def default_model(self) -> str | None: ...


class Uploader(Protocol):
    """The legacy image pipeline (protocol §8): bytes in, an ImageX reference out."""

    async def upload(
        self, image: ImageData, access_token: str, device: DeviceIdentity
    ) -> UploadedImage: ...

    async def close(self) -> None: ...


class Dialect(Protocol):
    name: str
    # Whether remote image URLs must be fetched (else they may be passed on as they are).
    needs_image_bytes: bool

    def bridges_tools(self, request: ChatRequest) -> bool: ...

    async def body(
        self, request: ChatRequest, device: DeviceIdentity, images: TurnImages | None = None
    ) -> dict[str, Any]: ...

    def open_chat(
        self, body: dict[str, Any], access_token: str, device: DeviceIdentity
    ) -> EventStream: ...

    async def catalogue(
        self, access_token: str, device: DeviceIdentity
    ) -> list[dict[str, Any]]: ...

    async def aclose(self) -> None: ...


class LegacyDialect:
    """``/api/ide/v1/chat`` (protocol §5); tools travel through the prompt bridge."""

    name = "legacy"
    needs_image_bytes = True

    def __init__(
        self,
        client: TraeClient,
        *,
        version_code: int,
        to_trae: Callable[[str], str],
        uploader: Uploader | None = None,
        account: Account | None = None,
        media_item: Mapping[str, Any] | None = None,
        models: DefaultModel | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._models = models
        self._version_code = version_code
        self._to_trae = to_trae
        self._uploader = uploader
        self._account = account
        self._media_item = dict(media_item or DEFAULT_MULTI_MEDIA_ITEM)
        self._clock = clock

    def bridges_tools(self, request: ChatRequest) -> bool:
        return bool(request.tools) and request.tool_choice != "none"

    async def body(
        self, request: ChatRequest, device: DeviceIdentity, images: TurnImages | None = None
    ) -> dict[str, Any]:
        context = LegacyContext(
            trae_model=await self._trae_model(request.model),
            session_id=session_id_for(request.turns, request.client_name),
            version_code=self._version_code,
            current_time=time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self._clock())),
            system_type=device.system_type,
            workspace_path=_WORKSPACES.get(device.system_type, _WORKSPACES["Linux"]),
        )
        body = build_legacy_body(self._bridged_turns(request), context)
        if images:
            body["multi_media"] = await self._multi_media(images, device)
        return body

    async def _trae_model(self, model: str) -> str:
        """The Trae name; ``auto`` is the account's default model, as on the agent dialect."""
        trae_model = self._to_trae(model)
        if trae_model == AUTO_MODEL and self._models is not None:
            return await self._models.default_model() or trae_model
        return trae_model

    async def _multi_media(self, images: TurnImages, device: DeviceIdentity) -> list[Any]:
        """Every image of the conversation uploaded (once, thanks to the cache) and referenced."""
        if self._uploader is None or self._account is None:
            raise InvalidRequest("image input is not configured on this gateway")
        token = await self._account.access_token()
        items = []
        for image in (image for turn in images for image in turn):
            assert isinstance(image, ImageData)  # the legacy dialect always fetches bytes
            try:
                uploaded = await self._uploader.upload(image, token, device)
            except UpstreamRejected as exc:
                if exc.upstream_code != 1001:
                    raise
                token = await self._account.refresh_after_rejection(token)
                uploaded = await self._uploader.upload(image, token, device)
            items.append(media_item(self._media_item, uploaded))
        return items

    def _bridged_turns(self, request: ChatRequest) -> list[Turn]:
        if request.max_tokens:
            # The legacy body has no length field (protocol §5): accepted, not enforced.
            log.debug("max_tokens_not_forwarded", dialect=self.name)
        turns = render_tool_history(request.turns)
        if not self.bridges_tools(request):
            return turns
        choice = request.tool_choice
        named = {"type": "function", "function": {"name": choice}}
        instruction = bridge.tool_instruction(
            list(request.tools),
            choice if choice in ("auto", "required") else named,
            request.parallel_tool_calls,
        )
        if turns and turns[0].role == "system":
            return [Turn("system", f"{turns[0].text}\n\n{instruction}"), *turns[1:]]
        return [Turn("system", instruction), *turns]

    def open_chat(
        self, body: dict[str, Any], access_token: str, device: DeviceIdentity
    ) -> EventStream:
        return self._client.chat(body, access_token, device)

    async def catalogue(self, access_token: str, device: DeviceIdentity) -> list[dict[str, Any]]:
        return with_auto(await self._client.model_list(access_token, device))

    async def aclose(self) -> None:
        if self._uploader is not None:
            await self._uploader.close()


def with_auto(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The catalogue with ``auto`` first: the account's default model (dialect §3)."""
    default = next((e for e in entries if e.get("is_default")), None)
    auto = {
        "name": AUTO_MODEL,
        "display_name": f"Account default ({default['name']})" if default else "Account default",
        "multimodal": bool(default and default.get("multimodal")),
        "is_default": False,
    }
    return [auto, *entries]


def media_item(template: Mapping[str, Any], uploaded: UploadedImage) -> dict[str, Any]:
    """Protocol §8 (UNKNOWN shape, MULTI_MEDIA_ITEM): the template with "$name" values filled."""
    values = {
        "$uri": uploaded.uri,
        "$width": uploaded.width,
        "$height": uploaded.height,
        "$format": uploaded.format,
        "$md5": uploaded.md5,
    }
    return {
        key: values.get(value, value) if isinstance(value, str) else value
        for key, value in template.items()
    }


def render_tool_history(turns: Sequence[Turn]) -> list[Turn]:
    """Earlier tool calls and results as text turns in the bridge's format."""
    names = {call.id: call.name for turn in turns for call in turn.tool_calls}
    out: list[Turn] = []
    pending: list[tuple[str, str, str]] = []
    for turn in turns:
        if turn.role == "tool":
            call_id = turn.tool_call_id or ""
            pending.append((call_id, names.get(call_id, "tool"), turn.text))
            continue
        if pending:
            out.append(Turn("user", bridge.render_tool_results(pending)))
            pending = []
        if turn.tool_calls:
            calls = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments},
                }
                for c in turn.tool_calls
            ]
            out.append(Turn("assistant", bridge.render_assistant_calls(turn.text, calls)))
        else:
            out.append(turn)
    if pending:
        out.append(Turn("user", bridge.render_tool_results(pending)))
    return out


class AgentDialect:
    """``/api/agent/v3/llm_utils_chat`` (dialect §4) with native tool calling."""

    name = "agent"

    def __init__(
        self,
        client: AgentClient,
        limits: Limits,
        to_trae: Callable[[str], str],
        *,
        inline_remote_images: bool = True,
    ) -> None:
        self._client = client
        self._limits = limits
        self._to_trae = to_trae
        self.needs_image_bytes = inline_remote_images

    def bridges_tools(self, request: ChatRequest) -> bool:
        return False

    async def body(
        self, request: ChatRequest, device: DeviceIdentity, images: TurnImages | None = None
    ) -> dict[str, Any]:
        urls = [[i if isinstance(i, str) else i.data_url() for i in t] for t in images or []]
        model = bare_model_name(self._to_trae(request.model))
        if model == AUTO_MODEL:
            return build_agent_body(request, None, self._client.pool, None, urls)
        limit = await self._limits.max_tokens(model) if request.max_tokens else None
        return build_agent_body(request, model, self._client.pool, limit, urls)

    def open_chat(
        self, body: dict[str, Any], access_token: str, device: DeviceIdentity
    ) -> EventStream:
        return self._client.chat(body, access_token, device)

    async def catalogue(self, access_token: str, device: DeviceIdentity) -> list[dict[str, Any]]:
        return with_auto(await self._client.catalogue(access_token, device))

    async def aclose(self) -> None:
        return None
