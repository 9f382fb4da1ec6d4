"""Table-driven tests of how upstream answers and business codes become client errors."""

from __future__ import annotations

import httpx
import pytest

from trae2api.errors import UpstreamUnavailable, from_business_code, trae_fields
from trae2api.upstream.client import business_code, http_error


@pytest.mark.parametrize(
    ("status", "body", "headers", "expected_status", "expected_code"),
    [
        (401, b'{"code": 1001, "message": "x"}', {}, 401, "upstream_unauthenticated"),
        (403, b"<html>forbidden</html>", {}, 401, "upstream_unauthenticated"),
        (429, b"", {"retry-after": "7"}, 429, "rate_limit_exceeded"),
        (400, b'{"code": 4023, "message": "no"}', {}, 404, "model_not_found"),
        (400, b'{"code": 4001, "msg": "bad"}', {}, 400, "invalid_request"),
        (500, b"<html>oops</html>", {}, 502, "upstream_unavailable"),
        (503, b'{"code": 4011}', {}, 502, "upstream_unavailable"),
        (404, b"<html>not found</html>", {}, 502, "upstream_error"),
        (200, b'{"code": 4008, "message": "quota"}', {}, 429, "insufficient_quota"),
        (200, b'{"ok": true}', {}, 502, "upstream_unavailable"),
    ],
)
def test_http_error(
    status: int, body: bytes, headers: dict[str, str], expected_status: int, expected_code: str
) -> None:
    """Each upstream answer maps to the status and code a client can act on."""
    error = http_error(status, body, httpx.Headers(headers))
    assert (error.status, error.code) == (expected_status, expected_code)
    if status == 429:
        assert error.headers() == {"Retry-After": "7"}


def test_5xx_is_retryable() -> None:
    """Server errors are marked retryable so chat retries them before the first byte."""
    assert isinstance(http_error(502, b"", httpx.Headers()), UpstreamUnavailable)


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"code": 4011, "message": "m"}, (4011, "m")),
        ({"code": "4028", "msg": "m2"}, (4028, "m2")),
        ({"code": 0}, None),
        ({"code": "abc"}, None),
        ({"message": "no code"}, None),
        ([1, 2], None),
    ],
)
def test_business_code(payload: object, expected: tuple[int, str] | None) -> None:
    """Trae error bodies are recognised by a non-zero numeric code."""
    assert business_code(payload) == expected


@pytest.mark.parametrize(
    ("code", "status", "error_type", "retry_after"),
    [
        (1001, 401, "upstream_error", None),
        (1005, 403, "permission_error", None),
        (4008, 429, "insufficient_quota", 3600),
        (4006, 400, "invalid_request_error", None),
        (4022, 400, "invalid_request_error", None),
        (4011, 429, "rate_limit_error", 5),
        (4028, 429, "rate_limit_error", 5),
        (4050, 429, "rate_limit_error", 30),
        (4001, 400, "invalid_request_error", None),
        (2001, 400, "invalid_request_error", None),
        (4027, 400, "invalid_request_error", None),
        (4023, 404, "invalid_request_error", None),
        (4017, 403, "permission_error", None),
        (4120, 502, "upstream_error", None),
        (5001, 502, "upstream_error", None),
        (3003, 502, "upstream_error", None),
        (9999, 502, "upstream_error", None),
    ],
)
def test_business_codes_follow_protocol_table(
    code: int, status: int, error_type: str, retry_after: int | None
) -> None:
    """Protocol §7's table: status, type and Retry-After per Trae code."""
    error = from_business_code(code, "msg")
    assert (error.status, error.type, error.retry_after) == (status, error_type, retry_after)
    assert error.envelope()["error"]["message"]


@pytest.mark.parametrize(
    ("code", "status", "client_code", "should_retry", "retryable", "hint"),
    [
        (3003, 502, "upstream_error", None, True, "transient"),
        (4006, 400, "context_length_exceeded", None, False, "context window"),
        (4022, 400, "context_length_exceeded", None, False, "context window"),
        (4008, 429, "insufficient_quota", "false", False, "credits ran out"),
        (4011, 429, "rate_limit_exceeded", None, False, ""),
        (1005, 403, "plan_not_entitled", "false", False, "plan"),
        (1001, 401, "upstream_unauthenticated", None, False, ""),
        (4001, 400, "invalid_request", None, False, ""),
        (7777, 502, "upstream_error", None, False, ""),
    ],
)
def test_dialect_7_codes_keep_traes_code_and_message(
    code: int,
    status: int,
    client_code: str,
    should_retry: str | None,
    retryable: bool,
    hint: str,
) -> None:
    """Dialect §7 codes map to their status, and the client still sees Trae's code and text."""
    error = from_business_code(code, "Trae says no")
    envelope = error.envelope()["error"]
    assert (error.status, envelope["code"], error.retryable) == (status, client_code, retryable)
    assert envelope["trae_code"] == code
    assert f"Trae error {code}: Trae says no" in envelope["message"]
    assert hint in envelope["message"]
    assert error.headers().get("x-should-retry") == should_retry
    assert trae_fields(error) == {"trae_code": code, "trae_message": "Trae says no"}


def test_context_errors_name_the_messages() -> None:
    """A context-window error points at the messages parameter, as OpenAI's does."""
    assert from_business_code(4022, "too long").param == "messages"


def test_rate_limit_carries_retry_after() -> None:
    """4011 tells the client when to come back."""
    assert "Retry-After" in from_business_code(4011, "slow down").headers()


def test_note_follows_the_hint() -> None:
    """What the gateway knows (credits left) is added after the table's hint."""
    error = from_business_code(4008, "quota", note="3 ide credits were left")
    assert error.message.endswith(
        "(the Trae account's credits ran out; they do not come back "
        "within minutes; 3 ide credits were left)"
    )


def test_gateway_errors_have_no_trae_fields() -> None:
    """Errors the gateway made itself carry no trae_code."""
    error = UpstreamUnavailable("down")
    assert "trae_code" not in error.envelope()["error"]
    assert trae_fields(error) == {}
