"""The exception tree and the one place that turns failures into OpenAI error envelopes.

Everything a client can see as an error is an ``ApiError``; this module must not do I/O.

    GatewayError
    ├── ConfigError               a variable is missing or malformed (start-up only)
    └── ApiError                  has status, type, code, param; rendered as an envelope
        ├── InvalidRequest        400 invalid_request_error
        ├── AuthenticationFailed  401 invalid_api_key
        ├── NotFound              404 (unknown route or model)
        ├── PayloadTooLarge       413
        └── UpstreamError         Trae could not give an answer
            ├── UpstreamUnavailable   transport failure or 5xx; retryable before the first byte
            ├── UpstreamRejected      a business error code from Trae (protocol §7, dialect §7),
            │                         mapped by the one table below (``_BUSINESS_CODES``):
            │     1001                refresh once, then ReauthRequired (chat/service.py)
            │     3003                transient: retried before the first byte, then 502
            │     4006, 4022          400 context_length_exceeded
            │     4008                429 insufficient_quota: the credits ran out (no retry)
            │     4011, 4028, 4050    429 rate_limit_exceeded + Retry-After
            │     1005                403 the plan or entitlement does not cover it
            │     2001, 4001, 4027    400 invalid_request; 4023 404 model_not_found
            │     4017 403; 4120 502 naming IDE_VERSION_CODE; any other code 502
            │                         Each keeps Trae's code (``trae_code`` in the envelope)
            │                         and message (in the message text).
            ├── ReauthRequired        the refresh token was rejected: the operator must log in again
            └── QueueTimeout          Trae kept the request queued longer than QUEUE_TIMEOUT
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class GatewayError(Exception):
    """Base of every error trae2api raises on purpose."""


class ConfigError(GatewayError):
    """A configuration variable is missing or malformed; the message says how to fix it."""

    def __init__(self, variable: str, message: str) -> None:
        super().__init__(f"{variable}: {message}")
        self.variable = variable


class ApiError(GatewayError):
    """An error with an OpenAI-shaped rendering."""

    status = 500
    type = "api_error"
    code: str | None = None
    # Seconds a client should wait; every 429 and 503 carries one (protocol §7 CHOICE).
    default_retry_after: int | None = None
    # False tells the openai SDKs not to retry on their own (their ``x-should-retry`` header).
    should_retry: bool | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        status: int | None = None,
        type: str | None = None,
        retry_after: int | None = None,
        should_retry: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        if type is not None:
            self.type = type
        self.retry_after = retry_after if retry_after is not None else self.default_retry_after
        if should_retry is not None:
            self.should_retry = should_retry

    def envelope(self) -> dict[str, Any]:
        """The body OpenAI clients parse: ``{"error": {message, type, param, code}}``."""
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def headers(self) -> dict[str, str]:
        """Response headers that belong with this error (``Retry-After`` on 429/503)."""
        headers = {}
        if self.retry_after is not None:
            headers["Retry-After"] = str(self.retry_after)
        if self.should_retry is not None:
            headers["x-should-retry"] = "true" if self.should_retry else "false"
        return headers


class InvalidRequest(ApiError):
    status = 400
    type = "invalid_request_error"


class AuthenticationFailed(ApiError):
    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"


class NotFound(ApiError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class PayloadTooLarge(ApiError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class UpstreamError(ApiError):
    """Trae did not produce an answer; ``retryable`` says whether trying again may help."""

    status = 502
    type = "upstream_error"
    code = "upstream_error"
    retryable = False


class UpstreamUnavailable(UpstreamError):
    """Trae could not be reached, timed out, or answered 5xx (retried before the first byte)."""

    retryable = True


def upstream_unavailable(message: str) -> UpstreamUnavailable:
    """Trae answered, but not usably (5xx, an odd status, 2xx without the answer asked for).

    Chat and the token exchange both raise this, so clients see one status and code for it
    whichever call failed: 502 ``upstream_unavailable`` (protocol §7: 503 is kept for answers
    that carry a ``Retry-After``). Transport failures are ``upstream.transport``'s instead.
    """
    return UpstreamUnavailable(message, code="upstream_unavailable")


class UpstreamRejected(UpstreamError):
    """Trae answered with a business error code (protocol §7); code and message are kept."""

    def __init__(
        self,
        message: str,
        *,
        upstream_code: int | None = None,
        trae_message: str = "",
        retryable: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, **kwargs)
        self.upstream_code = upstream_code
        self.trae_message = trae_message
        self.retryable = retryable

    def envelope(self) -> dict[str, Any]:
        """OpenAI's envelope plus ``trae_code``, so the operator can look the code up."""
        envelope = super().envelope()
        if self.upstream_code is not None:
            envelope["error"]["trae_code"] = self.upstream_code
        return envelope


def trae_fields(error: Exception) -> dict[str, Any]:
    """Log fields naming Trae's own code and message, for errors that came from one."""
    if isinstance(error, UpstreamRejected) and error.upstream_code is not None:
        return {"trae_code": error.upstream_code, "trae_message": error.trae_message}
    return {}


