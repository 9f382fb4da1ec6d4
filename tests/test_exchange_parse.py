"""Table-driven tests for ``parse_exchange_response`` (protocol §2)."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from trae2api.auth.credentials import ExchangeResult
from trae2api.errors import ApiError, ReauthRequired, UpstreamUnavailable
from trae2api.upstream.client import http_error
from trae2api.upstream.exchange import (
    DEFAULT_ACCESS_LIFETIME,
    TokenExchanger,
    parse_exchange_response,
)

NOW = 1_750_000_000.0
MS = 1_750_259_200_000  # NOW + 3 days, in ms
S = 1_750_259_200.0


def ok(result: Any) -> bytes:
    """A 200 body with the given Result."""
    return orjson.dumps({"ResponseMetadata": {"RequestId": "r"}, "Result": result})


def err(code: str, message: str) -> bytes:
    """A failure body with ResponseMetadata.Error."""
    return orjson.dumps({"ResponseMetadata": {"Error": {"Code": code, "Message": message}}})


SUCCESS: list[tuple[str, int, bytes, ExchangeResult]] = [
    (
        "full answer in ms",
        200,
        ok({"Token": "at", "TokenExpireAt": MS, "RefreshToken": "rt2", "RefreshExpireAt": MS * 2}),
        ExchangeResult("at", S, "rt2", MS * 2 / 1000),
    ),
    (
        "times in seconds",
        200,
        ok({"Token": "at", "TokenExpireAt": S, "RefreshToken": "rt2", "RefreshExpireAt": S + 1}),
        ExchangeResult("at", S, "rt2", S + 1),
    ),
    (
        "lowercase keys",
        200,
        orjson.dumps({"result": {"token": "at", "tokenExpireAt": MS, "refreshToken": "rt2"}}),
        ExchangeResult("at", S, "rt2", None),
    ),
    (
        "numeric strings",
        200,
        ok({"Token": "at", "TokenExpireAt": str(MS), "RefreshToken": "rt2"}),
        ExchangeResult("at", S, "rt2", None),
    ),
    (
        "no refresh token keeps the old one",
        200,
        ok({"Token": "at", "TokenExpireAt": MS, "RefreshExpireAt": MS}),
        ExchangeResult("at", S, None, None),
    ),
    (
        "empty refresh token is no refresh token",
        200,
        ok({"Token": "at", "TokenExpireAt": MS, "RefreshToken": ""}),
        ExchangeResult("at", S, None, None),
    ),
    (
        "missing expiry assumes the observed lifetime",
        200,
        ok({"Token": "at", "RefreshToken": "rt2"}),
        ExchangeResult("at", NOW + DEFAULT_ACCESS_LIFETIME, "rt2", None),
    ),
    (
        "garbage expiry assumes the observed lifetime",
        200,
        ok({"Token": "at", "TokenExpireAt": "soon", "RefreshToken": "rt2"}),
        ExchangeResult("at", NOW + DEFAULT_ACCESS_LIFETIME, "rt2", None),
    ),
    (
        "zero expiry assumes the observed lifetime",
        200,
        ok({"Token": "at", "TokenExpireAt": 0, "RefreshToken": "rt2"}),
        ExchangeResult("at", NOW + DEFAULT_ACCESS_LIFETIME, "rt2", None),
    ),
]


@pytest.mark.parametrize(
    ("name", "status", "body", "expected"), SUCCESS, ids=[c[0] for c in SUCCESS]
)
def test_success(name: str, status: int, body: bytes, expected: ExchangeResult) -> None:
    """A 200 with Result.Token parses into the expected ExchangeResult."""
    assert parse_exchange_response(status, body, NOW) == expected


# What a client sees (HTTP status, error code) for each kind of failed exchange.
REAUTH = (ReauthRequired, 503, "reauth_required")
# The status and code chat uses for an unusable upstream answer (``client.http_error``).
UNAVAILABLE = (UpstreamUnavailable, 502, "upstream_unavailable")
Expected = tuple[type[ApiError], int, str]

FAILURE: list[tuple[str, int, bytes, Expected, str]] = [
    ("400 invalid client", 400, err("10101", "Invalid client."), REAUTH, "10101"),
    ("401", 401, err("x", "expired"), REAUTH, "expired"),
    ("403 not json", 403, b"<html>forbidden</html>", REAUTH, "HTTP 403"),
    ("4xx empty body", 400, b"", REAUTH, "HTTP 400"),
    ("lowercase error keys", 400, b'{"error":{"code":1,"msg":"used"}}', REAUTH, "used"),
    ("429 is transient", 429, err("x", "slow down"), UNAVAILABLE, "slow down"),
    ("408 is transient", 408, b"", UNAVAILABLE, "HTTP 408"),
    ("500", 500, err("InternalError", "boom"), UNAVAILABLE, "boom"),
    ("502 html", 502, b"<html>Bad Gateway</html>", UNAVAILABLE, "HTTP 502"),
    ("503 not json", 503, b"Service Unavailable", UNAVAILABLE, "HTTP 503"),
    ("302", 302, b"", UNAVAILABLE, "HTTP 302"),
    ("101 odd status", 101, b"", UNAVAILABLE, "HTTP 101"),
    ("200 without token", 200, ok({"RefreshToken": "rt2"}), UNAVAILABLE, "Result.Token"),
    ("200 without result", 200, err("E", "nope"), UNAVAILABLE, "nope"),
    ("200 not json", 200, b"<html>", UNAVAILABLE, "not JSON"),
    ("200 json list", 200, b"[1,2]", UNAVAILABLE, "Result.Token"),
    ("200 empty token", 200, ok({"Token": ""}), UNAVAILABLE, "Result.Token"),
    ("200 result not a dict", 200, ok("tok"), UNAVAILABLE, "Result.Token"),
    ("204 empty", 204, b"", UNAVAILABLE, "not JSON"),
]


@pytest.mark.parametrize(
    ("name", "status", "body", "expected", "fragment"), FAILURE, ids=[c[0] for c in FAILURE]
)
def test_failure(name: str, status: int, body: bytes, expected: Expected, fragment: str) -> None:
    """Failures raise the mapped error with the client-facing status and code, naming the
    upstream code or message."""
    exc_type, client_status, code = expected
    with pytest.raises(exc_type) as info:
        parse_exchange_response(status, body, NOW)
    assert type(info.value) is exc_type
    assert (info.value.status, info.value.code) == (client_status, code)
    assert fragment in str(info.value)


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_exchange_5xx_looks_like_chat_5xx(status: int) -> None:
    """A 5xx from the exchange reaches clients exactly as a 5xx from chat does."""
    chat = http_error(status, b"<html>oops</html>", httpx.Headers())
    with pytest.raises(UpstreamUnavailable) as info:
        parse_exchange_response(status, b"<html>oops</html>", NOW)
    exchange = info.value
    assert isinstance(chat, UpstreamUnavailable)
    assert (exchange.status, exchange.code, exchange.retryable) == (
        chat.status,
        chat.code,
        chat.retryable,
    )
    assert exchange.headers() == chat.headers()


def test_error_text_never_holds_the_presented_token() -> None:
    """An upstream message echoing the refresh token is redacted."""
    body = err("10102", "refresh token rt-secret-1 already used")
    with pytest.raises(ReauthRequired) as info:
        parse_exchange_response(400, body, NOW, redact=("rt-secret-1",))
    assert "rt-secret-1" not in str(info.value)
    assert "10102" in str(info.value)


def test_long_upstream_message_is_bounded() -> None:
    """An upstream message is cut to a bounded single line."""
    with pytest.raises(ReauthRequired) as info:
        parse_exchange_response(400, err("1", "x\n" * 1000), NOW)
    assert len(str(info.value)) < 300
    assert "\n" not in str(info.value)


def test_success_repr_hides_tokens() -> None:
    """The parsed result's repr never shows the tokens."""
    result = parse_exchange_response(200, ok({"Token": "at-s", "RefreshToken": "rt-s"}), NOW)
    assert "at-s" not in repr(result)
    assert "rt-s" not in repr(result)


