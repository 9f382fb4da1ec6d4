"""The refresh-token exchange of protocol §2: one HTTP call and a pure parser of its answer.

The call goes to the first of REFRESH_TOKEN_URL's hosts that can take it (dialect §7: a host is
skipped only when it cannot have seen the token). It must not store, retry or schedule anything
(that is ``auth.manager``), and never put a token into an exception message.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import httpx
import orjson
import structlog

from trae2api.auth.credentials import ExchangeResult
from trae2api.errors import ReauthRequired, upstream_unavailable
from trae2api.upstream.transport import mapped_transport_errors

EXCHANGE_PATH = "/cloudide/api/v3/trae/oauth/ExchangeToken"
log = structlog.get_logger(__name__)

# Protocol §2: access tokens were observed living 3 days. When the answer omits the expiry we
# assume that observed lifetime rather than a short one: every needless exchange is one more
# rotation of the only copy of the account's access, while an access token that dies earlier
# costs one upstream 401 answered by ``refresh_after_rejection``.
DEFAULT_ACCESS_LIFETIME = 3 * 24 * 3600.0

# Values below this are epoch seconds, above it epoch milliseconds (protocol §2: peers accept both).
_MS_THRESHOLD = 1e12
_MAX_DETAIL = 200

# HTTP 408 and 429 say "not now", nothing about the token; treating them like other 4xx would put
# the gateway into the sticky re-login state for a transient condition.
_TRANSIENT_4XX = frozenset({408, 429})

_TOKEN_KEYS = ("Token", "token", "AccessToken", "accessToken", "access_token")
_TOKEN_EXPIRY_KEYS = ("TokenExpireAt", "tokenExpireAt", "token_expire_at")
_REFRESH_KEYS = ("RefreshToken", "refreshToken", "refresh_token")
_REFRESH_EXPIRY_KEYS = ("RefreshExpireAt", "refreshExpireAt", "refresh_expire_at")


def parse_exchange_response(
    status: int, body: bytes, now: float, *, redact: Iterable[str] = ()
) -> ExchangeResult:
    """Turn the exchange's HTTP answer into an ``ExchangeResult`` or raise (protocol §2).

    4xx → ``ReauthRequired``; 408, 429, 5xx, odd statuses and a 2xx without a token →
    ``upstream_unavailable`` (protocol §7), the status and code a chat gets from an upstream 5xx,
    so a failing Trae looks alike to clients whichever call hit it. Strings in ``redact`` (the
    presented refresh token) are scrubbed from any error text.
    """
    doc = _load_json(body)
    if 200 <= status < 300:
        return _parse_success(status, doc, now, tuple(redact))
    detail = _error_detail(status, doc, tuple(redact))
    if 400 <= status < 500 and status not in _TRANSIENT_4XX:
        raise ReauthRequired(f"Trae refused the refresh token exchange ({detail})")
    if status in _TRANSIENT_4XX:
        raise upstream_unavailable(f"Trae asked to retry the token exchange later ({detail})")
    raise upstream_unavailable(f"Trae's token exchange failed ({detail})")


def _parse_success(status: int, doc: object, now: float, redact: tuple[str, ...]) -> ExchangeResult:
    result = _pick(doc, ("Result", "result")) if isinstance(doc, Mapping) else None
    token = _pick(result, _TOKEN_KEYS) if isinstance(result, Mapping) else None
    if not isinstance(result, Mapping) or not isinstance(token, str) or not token:
        # Protocol §2: "a 200 without Result.Token is a failure too". It is ambiguous whether
        # the presented refresh token was burnt, so this is NOT ReauthRequired: nothing is
        # written, and a retry either succeeds or gets the 4xx that proves the token is gone.
        # Being wrong in that direction costs one retry; the other way costs a human re-login.
        what = "a body that is not JSON" if doc is None else "no Result.Token"
        raise upstream_unavailable(
            f"Trae's token exchange answered HTTP {status} with {what}{_error_suffix(doc, redact)}"
        )
    access_expires = _epoch_seconds(_pick(result, _TOKEN_EXPIRY_KEYS))
    refresh = _pick(result, _REFRESH_KEYS)
    refresh_token = refresh if isinstance(refresh, str) and refresh else None
    refresh_expires = _epoch_seconds(_pick(result, _REFRESH_EXPIRY_KEYS))
    return ExchangeResult(
        access_token=token,
        access_expires_at=(
            access_expires if access_expires is not None else now + DEFAULT_ACCESS_LIFETIME
        ),
        refresh_token=refresh_token,
        # Without a new refresh token the old one (and its expiry) stays: Credentials ignores this.
        refresh_expires_at=refresh_expires if refresh_token is not None else None,
    )


def _load_json(body: bytes) -> object:
    try:
        return orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return None


def _pick(doc: Mapping[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        if key in doc and doc[key] is not None:
            return doc[key]
    return None


def _epoch_seconds(value: object) -> float | None:
    """Epoch ms or s (protocol §2) as seconds; None when absent, non-numeric or not positive."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if not isinstance(value, int | float) or not value > 0 or value == float("inf"):
        return None
    return float(value) / 1000.0 if value >= _MS_THRESHOLD else float(value)


