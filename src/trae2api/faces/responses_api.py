"""``POST /v1/responses`` and ``GET /v1/responses/{id}``: the OpenAI Responses API.

Errors use OpenAI's envelope. The model is looked up in the catalogue first, so an unknown one
is a 404 on either dialect. Chaining: a completed response's input and output items are kept for
an hour (``responses_store``: per replica, or in Redis with ``REDIS_URL``) unless the request said
``store: false``; ``previous_response_id`` prepends them to the new input, and an unknown or
expired id is a 404. Codex sends ``store: false`` and the whole history each turn.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from trae2api.errors import ClientDisconnected
from trae2api.faces.anthropic_messages import known_model, served_header
from trae2api.faces.anthropic_request import prompt_tokens_estimate
from trae2api.faces.http_responses import ORJSONResponse, sse_response
from trae2api.faces.middleware import MODEL_SCOPE_KEY
from trae2api.faces.responses_render import (
    ResponseShell,
    ResponsesStreamRenderer,
    response_from,
)
from trae2api.faces.responses_request import (
    ResponsesRequest,
    custom_tool_names,
    input_items,
    to_chat_request,
)
from trae2api.faces.responses_store import ResponseStore
from trae2api.faces.runtime import CallerDep, ServicesDep, authenticate
from trae2api.faces.streaming import rendered_body, start_stream
from trae2api.faces.strict_json import StrictJSONRoute

router = APIRouter(route_class=StrictJSONRoute)


@router.post("/v1/responses", response_model=None, summary="Create a model response (Responses)")
async def create_response(
    body: ResponsesRequest,
    request: Request,
    caller: CallerDep,
) -> Response:
    client_name, runtime, deps = caller.client_name, caller.runtime, caller.deps
    request.scope[MODEL_SCOPE_KEY] = body.model
    store = deps.responses
    history = (await store.get(body.previous_response_id))[0] if body.previous_response_id else []
    chat_request = to_chat_request(body, client_name, history)
    await known_model(deps, body.model)
    estimate = prompt_tokens_estimate(chat_request)
    shell = ResponseShell(
        id=f"resp_{uuid.uuid4().hex}",
        created_at=int(time.time()),
        model=body.model,
        custom_tools=custom_tool_names(body),
        echo=_echo(body),
    )
    items = [*history, *input_items(body)]
    if chat_request.stream:
        metrics = runtime.metrics
        stream = await start_stream(deps.chat, chat_request, metrics, body.model)
        renderer = ResponsesStreamRenderer(shell, estimate)
        kept = items if body.store is not False else None
        chunks = rendered_body(renderer.render, stream, metrics, _keeper(renderer, store, kept))
        return sse_response(chunks, served_header(stream.answer.served_model))
    try:
        fold, answer = await deps.chat.complete(
            chat_request, is_disconnected=request.is_disconnected
        )
    except ClientDisconnected:
        return Response(status_code=499)
    runtime.metrics.queued(answer)
    response = response_from(fold, shell, estimate)
    if body.store is not False:
        await store.put(response, [*items, *response["output"]])
    return ORJSONResponse(response, headers=served_header(answer.served_model))


@router.get("/v1/responses/{response_id}", response_model=None, summary="Get a stored response")
async def get_response(
    response_id: str, client_name: Annotated[str, Depends(authenticate)], deps: ServicesDep
) -> dict[str, Any]:
    return (await deps.responses.get(response_id))[1]


def _echo(body: ResponsesRequest) -> dict[str, Any]:
    """The request settings a response object repeats."""
    return {
        "instructions": body.instructions,
        "max_output_tokens": body.max_output_tokens,
        "parallel_tool_calls": body.parallel_tool_calls is not False,
        "previous_response_id": body.previous_response_id,
        "reasoning": body.reasoning or {},
        "store": body.store is not False,
        "temperature": body.temperature,
        "text": body.text or {"format": {"type": "text"}},
        "tool_choice": body.tool_choice or "auto",
        "tools": body.tools or [],
        "top_p": body.top_p,
        "truncation": "disabled",
        "metadata": body.metadata or {},
    }


def _keeper(
    renderer: ResponsesStreamRenderer, store: ResponseStore, items: list[dict[str, Any]] | None
) -> Callable[[], Awaitable[None]] | None:
    """What stores a streamed response once it completed (None: ``store: false``)."""
    if items is None:
        return None

    async def keep() -> None:
        if renderer.final is not None:
            await store.put(renderer.final, [*items, *renderer.output])

    return keep
