"""Client authentication, CORS, body limits, request ids, error envelopes and secret hygiene."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import httpx2
import openai
import pytest

from conftest import CLIENT_KEY, Gateway, GatewayProcess, free_port, gateway_env, sdk, wait_for
from trae2api.testing import SimulatedTrae

NO_AUTH_HEADER = {"Authorization": openai.Omit()}
GENERATED_ID = re.compile(r"^[0-9a-f]{32}$")
CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}


def assert_envelope(
    response: httpx.Response, status: int, code: str | None = None
) -> dict[str, Any]:
    """``response`` is OpenAI's error envelope with ``status`` (and ``code``); returns the error."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str)
    assert error["message"]
    assert isinstance(error["type"], str)
    if code is not None:
        assert error["code"] == code
    return error  # type: ignore[no-any-return]


@pytest.fixture
def http(gateway: Gateway) -> Iterator[httpx.Client]:
    """A raw HTTP client of the gateway that presents no key."""
    with gateway.http(key=None) as client:
        yield client


# -- client keys ---------------------------------------------------------------------------


def test_missing_key_is_a_401_envelope(gateway: Gateway) -> None:
    """A request without any key is refused with OpenAI's 401 invalid_api_key."""
    with gateway.client() as client, pytest.raises(openai.AuthenticationError) as caught:
        client.models.list(extra_headers=NO_AUTH_HEADER)
    assert caught.value.status_code == 401
    assert caught.value.code == "invalid_api_key"
    assert "Missing API key" in caught.value.message


def test_wrong_key_is_a_401_envelope(gateway: Gateway) -> None:
    """A wrong key is refused with 401 invalid_api_key, without echoing the key."""
    wrong = "wrong-key-" + "x" * 20
    with sdk(gateway.url, wrong) as client, pytest.raises(openai.AuthenticationError) as caught:
        client.chat.completions.create(**CHAT)
    assert caught.value.status_code == 401
    assert caught.value.code == "invalid_api_key"
    assert "Incorrect API key" in caught.value.message
    assert wrong not in caught.value.response.text
    assert CLIENT_KEY not in caught.value.response.text


@pytest.mark.slow
def test_bearer_and_x_api_key_are_both_accepted(gateway: Gateway) -> None:
    """The key works as ``Authorization: Bearer`` and as ``x-api-key``."""
    with gateway.client() as bearer:
        assert bearer.models.list().data
    with sdk(gateway.url, default_headers={"x-api-key": CLIENT_KEY}) as by_header:
        assert by_header.models.list(extra_headers=NO_AUTH_HEADER).data
    wrong_header = {"x-api-key": "not-the-key-123456"}
    with (
        sdk(gateway.url, default_headers=wrong_header) as wrong,
        pytest.raises(openai.AuthenticationError),
    ):
        wrong.models.list(extra_headers=NO_AUTH_HEADER)


@pytest.mark.slow
def test_every_comma_separated_key_is_accepted(start_gateway: Any) -> None:
    """AUTH_TOKEN="k1, k2" accepts both keys and nothing else."""
    keys = ["first-key-aaaaaaaaaaaa", "second-key-bbbbbbbbbbb"]
    gateway = start_gateway(auth_token=f"{keys[0]}, {keys[1]}")
    for key in keys:
        with sdk(gateway.url, key) as client:
            reply = client.chat.completions.create(**CHAT)
        assert "You said: hi" in (reply.choices[0].message.content or "")
    for other in (CLIENT_KEY, f"{keys[0]},{keys[1]}"):
        with sdk(gateway.url, other) as client, pytest.raises(openai.AuthenticationError):
            client.models.list()


@pytest.mark.slow
def test_probes_are_open_and_everything_else_needs_a_key(
    sim: SimulatedTrae, gateway: Gateway, http: httpx.Client
) -> None:
    """/healthz and /readyz answer without a key; /v1/models, /status and chat do not."""
    assert wait_for(lambda: sim.control.stats()["model_lists"] >= 1)
    assert http.get("/healthz").status_code == 200
    assert http.get("/readyz").status_code == 200
    assert_envelope(http.get("/v1/models"), 401, "invalid_api_key")
    assert_envelope(http.get("/status"), 401, "invalid_api_key")
    assert_envelope(http.post("/v1/chat/completions", json=CHAT), 401, "invalid_api_key")
    with gateway.http() as authorised:
        assert authorised.get("/status").status_code == 200


