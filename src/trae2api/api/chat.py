"""``POST /v1/chat/completions`` (and the original's ``/v1/chat`` and ``/v1``).

It validates and converts the wire request, then hands it to the chat use case.
"""

from __future__ import annotations

from typing import Annotated

import structlog
from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from trae2api.api.responses import ORJSONResponse, sse_response
from trae2api.api.schemas import ChatCompletionRequest
from trae2api.api.security import authenticate
from trae2api.chat import ChatRequest, ClientDisconnected
from trae2api.errors import InvalidRequest
from trae2api.translate import ReasoningMode, turns_from_messages

log = structlog.get_logger(__name__)
router = APIRouter()
_MAX_STOPS = 4  # OpenAI's limit for ``stop``


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
    if body.max_tokens or body.max_completion_tokens:
        # The legacy chat body has no length limit field (protocol §5): accepted, not enforced.
        log.debug("max_tokens_not_forwarded", dialect="legacy")
    return ChatRequest(
        model=body.model,
        turns=turns_from_messages([(m.role, m.content) for m in body.messages]),
        stream=bool(body.stream),
        include_usage=bool(body.stream_options and body.stream_options.include_usage),
        stops=tuple(stops),
        reasoning_mode=body.reasoning_mode or default_mode,
        client_name=client_name,
    )


@router.post("/v1/chat/completions", response_model=None, summary="Create a chat completion")
@router.post("/chat/completions", response_model=None, include_in_schema=False)
@router.post("/v1/chat", response_model=None, include_in_schema=False)
@router.post("/v1", response_model=None, include_in_schema=False)
async def chat_completions(
    body: ChatCompletionRequest,
    request: Request,
    client_name: Annotated[str, Depends(authenticate)],
) -> Response:
    state = request.app.state
    chat_request = to_chat_request(body, client_name, state.settings.reasoning_mode)
    trae_model = state.deps.catalog.aliases.to_trae(body.model)
    if chat_request.stream:
        chunks = await state.deps.chat.open_stream(chat_request, trae_model)
        return sse_response(chunks)
    try:
        completion = await state.deps.chat.complete(
            chat_request, trae_model, is_disconnected=request.is_disconnected
        )
    except ClientDisconnected:
        return Response(status_code=499)
    return ORJSONResponse(completion)
