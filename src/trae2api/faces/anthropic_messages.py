"""``POST /v1/messages`` and ``POST /v1/messages/count_tokens``: the Anthropic Messages API.

Clients authenticate with ``x-api-key`` or ``Authorization: Bearer`` (``anthropic-version`` and
``anthropic-beta`` are accepted and ignored); every error on these paths uses Anthropic's envelope
(``error_handlers`` asks ``is_anthropic_path``). The model is looked up in the catalogue first, so
an unknown one is a 404 ``not_found_error`` on either dialect.
"""

from __future__ import annotations

import os
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from trae2api.errors import ClientDisconnected, NotFound
from trae2api.faces.anthropic_render import AnthropicStreamRenderer, message_from
from trae2api.faces.anthropic_request import (
    CountTokensRequest,
    MessagesRequest,
    prompt_tokens_estimate,
    to_chat_request,
)
from trae2api.faces.http_responses import ORJSONResponse, sse_response
from trae2api.faces.middleware import MODEL_SCOPE_KEY
from trae2api.faces.runtime import CallerDep, Deps, ServicesDep, authenticate
from trae2api.faces.streaming import rendered_body, start_stream
from trae2api.faces.strict_json import StrictJSONRoute

router = APIRouter(route_class=StrictJSONRoute)
root_router = APIRouter()
# Signs thinking blocks (anthropic_render): new per process, never leaves it.
_THINKING_KEY = os.urandom(32)


@router.post("/v1/messages", response_model=None, summary="Create a message (Anthropic)")
async def create_message(
    body: MessagesRequest,
    request: Request,
    caller: CallerDep,
) -> Response:
    client_name, runtime, deps = caller.client_name, caller.runtime, caller.deps
    request.scope[MODEL_SCOPE_KEY] = body.model
    chat_request = to_chat_request(body, client_name)
    await known_model(deps, body.model)
    estimate = prompt_tokens_estimate(chat_request)
    message_id = f"msg_{uuid.uuid4().hex[:24]}"
    metrics = runtime.metrics
    if chat_request.stream:
        stream = await start_stream(deps.chat, chat_request, metrics, body.model)
        renderer = AnthropicStreamRenderer(
            message_id=message_id, model=body.model, input_estimate=estimate, key=_THINKING_KEY
        )
        chunks = rendered_body(renderer.render, stream, metrics)
        return sse_response(chunks, served_header(stream.answer.served_model))
    try:
        fold, answer = await deps.chat.complete(
            chat_request, is_disconnected=request.is_disconnected
        )
    except ClientDisconnected:
        return Response(status_code=499)
    metrics.queued(answer)
    message = message_from(
        fold, message_id=message_id, model=body.model, input_estimate=estimate, key=_THINKING_KEY
    )
    return ORJSONResponse(message, headers=served_header(answer.served_model))


@router.post(
    "/v1/messages/count_tokens",
    response_model=None,
    summary="Count a message's input tokens (Anthropic; an estimate)",
)
async def count_tokens(
    body: CountTokensRequest,
    client_name: Annotated[str, Depends(authenticate)],
    deps: ServicesDep,
) -> dict[str, Any]:
    """About 4 characters a token (1 per CJK character) over the text of system, messages,
    earlier tool calls and tool definitions: the ``input_tokens`` a stream's ``message_start``
    reports for the same prompt (Trae has no tokenizer endpoint)."""
    chat_request = to_chat_request(body, client_name)
    await known_model(deps, body.model)
    return {"input_tokens": prompt_tokens_estimate(chat_request)}


@root_router.head("/", include_in_schema=False)
async def head_root() -> Response:
    """Claude Code sends ``HEAD /`` first (a reachability check): answer it cleanly."""
    return Response(status_code=204)


async def known_model(deps: Deps, model: str) -> None:
    """A 404 naming the model unless the catalogue lists it (on both dialects)."""
    if await deps.catalog.find(model) is None:
        raise NotFound(
            f"model: {model!r} is not a model of this Trae account; GET /v1/models lists them",
            param="model",
            code="model_not_found",
        )


def served_header(served_model: str | None) -> dict[str, str]:
    # Agent dialect §5: timing_cost names the model that actually served the request.
    return {"x-trae-served-model": served_model} if served_model else {}
