"""Table-driven tests for ``parse_exchange_response`` (protocol §2)."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from trae2api.auth.credentials import ExchangeResult
from trae2api.errors import ReauthRequired, UpstreamUnavailable
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


FAILURE: list[tuple[str, int, bytes, type[Exception], str]] = [
    ("400 invalid client", 400, err("10101", "Invalid client."), ReauthRequired, "10101"),
    ("401", 401, err("x", "expired"), ReauthRequired, "expired"),
    ("403 not json", 403, b"<html>forbidden</html>", ReauthRequired, "HTTP 403"),
    ("4xx empty body", 400, b"", ReauthRequired, "HTTP 400"),
    ("lowercase error keys", 400, b'{"error":{"code":1,"msg":"used"}}', ReauthRequired, "used"),
    ("429 is transient", 429, err("x", "slow down"), UpstreamUnavailable, "slow down"),
    ("408 is transient", 408, b"", UpstreamUnavailable, "HTTP 408"),
    ("500", 500, err("InternalError", "boom"), UpstreamUnavailable, "boom"),
    ("503 not json", 503, b"Service Unavailable", UpstreamUnavailable, "HTTP 503"),
    ("302", 302, b"", UpstreamUnavailable, "HTTP 302"),
    ("200 without token", 200, ok({"RefreshToken": "rt2"}), UpstreamUnavailable, "Result.Token"),
    ("200 without result", 200, err("E", "nope"), UpstreamUnavailable, "nope"),
    ("200 not json", 200, b"<html>", UpstreamUnavailable, "not JSON"),
    ("200 json list", 200, b"[1,2]", UpstreamUnavailable, "Result.Token"),
    ("200 empty token", 200, ok({"Token": ""}), UpstreamUnavailable, "Result.Token"),
    ("200 result not a dict", 200, ok("tok"), UpstreamUnavailable, "Result.Token"),
]


@pytest.mark.parametrize(
    ("name", "status", "body", "exc_type", "fragment"), FAILURE, ids=[c[0] for c in FAILURE]
)
def test_failure(
    name: str, status: int, body: bytes, exc_type: type[Exception], fragment: str
) -> None:
    """Failures raise the mapped error, naming the upstream code or message."""
    with pytest.raises(exc_type) as info:
        parse_exchange_response(status, body, NOW)
    assert type(info.value) is exc_type
    assert fragment in str(info.value)


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


async def test_exchanger_maps_transport_errors() -> None:
    """A connection failure becomes UpstreamUnavailable."""

    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        exchanger = TokenExchanger(http, base_url="https://x.test", client_id="c", user_id="u")
        with pytest.raises(UpstreamUnavailable):
            await exchanger.exchange("rt1")