class ReauthRequired(UpstreamError):
    status = 503
    type = "upstream_error"
    code = "reauth_required"
    # Only the operator can fix this (a new login): retrying soon cannot help.
    default_retry_after = 300
    should_retry = False


class QueueTimeout(UpstreamError):
    status = 503
    code = "upstream_queue_timeout"
    default_retry_after = 30


class RateLimited(ApiError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"


class ShuttingDown(ApiError):
    status = 503
    type = "server_error"
    code = "server_shutting_down"
    default_retry_after = 1


class ClientDisconnected(GatewayError):
    """The client went away before its non-streamed answer was ready."""


class RouteAbsent(UpstreamError):
    """The host answered 404/405/410: it does not serve this route (dialect §1: mixing realms or
    dialects gives 404 pages). The dialect selector takes it as a hint to look again."""


class CredentialsExpired(GatewayError):
    """ImageX refused the upload credentials as expired; ``error`` is raised if renewing fails."""

    def __init__(self, error: UpstreamError) -> None:
        super().__init__(error.message)
        self.error = error


class ResponseError(GatewayError):
    """The upstream's bytes are not an HTTP/1.1 response we can read."""


class SSEProtocolError(GatewayError, ValueError):
    """The stream broke a hard limit (a line longer than ``max_line_bytes``)."""


class NotAnImage(GatewayError):
    """Raised by the image format readers; ``inspect_image`` makes it one ``InvalidRequest``."""


@dataclass(frozen=True)
class _Mapping:
    """How one Trae business code reaches a client (protocol §7, dialect §6)."""

    status: int
    type: str
    code: str
    hint: str = ""
    retry_after: int | None = None
    should_retry: bool | None = None
    param: str | None = None
    retryable: bool = False  # transient: chat tries again before the first byte


_INVALID = ("invalid_request_error", "invalid_request")
_RATE = _Mapping(429, "rate_limit_error", "rate_limit_exceeded", retry_after=5)
_CONTEXT = _Mapping(
    400,
    "invalid_request_error",
    "context_length_exceeded",
    "the messages are longer than the model's context window; shorten them "
    "(GET /v1/models shows each model's context_length)",
    param="messages",
)
_BUSINESS_CODES: dict[int, _Mapping] = {
    1001: _Mapping(401, "upstream_error", "upstream_unauthenticated"),
    # Dialect §7: 1005 is the plan or entitlement, 4008 the credits (it does not heal in minutes).
    1005: _Mapping(
        403,
        "permission_error",
        "plan_not_entitled",
        "the Trae plan or its entitlements do not cover this request; another model "
        "or a higher plan may",
        should_retry=False,
    ),
    4008: _Mapping(
        429,
        "insufficient_quota",
        "insufficient_quota",
        "the Trae account's credits ran out; they do not come back within minutes",
        retry_after=3600,
        should_retry=False,
    ),
    3003: _Mapping(
        502, "upstream_error", "upstream_error", "a transient Trae failure", retryable=True
    ),
    4006: _CONTEXT,
    4022: _CONTEXT,
    4011: _RATE,
    4028: _RATE,
    4050: _Mapping(
        429, "rate_limit_error", "rate_limit_exceeded", "Trae's queue is full", retry_after=30
    ),
    4001: _Mapping(400, *_INVALID),
    2001: _Mapping(
        400,
        *_INVALID,
        "Trae does not know the function pool; check TRAE_FUNCTION, "
        "e.g. chat_v3, or solo_work_lite for SOLO accounts",
    ),
    4027: _Mapping(
        400, *_INVALID, "a tool result does not match an earlier tool call", param="messages"
    ),
    4023: _Mapping(
        404,
        "invalid_request_error",
        "model_not_found",
        "Trae does not know this model; GET /v1/models lists the ones it serves",
        param="model",
    ),
    4017: _Mapping(
        403,
        "permission_error",
        "permission_denied",
        "Trae's risk control refused this device or IP address",
    ),
    4120: _Mapping(
        502,
        "upstream_error",
        "upstream_error",
        "the client version is too old for Trae; raise IDE_VERSION and "
        "IDE_VERSION_CODE to those of a current Trae release",
    ),
}
_OTHER = _Mapping(502, "upstream_error", "upstream_error")


def from_business_code(code: int, message: str, *, note: str = "") -> UpstreamRejected:
    """Map a Trae business error code to what an OpenAI client can act on (protocol §7).

    ``note`` is what the gateway itself knows about it (e.g. the credits left before a 4008);
    it follows the table's hint in the message.
    """
    rule = _BUSINESS_CODES.get(code, _OTHER)
    detail = f"Trae error {code}: {message}" if message else f"Trae error {code}"
    hint = "; ".join(part for part in (rule.hint, note) if part)
    return UpstreamRejected(
        f"{detail} ({hint})" if hint else detail,
        upstream_code=code,
        trae_message=message,
        retryable=rule.retryable,
        status=rule.status,
        type=rule.type,
        code=rule.code,
        param=rule.param,
        retry_after=rule.retry_after,
        should_retry=rule.should_retry,
    )
