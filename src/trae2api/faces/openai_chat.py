"""``POST /v1/chat/completions`` (and the original's ``/v1/chat`` and ``/v1``).

It validates and converts the wire request, then hands it to the chat use case.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import structlog
from fastapi import APIRouter, Request
from starlette.responses import Response

from trae2api.errors import ClientDisconnected, InvalidRequest
from trae2api.faces.http_responses import ORJSONResponse, sse_response
from trae2api.faces.middleware import MODEL_SCOPE_KEY
from trae2api.faces.openai_render import OpenAIChatRenderer, completion_from
from trae2api.faces.runtime import CallerDep
from trae2api.faces.schemas import ChatCompletionRequest
from trae2api.faces.streaming import rendered_body, start_stream
from trae2api.faces.strict_json import StrictJSONRoute
from trae2api.wire.sse import DONE
from trae2api.wire.translate import ChatRequest, ReasoningMode, turns_from_messages

log = structlog.get_logger(__name__)
router = APIRouter(route_class=StrictJSONRoute)
_MAX_STOPS = 4  # OpenAI's limit for ``stop``
_SAMPLING = ("temperature", "top_p", "seed", "presence_penalty", "frequency_penalty")


def to_chat_request(
    body: ChatCompletionRequest, client_name: str, default_mode: ReasoningMode
) -> ChatRequest:
    """The use case's view of a wire request; raises ``InvalidRequest`` naming the parameter."""
    if body.n is not None and body.n > 1:
        raise InvalidRequest("n > 1 is not supported: Trae returns one choice", param="n")
    stops = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
    if len(stops) > _MAX_STOPS:
        raise InvalidRequest("stop accepts at most 4 sequences", param="stop")
    if unknown := body.unknown_fields():
        log.debug("unknown_fields_ignored", fields=unknown)
    messages = [
        {
            "role": m.role,
            "content": m.content,
            "tool_calls": m.tool_calls,
            "tool_call_id": m.tool_call_id,
        }
        for m in body.messages
    ]
    tools = _checked_tools(body.tools or [])
    return ChatRequest(
        model=body.model,
        turns=turns_from_messages(messages),
        tools=tuple(tools),
        tool_choice=_checked_tool_choice(body.tool_choice, tools),
        parallel_tool_calls=body.parallel_tool_calls is not False,
        max_tokens=body.max_completion_tokens or body.max_tokens,
        sampling=tuple((k, v) for k in _SAMPLING if (v := getattr(body, k)) is not None),
        stream=bool(body.stream),
        include_usage=bool(body.stream_options and body.stream_options.include_usage),
        stops=tuple(stops),
        reasoning_mode=body.reasoning_mode or default_mode,
        reasoning_effort=body.reasoning_effort,  # GATE-A (issue 10): dialect §7
        client_name=client_name,
    )


def _checked_tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for index, tool in enumerate(tools):
        function = tool.get("function")
        if tool.get("type", "function") != "function" or not isinstance(function, dict):
            raise InvalidRequest(
                "each tool must be {'type': 'function', 'function': {...}}", param=f"tools[{index}]"
            )
        if not isinstance(function.get("name"), str) or not function["name"]:
            raise InvalidRequest(
                "a tool needs function.name", param=f"tools[{index}].function.name"
            )
        parameters = function.get("parameters")
        if parameters is not None and not isinstance(parameters, dict | str):
            raise InvalidRequest(
                "function.parameters must be a JSON schema object",
                param=f"tools[{index}].function.parameters",
            )
    return tools


def _checked_tool_choice(choice: Any, tools: list[dict[str, Any]]) -> str:
    """OpenAI's tool_choice reduced to "none", "auto", "required" or a tool's name."""
    if choice is None:
        return "auto" if tools else "none"
    if choice in ("none", "auto", "required"):
        if choice != "none" and not tools:
            raise InvalidRequest(f"tool_choice {choice!r} needs tools", param="tool_choice")
        return str(choice)
    name = choice.get("function", {}).get("name") if isinstance(choice, dict) else None
    if not isinstance(name, str) or name not in {t["function"]["name"] for t in tools}:
        raise InvalidRequest(
            "tool_choice must be none, auto, required or name one of the tools",
            param="tool_choice",
        )
    return name


@router.post("/v1/chat/completions", response_model=None, summary="Create a chat completion")
@router.post("/chat/completions", response_model=None, include_in_schema=False)
@router.post("/v1/chat", response_model=None, include_in_schema=False)
@router.post("/v1", response_model=None, include_in_schema=False)
async def chat_completions(
    body: ChatCompletionRequest,
    request: Request,
    caller: CallerDep,
) -> Response:
    client_name, runtime, deps = caller.client_name, caller.runtime, caller.deps
    request.scope[MODEL_SCOPE_KEY] = body.model
    chat_request = to_chat_request(body, client_name, runtime.settings.reasoning_mode)
    metrics = runtime.metrics
    if chat_request.stream:
        stream = await start_stream(deps.chat, chat_request, metrics, body.model)
        renderer = OpenAIChatRenderer(
            _completion_id(), int(time.time()), chat_request.model, chat_request.include_usage
        )
        chunks = rendered_body(renderer.render, stream, metrics)
        return sse_response(chunks, _served_header(stream.answer.served_model), last=DONE)
    try:
        fold, answer = await deps.chat.complete(
            chat_request, is_disconnected=request.is_disconnected
        )
    except ClientDisconnected:
        return Response(status_code=499)
    metrics.queued(answer)
    completion = completion_from(
        fold, completion_id=_completion_id(), created=int(time.time()), model=chat_request.model
    )
    return ORJSONResponse(completion, headers=_served_header(answer.served_model))


def _completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def _served_header(served_model: str | None) -> dict[str, str]:
    # Agent dialect §5: timing_cost names the model that actually served the request.
    return {"x-trae-served-model": served_model} if served_model else {}
