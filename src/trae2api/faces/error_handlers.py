"""Exception handlers: every error a client sees is its API's envelope with the right status.

OpenAI's envelope everywhere but on the Anthropic paths (``/v1/messages…``), which get
Anthropic's. Covers our ``ApiError``s, the framework's 404/405/422, and anything unexpected (500,
no details).
"""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from trae2api.errors import ApiError, NotFound, UpstreamRejected, trae_fields
from trae2api.faces.anthropic_render import error_body, is_anthropic_path
from trae2api.faces.http_responses import ORJSONResponse

log = structlog.get_logger(__name__)

_HTTP_CODES = {404: "unknown_url", 405: "method_not_allowed", 413: "request_too_large"}


def error_response(error: ApiError, request: Request | None = None) -> ORJSONResponse:
    if request is not None and is_anthropic_path(request.url.path):
        body = error_body(error)
    else:
        body = error.envelope()
    return ORJSONResponse(body, status_code=error.status, headers=error.headers())


async def _api_error(request: Request, exc: Exception) -> ORJSONResponse:
    assert isinstance(exc, ApiError)
    if exc.status >= 500 or isinstance(exc, UpstreamRejected):
        # Dialect §7: whatever the status, Trae's own code and message reach the operator.
        log.warning(
            "request_failed",
            status=exc.status,
            code=exc.code,
            reason=exc.message,
            **trae_fields(exc),
        )
    return error_response(exc, request)


async def _http_error(request: Request, exc: Exception) -> ORJSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if isinstance(exc.__cause__, ApiError):
        # FastAPI turns any error raised while reading the body into "400 error parsing the
        # body"; ours (a streamed body over MAX_BODY_BYTES: 413) keeps its own status.
        return await _api_error(request, exc.__cause__)
    if exc.status_code == 404:
        message = f"Unknown request URL: {request.method} {request.url.path}."
    elif exc.status_code == 405:
        message = f"Method {request.method} is not allowed on {request.url.path}."
    else:
        message = str(exc.detail)
    error = ApiError(
        message,
        status=exc.status_code,
        type="invalid_request_error",
        code=_HTTP_CODES.get(exc.status_code),
    )
    response = error_response(error, request)
    if exc.headers:
        response.headers.update(exc.headers)
    return response


async def _validation_error(request: Request, exc: Exception) -> ORJSONResponse:
    # OpenAI answers malformed requests with 400 invalid_request_error naming the parameter.
    assert isinstance(exc, RequestValidationError)
    first: dict[str, Any] = exc.errors()[0] if exc.errors() else {}
    location = [str(part) for part in first.get("loc", ()) if part != "body"]
    param = _param_path(location) or None
    reason = str(first.get("msg", "invalid request"))
    if first.get("type") == "json_invalid":
        message, param = "We could not parse the JSON body of your request.", None
    elif param:
        message = f"Invalid value for '{param}': {reason}"
    else:
        message = f"Invalid request: {reason}"
    error = ApiError(message, status=400, type="invalid_request_error", param=param)
    return error_response(error, request)


async def _unexpected(request: Request, exc: Exception) -> ORJSONResponse:
    log.error("unexpected_error", exc_info=exc)
    return error_response(ApiError("The gateway failed unexpectedly; see its log."), request)


def _param_path(parts: list[str]) -> str:
    path = ""
    for part in parts:
        path += f"[{part}]" if part.isdigit() else (f".{part}" if path else part)
    return path


def install(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected)


__all__ = ["NotFound", "error_response", "install"]
