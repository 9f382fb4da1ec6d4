"""Dialect §7 business codes end to end: the openai SDK against the gateway and the simulator."""

from __future__ import annotations

from typing import Any

import openai
import pytest
from structlog.testing import capture_logs

from conftest import Gateway
from trae2api.testing import SimulatedTrae

pytestmark = pytest.mark.timeout(60)

MODEL = "glm-5.2"


def chat(gateway: Gateway, text: str, *, stream: bool, model: str = MODEL) -> str:
    """One chat through the SDK, streamed or not; the reply text."""
    with gateway.client() as client:
        messages: Any = [{"role": "user", "content": text}]
        if not stream:
            reply = client.chat.completions.create(model=model, messages=messages)
            return reply.choices[0].message.content or ""
        chunks = client.chat.completions.create(model=model, messages=messages, stream=True)
        return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


@pytest.fixture
def gateway(start_gateway: Any) -> Gateway:
    """A gateway on the agent dialect (today's Trae, dialect §7)."""
    return start_gateway(upstream_dialect="agent")  # type: ignore[no-any-return]


def model_for(dialect: str) -> str:
    return MODEL if dialect == "agent" else "gpt-4o"


@pytest.mark.slow
@pytest.mark.parametrize("stream", [False, True])
def test_transient_3003_is_retried_before_the_first_byte(
    start_gateway: Any, sim: SimulatedTrae, dialect: str, stream: bool
) -> None:
    """Two 3003 answers then a good one: the client sees only the answer, Trae saw 3 attempts."""
    gateway = start_gateway(upstream_dialect=dialect, upstream_retries=2)
    with capture_logs() as logs:
        text = chat(gateway, "hi [sim:transient 3003 2]", stream=stream, model=model_for(dialect))
    assert text.startswith("Hello! You said: hi")
    retries = [entry for entry in logs if entry["event"] == "upstream_retry"]
    assert [entry["attempt"] for entry in retries] == [1, 2]
    assert {entry["trae_code"] for entry in retries} == {3003}
    assert all("busy" in entry["trae_message"] for entry in retries)


@pytest.mark.slow
@pytest.mark.parametrize("stream", [False, True])
def test_3003_beyond_the_retries_is_502_with_traes_code(
    start_gateway: Any, sim: SimulatedTrae, stream: bool
) -> None:
    """When every attempt answers 3003 the client gets 502 naming the code and the attempts."""
    gateway = start_gateway(upstream_dialect="agent", upstream_retries=1)
    with pytest.raises(openai.InternalServerError) as caught:
        chat(gateway, "hi [sim:transient 3003 5]", stream=stream)
    error = caught.value.body
    assert isinstance(error, dict)
    assert error["trae_code"] == 3003
    assert "tried 2 times" in error["message"]
    assert "server is busy" in error["message"]
    assert caught.value.status_code == 502


@pytest.mark.slow
@pytest.mark.parametrize(
    ("code", "exception", "status", "client_code"),
    [
        (4006, openai.BadRequestError, 400, "context_length_exceeded"),
        (4022, openai.BadRequestError, 400, "context_length_exceeded"),
        (4008, openai.RateLimitError, 429, "insufficient_quota"),
        (4011, openai.RateLimitError, 429, "rate_limit_exceeded"),
        (1005, openai.PermissionDeniedError, 403, "plan_not_entitled"),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
def test_business_codes_reach_the_sdk(
    gateway: Gateway,
    code: int,
    exception: type[openai.APIStatusError],
    status: int,
    client_code: str,
    stream: bool,
) -> None:
    """Each §7 code is the SDK exception of its status, with Trae's code and message kept."""
    with capture_logs() as logs, pytest.raises(exception) as caught:
        chat(gateway, f"x [sim:error {code}]", stream=stream)
    assert caught.value.status_code == status
    assert caught.value.code == client_code
    body = caught.value.body
    assert isinstance(body, dict)
    assert body["trae_code"] == code
    assert f"Trae error {code}: " in body["message"]
    logged = [entry for entry in logs if entry.get("trae_code") == code]
    assert logged
    assert logged[0]["trae_message"] in body["message"]


@pytest.mark.slow
def test_rate_limit_and_quota_headers(gateway: Gateway) -> None:
    """4011 says when to retry; 4008 tells SDKs not to retry at all."""
    with gateway.http() as http:
        limited = http.post("/v1/chat/completions", json=_body("x [sim:error 4011]"))
        broke = http.post("/v1/chat/completions", json=_body("x [sim:error 4008]"))
    assert int(limited.headers["retry-after"]) > 0
    assert broke.headers["x-should-retry"] == "false"


@pytest.mark.slow
def test_context_error_from_an_oversized_prompt(gateway: Gateway) -> None:
    """A prompt over the model's window (the simulator's real 4006) is 400 on messages."""
    with gateway.client() as client, pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="doubao-1.5-lite", messages=[{"role": "user", "content": "word " * 8000}]
        )
    assert caught.value.code == "context_length_exceeded"
    assert caught.value.param == "messages"


@pytest.mark.slow
def test_4008_says_how_many_credits_were_left(gateway: Gateway, sim: SimulatedTrae) -> None:
    """After the last credit is spent, the 4008 names the credits the last report showed."""
    sim.control.configure(ide_credits=1)
    assert chat(gateway, "spend it", stream=False).startswith("Hello!")
    with pytest.raises(openai.RateLimitError) as caught:
        chat(gateway, "one more", stream=True)
    message = caught.value.message
    assert "credits ran out" in message
    assert "0 ide credits were left at the last report (notify_usage" in message
    with gateway.http() as http:
        credits = http.get("/status").json()["credits"]
    assert (credits["ide_credits"], credits["source"]) == (0, "trae_error_4008")


@pytest.mark.slow
def test_4008_after_a_report_of_credits_left(gateway: Gateway, sim: SimulatedTrae) -> None:
    """A 4008 while the last report showed credits quotes that report, then shows none left."""
    assert chat(gateway, "spend one", stream=False).startswith("Hello!")
    with pytest.raises(openai.RateLimitError) as caught:
        chat(gateway, "x [sim:error 4008]", stream=False)
    assert "999 ide credits were left at the last report" in caught.value.message
    with pytest.raises(openai.RateLimitError) as again:
        chat(gateway, "y [sim:error 4008]", stream=False)
    assert "0 ide credits were left at the last report (trae_error_4008" in again.value.message


@pytest.mark.slow
def test_midstream_error_stays_in_band_with_traes_code(gateway: Gateway) -> None:
    """An error after output began ends the stream in-band, still naming Trae's code."""
    with gateway.client() as client:
        stream = client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "go [sim:midstream-error 4011]"}],
            stream=True,
        )
        with pytest.raises(openai.APIError) as caught:
            for _ in stream:
                pass
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["trae_code"] == 4011


def _body(text: str) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": text}]}