async def test_exchanger_sends_pascal_case_body() -> None:
    """TokenExchanger POSTs the exact PascalCase body to the exchange path."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=ok({"Token": "at", "TokenExpireAt": MS}))

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        exchanger = TokenExchanger(
            http, base_url="https://x.test/", client_id="cid", user_id="", clock=lambda: NOW
        )
        result = await exchanger.exchange("rt1")
    assert result == ExchangeResult("at", S, None, None)
    assert str(seen[0].url) == "https://x.test/cloudide/api/v3/trae/oauth/ExchangeToken"
    assert orjson.loads(seen[0].content) == {
        "ClientID": "cid",
        "RefreshToken": "rt1",
        "ClientSecret": "-",
        "UserID": "",
    }


TRANSPORT: list[tuple[str, Exception, int, str]] = [
    ("refused", httpx.ConnectError("refused"), 502, "upstream_unreachable"),
    ("reset", httpx.ReadError("reset"), 502, "upstream_unreachable"),
    ("protocol garbage", httpx.RemoteProtocolError("garbage"), 502, "upstream_unreachable"),
    ("read timeout", httpx.ReadTimeout("slow"), 504, "upstream_timeout"),
    ("connect timeout", httpx.ConnectTimeout("slow"), 504, "upstream_timeout"),
]


@pytest.mark.parametrize(
    ("name", "failure", "status", "code"), TRANSPORT, ids=[c[0] for c in TRANSPORT]
)
async def test_exchanger_maps_transport_errors(
    name: str, failure: Exception, status: int, code: str
) -> None:
    """A transport failure becomes UpstreamUnavailable with the status and code chat uses
    for the same failure (``upstream.transport``)."""

    def handler(request: httpx.Request) -> httpx.Response:
        raise failure

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        exchanger = TokenExchanger(http, base_url="https://x.test", client_id="c", user_id="u")
        with pytest.raises(UpstreamUnavailable) as info:
            await exchanger.exchange("rt1")
    assert (info.value.status, info.value.code) == (status, code)
    assert "rt1" not in str(info.value)
