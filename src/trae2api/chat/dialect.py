"""The two upstream dialects behind one seam: the request builder and the catalogue source.

Each dialect is a small adapter over the shared translation core (translate, events, render);
it must not read streams or decide retries — chat/service.py does that for both.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from typing import Any, Protocol

import structlog

from trae2api.auth.account import Account
from trae2api.auth.credentials import DeviceIdentity
from trae2api.chat.attachments import TurnImages
from trae2api.chat.catalogue import AliasTable
from trae2api.config import DEFAULT_MULTI_MEDIA_ITEM
from trae2api.errors import ApiError, InvalidRequest, UpstreamRejected
from trae2api.upstream.agent_client import AgentClient
from trae2api.upstream.client import ChatControl, TraeClient
from trae2api.upstream.upload_answers import UploadedImage
from trae2api.wire import bridge
from trae2api.wire.agent_body import (
    AUTO_MODEL,
    Probe,
    bare_model_name,
    build_agent_body,
    effort_level,
    union_of_pools,
)
from trae2api.wire.images import ImageData
from trae2api.wire.sse import SSEEvent
from trae2api.wire.translate import (
    ChatRequest,
    LegacyContext,
    Turn,
    build_legacy_body,
    session_id_for,
)

log = structlog.get_logger(__name__)
_WORKSPACES = {
    "Windows": "C:\\Users\\trae\\workspace",
    "macOS": "/Users/trae/workspace",
    "Linux": "/home/trae/workspace",
}

# The chat stream's events a network read at a time, ``[]`` per tick of silence.
EventStream = AsyncGenerator[list[SSEEvent], None]


class Uploader(Protocol):
    """The legacy image pipeline (protocol §8): bytes in, an ImageX reference out."""

    async def upload(
        self, image: ImageData, access_token: str, device: DeviceIdentity
    ) -> UploadedImage: ...

    async def close(self) -> None: ...


class Dialect(Protocol):
    @property
    def name(self) -> str: ...

    # Client names ↔ Trae names for this dialect's catalogue (protocol §4).
    @property
    def aliases(self) -> AliasTable: ...

    # Whether remote image URLs must be fetched (else they may be passed on as they are).
    @property
    def needs_image_bytes(self) -> bool: ...

    def bridges_tools(self, request: ChatRequest) -> bool: ...

    async def body(
        self, request: ChatRequest, device: DeviceIdentity, images: TurnImages | None = None
    ) -> dict[str, Any]: ...

    def open_chat(
        self,
        body: dict[str, Any],
        access_token: str,
        device: DeviceIdentity,
        control: ChatControl,
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
        aliases: AliasTable,
        uploader: Uploader | None = None,
        account: Account | None = None,
        media_item: Mapping[str, Any] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._version_code = version_code
        self.aliases = aliases
        self._uploader = uploader
        self._account = account
        self._media_item = dict(media_item or DEFAULT_MULTI_MEDIA_ITEM)
        self._clock = clock
        self._default: str | None = None  # the Trae name ``auto`` stands for, once listed

    def bridges_tools(self, request: ChatRequest) -> bool:
        return bool(request.tools) and request.tool_choice != "none"

    async def body(
        self, request: ChatRequest, device: DeviceIdentity, images: TurnImages | None = None
    ) -> dict[str, Any]:
        context = LegacyContext(
            trae_model=await self._trae_model(request.model, device),
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
        self,
        body: dict[str, Any],
        access_token: str,
        device: DeviceIdentity,
        control: ChatControl,
    ) -> EventStream:
        return self._client.chat(body, access_token, device, control)

    async def _trae_model(self, model: str, device: DeviceIdentity) -> str:
        """The Trae name; ``auto`` is the account's default model, as on the agent dialect."""
        trae_model = self.aliases.to_trae(model)
        if trae_model != AUTO_MODEL:
            return trae_model
        if self._default is None and self._account is not None:
            await self.catalogue(await self._account.access_token(), device)
        return self._default or trae_model

    async def catalogue(self, access_token: str, device: DeviceIdentity) -> list[dict[str, Any]]:
        entries = await self._client.model_list(access_token, device)
        # ``auto``: the ``is_default`` entry, else the first one (dialect §3, as on agent).
        chosen = next((e for e in entries if e.get("is_default")), entries[0] if entries else None)
        self._default = str(chosen["name"]) if chosen is not None else None
        return with_auto(entries, chosen)

    async def aclose(self) -> None:
        if self._uploader is not None:
            await self._uploader.close()