def _error_detail(status: int, doc: object, redact: tuple[str, ...]) -> str:
    text = f"HTTP {status}"
    if doc is None:
        return text + ", body not JSON"
    return text + _error_suffix(doc, redact)


def _error_suffix(doc: object, redact: tuple[str, ...]) -> str:
    """ ", code X: message" from ``ResponseMetadata.Error`` (or a lowercase variant), if any."""
    if not isinstance(doc, Mapping):
        return ""
    meta = _pick(doc, ("ResponseMetadata", "responseMetadata", "response_metadata"))
    error = _pick(meta, ("Error", "error")) if isinstance(meta, Mapping) else None
    if not isinstance(error, Mapping):
        error = _pick(doc, ("Error", "error"))
    if not isinstance(error, Mapping):
        return ""
    code = _pick(error, ("Code", "code"))
    message = _pick(error, ("Message", "message", "msg"))
    parts = []
    if code is not None:
        parts.append(f"code {_clean(str(code), redact)}")
    if message is not None:
        parts.append(_clean(str(message), redact))
    return ", " + ": ".join(parts) if parts else ""


def _clean(text: str, redact: tuple[str, ...]) -> str:
    """Bounded, single-line upstream text with any known secret removed."""
    for secret in redact:
        if secret:
            text = text.replace(secret, "[redacted]")
    text = " ".join(text.split())
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 1] + "…"


def may_fall_back(status: int, body: bytes) -> bool:
    """Dialect §7: whether an exchange answer proves the host never handled the token: a 404
    page (the route is absent there), not a 404 carrying the exchange's own error."""
    if status != 404:
        return False
    doc = _load_json(body)
    return not (isinstance(doc, Mapping) and _error_suffix(doc, ()))


# Failures before the request was sent: the host cannot have seen (and burnt) the token.
_NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout)


class TokenExchanger:
    """Performs the exchange call; one instance per account and upstream region.

    ``base_url`` may be a comma list of hosts (dialect §7: CN's ``api.trae.com.cn`` falls back to
    ``api.trae.cn``). The next host is tried only when the previous one cannot have seen the
    single-use refresh token: the connection failed (refused, unknown name, connect timeout) or
    it answered a 404 page. Any other answer, or a failure after the request was sent, is final.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        base_url: str,
        client_id: str,
        user_id: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._http = http
        self._urls = [url.strip().rstrip("/") + EXCHANGE_PATH for url in base_url.split(",")]
        self._client_id = client_id
        self._user_id = user_id
        self._clock = clock

    async def exchange(self, refresh_token: str) -> ExchangeResult:
        """Present ``refresh_token`` once (it is burnt on success) and parse the answer."""
        body = orjson.dumps(
            {
                "ClientID": self._client_id,
                "RefreshToken": refresh_token,
                "ClientSecret": "-",
                "UserID": self._user_id,
            }
        )
        with mapped_transport_errors("exchanging the refresh token"):
            response = await self._first_answer(body)
        return parse_exchange_response(
            response.status_code, response.content, self._clock(), redact=(refresh_token,)
        )

    async def _first_answer(self, body: bytes) -> httpx.Response:
        headers = {"Content-Type": "application/json", "accept": "application/json"}
        *earlier, last = self._urls
        for url in earlier:
            try:
                response = await self._http.post(url, content=body, headers=headers)
            except _NEVER_SENT as exc:
                _log_fallback(url, type(exc).__name__)
                continue
            if not may_fall_back(response.status_code, response.content):
                return response
            _log_fallback(url, "HTTP 404 page")
        return await self._http.post(last, content=body, headers=headers)


def _log_fallback(url: str, reason: str) -> None:
    log.warning(
        "credentials.exchange_host_fallback", host=url.removesuffix(EXCHANGE_PATH), reason=reason
    )