# -- CORS ----------------------------------------------------------------------------------


def preflight(client: httpx.Client, origin: str) -> httpx.Response:
    return client.options(
        "/v1/chat/completions",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )


def test_cors_is_off_by_default(http: httpx.Client) -> None:
    """Without CORS_ORIGINS no origin is granted, neither on a preflight nor a simple request."""
    assert "access-control-allow-origin" not in preflight(http, "https://app.example").headers
    simple = http.get("/healthz", headers={"Origin": "https://app.example"})
    assert simple.status_code == 200
    assert "access-control-allow-origin" not in simple.headers


def test_cors_grants_only_the_listed_origins(start_gateway: Any) -> None:
    """With CORS_ORIGINS set the listed origin is granted (with credentials), others are not."""
    gateway = start_gateway(cors_origins="https://app.example, https://other.example")
    with gateway.http(key=None) as http:
        granted = preflight(http, "https://app.example")
        assert granted.status_code == 200
        assert granted.headers["access-control-allow-origin"] == "https://app.example"
        assert granted.headers["access-control-allow-credentials"] == "true"
        assert "POST" in granted.headers["access-control-allow-methods"]
        refused = preflight(http, "https://evil.example")
        assert "access-control-allow-origin" not in refused.headers
        simple = http.get("/healthz", headers={"Origin": "https://other.example"})
        assert simple.headers["access-control-allow-origin"] == "https://other.example"
        assert "x-request-id" in simple.headers["access-control-expose-headers"].lower()
        foreign = http.get("/healthz", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in foreign.headers


def test_cors_wildcard_never_allows_credentials(start_gateway: Any) -> None:
    """CORS_ORIGINS=* grants any origin but never with allow-credentials: true."""
    gateway = start_gateway(cors_origins="*")
    with gateway.http(key=None) as http:
        response = preflight(http, "https://anywhere.example")
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] in ("*", "https://anywhere.example")
        assert response.headers.get("access-control-allow-credentials") != "true"
        simple = http.get("/healthz", headers={"Origin": "https://anywhere.example"})
        assert simple.headers["access-control-allow-origin"] == "*"
        assert simple.headers.get("access-control-allow-credentials") != "true"


# -- body limit ----------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_body_over_the_limit_is_a_413_envelope(
    sim: SimulatedTrae, start_gateway: Any, framing: str
) -> None:
    """A body over MAX_BODY_BYTES gets 413 request_too_large, declared or streamed."""
    gateway = start_gateway(max_body_bytes=2048)
    padding = "x" * 4000
    body = httpx.Request("POST", "/", json={**CHAT, "user": padding}).read()

    def pieces() -> Iterator[bytes]:
        for start in range(0, len(body), 500):
            yield body[start : start + 500]

    content: bytes | Iterator[bytes] = body if framing == "content-length" else pieces()
    with gateway.http() as http:
        response = http.post(
            "/v1/chat/completions", content=content, headers={"content-type": "application/json"}
        )
        assert_envelope(response, 413, "request_too_large")
        assert "MAX_BODY_BYTES" in response.json()["error"]["message"]
        assert "x-request-id" in response.headers
        assert http.post("/v1/chat/completions", json=CHAT).status_code == 200
    assert sim.control.stats()["chats"] == 1


def test_the_sdk_sees_a_413_for_a_huge_prompt(start_gateway: Any) -> None:
    """Through the openai SDK an oversized request is an APIStatusError 413."""
    gateway = start_gateway(max_body_bytes=2048)
    with gateway.client() as client, pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "y" * 5000}]
        )
    assert caught.value.status_code == 413
    assert caught.value.code == "request_too_large"


# -- readiness and status ------------------------------------------------------------------


@pytest.mark.slow
def test_readyz_is_ready_when_the_account_works(sim: SimulatedTrae, http: httpx.Client) -> None:
    """/readyz is 200 once the credentials are fine and Trae answered."""
    assert wait_for(lambda: sim.control.stats()["model_lists"] >= 1)
    response = http.get("/readyz")
    assert response.status_code == 200
    assert response.json()["status"] == "ready"
    assert response.json()["upstream"] == "ok"


