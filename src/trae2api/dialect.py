"""The two upstream dialects behind one seam: the request builder and the catalogue source.

Each dialect is a small adapter over the shared translation core (translate, events, render);
it must not read streams or decide retries — chat.py does that for both.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

import structlog

from trae2api import bridge
from trae2api.agent import AUTO_MODEL, bare_model_name, build_agent_body
from trae2api.auth.credentials import DeviceIdentity
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


class Dialect(Protocol):
    name: str

    def bridges_tools(self, request: ChatRequest) -> bool: ...

    async def body(self, request: ChatRequest, device: DeviceIdentity) -> dict[str, Any]: ...

    def open_chat(
        self, body: dict[str, Any], access_token: str, device: DeviceIdentity
    ) -> EventStream: ...

    async def catalogue(
        self, access_token: str, device: DeviceIdentity
    ) -> list[dict[str, Any]]: ...


class LegacyDialect:
    """``/api/ide/v1/chat`` (protocol §5); tools travel through the prompt bridge."""

    name = "legacy"

    def __init__(
        self,
        client: TraeClient,
        *,
        version_code: int,
        to_trae: Callable[[str], str],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._version_code = version_code
        self._to_trae = to_trae
        self._clock = clock

    def bridges_tools(self, request: ChatRequest) -> bool:
        return bool(request.tools) and request.tool_choice != "none"

    async def body(self, request: ChatRequest, device: DeviceIdentity) -> dict[str, Any]:
        context = LegacyContext(
            trae_model=self._to_trae(request.model),
            session_id=session_id_for(request.turns, request.client_name),
            version_code=self._version_code,
            current_time=time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self._clock())),
            system_type=device.system_type,
            workspace_path=_WORKSPACES.get(device.system_type, _WORKSPACES["Linux"]),
        )
        return build_legacy_body(self._bridged_turns(request), context)

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
        return await self._client.model_list(access_token, device)


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

    def __init__(self, client: AgentClient, limits: Limits, to_trae: Callable[[str], str]) -> None:
        self._client = client
        self._limits = limits
        self._to_trae = to_trae

    def bridges_tools(self, request: ChatRequest) -> bool:
        return False

    async def body(self, request: ChatRequest, device: DeviceIdentity) -> dict[str, Any]:
        model = bare_model_name(self._to_trae(request.model))
        if model == AUTO_MODEL:
            return build_agent_body(request, None, self._client.pool, None)
        limit = await self._limits.max_tokens(model) if request.max_tokens else None
        return build_agent_body(request, model, self._client.pool, limit)

    def open_chat(
        self, body: dict[str, Any], access_token: str, device: DeviceIdentity
    ) -> EventStream:
        return self._client.chat(body, access_token, device)

    async def catalogue(self, access_token: str, device: DeviceIdentity) -> list[dict[str, Any]]:
        entries = await self._client.catalogue(access_token, device)
        default = next((e for e in entries if e["is_default"]), None)
        auto = {
            "name": AUTO_MODEL,
            "display_name": f"Account default ({default['name']})"
            if default
            else "Account default",
            "multimodal": bool(default and default["multimodal"]),
            "is_default": False,
        }
        return [auto, *entries]