def with_auto(
    entries: list[dict[str, Any]], default: dict[str, Any] | None
) -> list[dict[str, Any]]:
    """The legacy catalogue with ``auto`` first: the account's default model (dialect §3)."""
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
    """``/api/agent/v3/llm_utils_chat`` (dialect §4) with native tool calling.

    It remembers each listed model's pool, output limit and reasoning levels (dialect §7) from
    its last catalogue, and lists the catalogue again for a model it has not seen (at most every
    ``relist_after`` seconds).
    """

    name = "agent"

    def __init__(
        self,
        client: AgentClient,
        account: Account,
        aliases: AliasTable,
        *,
        inline_remote_images: bool = True,
        relist_after: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._account = account
        self.aliases = aliases
        self.needs_image_bytes = inline_remote_images
        self._relist_after = relist_after
        self._clock = clock
        self._models: dict[str, dict[str, Any]] = {}
        self._listed_at: float | None = None
        self._relisting = asyncio.Lock()

    @property
    def host(self) -> str:
        return self._client.base_url

    def bridges_tools(self, request: ChatRequest) -> bool:
        return False

    async def body(
        self, request: ChatRequest, device: DeviceIdentity, images: TurnImages | None = None
    ) -> dict[str, Any]:
        urls = [[i if isinstance(i, str) else i.data_url() for i in t] for t in images or []]
        model = bare_model_name(self.aliases.to_trae(request.model))
        # "auto" is the account default (dialect §3): its limit and levels are the default's.
        facts = await self._facts(model, device)
        effort = effort_level(request.reasoning_effort, facts.get("effort_levels") or ())
        if request.reasoning_effort and effort is None:
            log.debug("reasoning_effort_dropped", model=model, asked=request.reasoning_effort)
        limit = facts.get("max_tokens")
        if model == AUTO_MODEL:
            return build_agent_body(request, None, "inline_chat", limit, urls, effort)
        # Dialect §7: a model is valid only with the pool it was listed under.
        pool = facts.get("pool") or self._client.pools[0]
        return build_agent_body(request, model, pool, limit, urls, effort)

    async def _facts(self, model: str, device: DeviceIdentity) -> dict[str, Any]:
        """The model's catalogue entry, listing the catalogue again if it is unknown and old."""
        if model in self._models or not self._may_relist():
            return self._models.get(model, {})
        async with self._relisting:
            if model not in self._models and self._may_relist():
                try:
                    await self.catalogue(await self._account.access_token(), device)
                except ApiError as exc:
                    log.info("catalogue_relist_failed", model=model, reason=exc.message)
                    self._listed_at = self._clock()
        return self._models.get(model, {})

    def _may_relist(self) -> bool:
        listed = self._listed_at
        return listed is None or self._clock() - listed >= self._relist_after

    def open_chat(
        self,
        body: dict[str, Any],
        access_token: str,
        device: DeviceIdentity,
        control: ChatControl,
    ) -> EventStream:
        return self._client.chat(body, access_token, device, control)

    async def probe(self, access_token: str, device: DeviceIdentity) -> Probe:
        return await self._client.probe(access_token, device)

    async def catalogue(self, access_token: str, device: DeviceIdentity) -> list[dict[str, Any]]:
        """Dialect §7: the union of the pools' models (first pool wins); a pool that fails is
        skipped while another answers. Empty when Trae's table is (a stale IDE_VERSION_CODE)."""
        pools = self._client.pools
        answers = await asyncio.gather(
            *(self._client.catalogue(pool, access_token, device) for pool in pools),
            return_exceptions=True,
        )
        listed = [answer for answer in answers if isinstance(answer, list)]
        for pool, answer in zip(pools, answers, strict=True):
            if isinstance(answer, BaseException) and not isinstance(answer, ApiError):
                raise answer
            if isinstance(answer, ApiError) and listed:
                log.info("catalogue.pool_skipped", pool=pool, reason=answer.message)
        if not listed:
            errors = [answer for answer in answers if isinstance(answer, ApiError)]
            if not _all_param_invalid(errors):
                raise errors[0]
            # Dialect §7: a stale version code can also answer 4001 for every pool.
            listed = [[]]
        entries = union_of_pools(listed)
        if entries:
            entries = [_auto_entry(entries), *entries]
        self._models = {entry["name"]: entry for entry in entries}
        self._listed_at = self._clock()
        return entries

    async def aclose(self) -> None:
        return None


def _all_param_invalid(errors: Sequence[ApiError]) -> bool:
    """Every pool answered 4001 "param is invalid" (dialect §7: a stale version code), not the
    4001 of a missing or foreign app id (dialect §2), which is a different fix."""
    return all(
        isinstance(e, UpstreamRejected) and e.upstream_code == 4001 and "app_id" not in e.message
        for e in errors
    )


def _auto_entry(entries: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Dialect §3: ``auto`` is the account's default model."""
    default = next((e for e in entries if e["is_default"]), None)
    if default is None:
        return {"name": AUTO_MODEL, "display_name": "Account default", "pool": "inline_chat"}
    return {
        **default,
        "name": AUTO_MODEL,
        "display_name": f"Account default ({default['name']})",
        "is_default": False,
        "pool": "inline_chat",
    }