@pytest.mark.slow
def test_readyz_is_not_ready_after_the_refresh_token_was_rejected(
    sim: SimulatedTrae, start_gateway: Any
) -> None:
    """/readyz is 503 reauth_required when Trae rejected the refresh token."""
    gateway = start_gateway(refresh_token="never-issued-refresh-token-0000")
    assert wait_for(lambda: sim.control.stats()["exchanges_rejected"] == 1)
    with gateway.http(key=None) as http:
        assert wait_for(lambda: http.get("/readyz").json()["credentials"] == "reauth_required")
        response = http.get("/readyz")
    assert response.status_code == 503
    assert response.json()["status"] == "not_ready"
    assert response.json()["credentials"] == "reauth_required"
    assert "never-issued" not in response.text


@pytest.mark.slow
def test_status_shows_no_secret(sim: SimulatedTrae, gateway: Gateway, tmp_path: Path) -> None:
    """/status describes the account without any refresh token, access token or client key."""
    with gateway.client() as client:
        client.chat.completions.create(**CHAT)
    access_token = sim.control.last_chat()["headers"]["x-ide-token"]
    with gateway.http() as http:
        response = http.get("/status")
    assert response.status_code == 200
    account = response.json()["account"]
    assert account["state"] == "ok"
    assert account["has_access_token"] is True
    assert account["version"] == 1
    secrets = {
        sim.account.refresh_token,
        sim.control.stats()["current_refresh_token"],
        access_token,
        CLIENT_KEY,
    }
    for secret in secrets:
        assert secret not in response.text


# -- request ids ---------------------------------------------------------------------------


def test_every_response_carries_a_request_id(http: httpx.Client) -> None:
    """200, 401 and 404 responses all carry a generated x-request-id, each one different."""
    ids = [
        http.get("/healthz").headers["x-request-id"],
        http.get("/v1/models").headers["x-request-id"],
        http.get("/no/such/route").headers["x-request-id"],
    ]
    assert all(GENERATED_ID.match(request_id) for request_id in ids), ids
    assert len(set(ids)) == 3


@pytest.mark.slow
def test_a_safe_incoming_request_id_is_echoed(gateway: Gateway) -> None:
    """A plain incoming x-request-id comes back unchanged, also on errors."""
    with gateway.client() as client:
        raw = client.models.with_raw_response.list(extra_headers={"x-request-id": "trace-42.a_b"})
    assert raw.headers["x-request-id"] == "trace-42.a_b"
    with gateway.http(key=None) as http:
        refused = http.get("/v1/models", headers={"x-request-id": "denied-1"})
    assert refused.status_code == 401
    assert refused.headers["x-request-id"] == "denied-1"


@pytest.mark.slow
@pytest.mark.parametrize(
    "unsafe",
    ["has space", "semi;colon", "x" * 129, "<script>", "a%0d%0aSet-Cookie:x=1", "é-accent"],
)
def test_an_unsafe_incoming_request_id_is_replaced(http: httpx.Client, unsafe: str) -> None:
    """An x-request-id that is not a plain token is not echoed; a fresh one is generated."""
    response = http.get("/healthz", headers={"x-request-id": unsafe.encode("latin-1")})
    assert response.status_code == 200
    assert response.headers["x-request-id"] != unsafe
    assert GENERATED_ID.match(response.headers["x-request-id"])


@pytest.mark.slow
@pytest.mark.parametrize(
    "header",
    [
        b"X-Request-Id: abc\rSet-Cookie: pwned=1\r\n",
        b"X-Request-Id: abc\nSet-Cookie: pwned=1\r\n",
        b"X-Request-Id: abc\r\n Set-Cookie: pwned=1\r\n",
    ],
)
def test_a_header_injection_through_the_request_id_is_not_echoed(
    gateway: Gateway, header: bytes
) -> None:
    """CR/LF tricks in x-request-id never put a header of the client's into the response."""
    port = int(gateway.url.rsplit(":", 1)[1])
    request = (
        b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n" + header + b"Connection: close\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    assert received.startswith(b"HTTP/1.1 "), received
    head = received.split(b"\r\n\r\n", 1)[0].lower()
    assert b"set-cookie" not in head
    assert b"pwned" not in head
    for line in head.split(b"\r\n"):
        if line.startswith(b"x-request-id:"):
            assert GENERATED_ID.match(line.split(b":", 1)[1].strip().decode()), line


# -- error envelopes -----------------------------------------------------------------------


def test_unknown_route_is_a_404_envelope(gateway: Gateway) -> None:
    """An unknown URL is 404 in OpenAI's envelope (the SDK raises NotFoundError)."""
    with gateway.http() as http:
        error = assert_envelope(http.get("/v1/nothing-here"), 404, "unknown_url")
    assert "/v1/nothing-here" in error["message"]
    with gateway.client() as client, pytest.raises(openai.NotFoundError) as caught:
        client.get("/nothing-here", cast_to=object)
    assert caught.value.status_code == 404


def test_wrong_method_is_a_405_envelope(gateway: Gateway) -> None:
    """GET on the chat endpoint is 405 in OpenAI's envelope."""
    with gateway.http() as http:
        error = assert_envelope(http.get("/v1/chat/completions"), 405, "method_not_allowed")
    assert error["type"] == "invalid_request_error"


@pytest.mark.slow
def test_invalid_json_is_a_400_envelope(gateway: Gateway) -> None:
    """A body that is not JSON is 400 invalid_request_error."""
    with gateway.http() as http:
        response = http.post(
            "/v1/chat/completions",
            content=b'{"model": "gpt-4o", "messages": [',
            headers={"content-type": "application/json"},
        )
    error = assert_envelope(response, 400)
    assert error["type"] == "invalid_request_error"
    assert "JSON" in error["message"]


# -- secrets never leak ----------------------------------------------------------------------


class Recorder:
    """Keeps the headers and body of every response an SDK client received."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def __call__(self, response: httpx2.Response) -> None:
        response.read()
        headers = "\n".join(f"{name}: {value}" for name, value in response.headers.items())
        self.seen.append(f"{response.status_code}\n{headers}\n\n{response.text}")


@pytest.mark.slow
def test_no_secret_reaches_the_log_or_any_response(sim: SimulatedTrae, tmp_path: Path) -> None:
    """At DEBUG, no refresh token, access token or client key appears in the log or a response."""
    env = gateway_env(sim, tmp_path / "data", LOG_LEVEL="DEBUG")
    gateway = GatewayProcess(env=env, port=free_port(), log_path=tmp_path / "gateway.log")
    refresh_tokens = {sim.account.refresh_token}
    access_tokens: set[str] = set()
    recorder = Recorder()
    gateway.start()
    try:
        assert wait_for(lambda: sim.control.stats()["exchanges_ok"] == 1)
        refresh_tokens.add(sim.control.stats()["current_refresh_token"])
        gateway.stop()  # a restarted gateway may refresh at once when Trae rejects its token
        gateway.start()
        with (
            httpx2.Client(event_hooks={"response": [recorder]}) as http_client,
            sdk(gateway.url, http_client=http_client) as client,
            sdk(gateway.url, "bad-key-0123456789", http_client=http_client) as stranger,
        ):
            assert client.models.list().data
            client.chat.completions.create(**CHAT, max_tokens=50)  # logs a DEBUG line
            access_tokens.add(sim.control.last_chat()["headers"]["x-ide-token"])
            stream = client.chat.completions.create(**CHAT, stream=True)
            assert "You said: hi" in "".join(
                chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices
            )
            sim.control.expire_access()
            client.chat.completions.create(**CHAT)
            access_tokens.add(sim.control.last_chat()["headers"]["x-ide-token"])
            refresh_tokens.add(sim.control.stats()["current_refresh_token"])
            with pytest.raises(openai.AuthenticationError):
                stranger.models.list()
            with gateway_http(gateway) as raw:
                recorder(raw.get("/status"))
                recorder(raw.get("/readyz"))
    finally:
        gateway.stop()
    stats = sim.control.stats()
    assert stats["exchanges_ok"] == 2
    assert stats["auth_rejections"] == 1
    assert len(access_tokens) == 2
    assert len(refresh_tokens) == 3
    assert len(recorder.seen) == 7
    log_text = gateway.log_path.read_text()
    assert log_text.count('"credentials.refreshed"') == 2
    assert '"level": "debug"' in log_text
    for secret in {*refresh_tokens, *access_tokens, CLIENT_KEY}:
        assert len(secret) >= 8
        assert secret not in log_text
        for seen in recorder.seen:
            assert secret not in seen


def gateway_http(gateway: GatewayProcess) -> httpx2.Client:
    """A raw client of a gateway process with the client key, as the SDK's transport type."""
    return httpx2.Client(
        base_url=gateway.url, headers={"Authorization": f"Bearer {CLIENT_KEY}"}, timeout=30
    )
