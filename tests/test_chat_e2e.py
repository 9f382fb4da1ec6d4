"""Chat through real servers: the openai SDK → gateway → simulated Trae, streamed and not."""

from __future__ import annotations

import time
from typing import Any

import httpx
import openai
import orjson
import pytest

from conftest import CLIENT_KEY, Gateway, wait_for
from trae2api.testing import SimulatedTrae
from trae2api.testing.state import default_models

pytestmark = pytest.mark.timeout(30)
USER = [{"role": "user", "content": "hi"}]


def raw_stream(gateway: Gateway, body: dict[str, Any]) -> list[str]:
    """The SSE lines of a streamed request exactly as they crossed the wire."""
    with (
        gateway.http() as http,
        http.stream("POST", "/v1/chat/completions", json={"stream": True, **body}) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        return [line for line in response.iter_lines() if line]


def data_chunks(lines: list[str]) -> list[dict[str, Any]]:
    assert lines[-1] == "data: [DONE]"
    return [orjson.loads(line[6:]) for line in lines[:-1] if line.startswith("data: ")]


@pytest.mark.slow
def test_non_stream_chat(client: openai.OpenAI) -> None:
    """A non-streamed chat returns the upstream answer, finish stop and Trae's usage."""
    completion = client.chat.completions.create(model="gpt-4o", messages=USER)
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == "Hello! You said: hi (turn 0)"
    assert choice.finish_reason == "stop"
    assert completion.model == "gpt-4o"
    assert completion.id.startswith("chatcmpl-")
    assert completion.usage is not None
    assert completion.usage.total_tokens > 0
    assert not (completion.usage.model_extra or {}).get("estimated")


@pytest.mark.slow
def test_stream_is_spec_exact(gateway: Gateway) -> None:
    """Role first, one id/created/model, null finish until the last chunk, then [DONE]."""
    chunks = data_chunks(raw_stream(gateway, {"model": "gpt-4o", "messages": USER}))
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert len({(c["id"], c["created"], c["model"]) for c in chunks}) == 1
    finishes = [c["choices"][0]["finish_reason"] for c in chunks]
    assert finishes[:-1] == [None] * (len(chunks) - 1)
    assert finishes[-1] == "stop"
    assert chunks[-1]["choices"][0]["delta"] == {}
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == "Hello! You said: hi (turn 0)"
    assert all("usage" not in c for c in chunks)


@pytest.mark.slow
def test_stream_usage_chunk_only_when_asked(gateway: Gateway) -> None:
    """include_usage adds one choices-less usage chunk before [DONE] and usage null elsewhere."""
    body = {"model": "gpt-4o", "messages": USER, "stream_options": {"include_usage": True}}
    chunks = data_chunks(raw_stream(gateway, body))
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["total_tokens"] > 0
    assert all(c["usage"] is None for c in chunks[:-1])


@pytest.mark.slow
def test_stream_with_sdk_and_estimated_usage(client: openai.OpenAI) -> None:
    """Without token_usage from Trae the SDK still gets usage, marked as estimated."""
    stream = client.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "count [sim:nousage]"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    usage = chunks[-1].usage
    assert usage is not None
    assert usage.completion_tokens > 0
    assert (usage.model_extra or {}).get("estimated") is True


@pytest.mark.slow
def test_multi_turn_history_reaches_trae(client: openai.OpenAI, sim: SimulatedTrae) -> None:
    """System, user and assistant turns arrive as history with the last text as input."""
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "first"}]},
        {"role": "assistant", "content": "answer one", "reasoning_content": "old thoughts"},
        {"role": "user", "content": "second"},
    ]
    completion = client.chat.completions.create(model="gpt-4o", messages=messages)  # type: ignore[arg-type]
    assert completion.choices[0].message.content == "Hello! You said: second (turn 3)"
    body = sim.control.last_chat()["body"]
    assert [(h["role"], h["content"]) for h in body["chat_history"]] == [
        ("system", "Be brief."),
        ("user", "first"),
        ("assistant", "answer one"),
    ]
    assert body["last_llm_response_info"]["response"] == "answer one"


@pytest.mark.slow
def test_aliases_reach_trae_by_trae_name(client: openai.OpenAI, sim: SimulatedTrae) -> None:
    """A client model alias is sent to Trae under its Trae name and echoed back as sent."""
    completion = client.chat.completions.create(model="claude-3-5-sonnet-20241022", messages=USER)
    assert completion.model == "claude-3-5-sonnet-20241022"
    assert sim.control.last_chat()["body"]["model_name"] == "claude3.5"


@pytest.mark.slow
@pytest.mark.parametrize("path", ["/v1/chat", "/v1"])
def test_original_chat_paths(gateway: Gateway, path: str) -> None:
    """The original project's /v1/chat and /v1 paths serve chat completions too."""
    with gateway.http() as http:
        response = http.post(path, json={"model": "gpt-4o", "messages": USER})
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"].startswith("Hello!")


@pytest.mark.slow
def test_reasoning_content_by_default(client: openai.OpenAI) -> None:
    """Reasoning arrives in reasoning_content, apart from the answer."""
    completion = client.chat.completions.create(model="deepseek-reasoner", messages=USER)
    message = completion.choices[0].message
    assert message.content == "Hello! You said: hi (turn 0)"
    assert (message.model_extra or {}).get("reasoning_content", "").startswith("Let me think")


@pytest.mark.slow
def test_reasoning_think_mode_by_setting(start_gateway: Any) -> None:
    """REASONING_MODE=think folds the reasoning into a leading think block."""
    client = start_gateway(reasoning_mode="think").client()
    stream = client.chat.completions.create(model="deepseek-R1", messages=USER, stream=True)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text.startswith("<think>\nLet me think")
    assert text.endswith("</think>\n\nHello! You said: hi (turn 0)")


def test_reasoning_mode_per_request(client: openai.OpenAI) -> None:
    """A request's reasoning_mode overrides the setting (drop removes the reasoning)."""
    completion = client.chat.completions.create(
        model="deepseek-R1", messages=USER, extra_body={"reasoning_mode": "drop"}
    )
    message = completion.choices[0].message
    assert message.content == "Hello! You said: hi (turn 0)"
    assert "reasoning_content" not in (message.model_extra or {})


@pytest.mark.slow
def test_stop_is_emulated(client: openai.OpenAI) -> None:
    """stop truncates before the first stop string and finishes with stop, streamed or not."""
    completion = client.chat.completions.create(model="gpt-4o", messages=USER, stop=["said"])
    assert completion.choices[0].message.content == "Hello! You "
    assert completion.choices[0].finish_reason == "stop"
    stream = client.chat.completions.create(model="gpt-4o", messages=USER, stop="said", stream=True)
    chunks = [chunk for chunk in stream if chunk.choices]
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Hello! You "
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_accepted_parameters_do_not_fail(client: openai.OpenAI) -> None:
    """max_tokens, max_completion_tokens, temperature and unknown fields are accepted."""
    completion = client.chat.completions.create(
        model="gpt-4o",
        messages=USER,
        max_tokens=50,
        max_completion_tokens=60,
        temperature=0.2,
        extra_body={"some_future_field": {"x": 1}},
    )
    assert completion.choices[0].message.content


def test_n_greater_than_one_is_rejected(client: openai.OpenAI) -> None:
    """n > 1 is a 400 naming the n parameter."""
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="gpt-4o", messages=USER, n=2)
    assert caught.value.param == "n"  # type: ignore[attr-defined]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("directive", "status", "code", "retry_after"),
    [
        ("[sim:error 4011]", 429, "rate_limit_exceeded", True),
        ("[sim:error 4028]", 429, "rate_limit_exceeded", True),
        ("[sim:error 4050]", 429, "rate_limit_exceeded", True),
        ("[sim:error 4008]", 429, "insufficient_quota", True),
        ("[sim:error 1005]", 403, "plan_not_entitled", False),
        ("[sim:error 4006]", 400, "context_length_exceeded", False),
        ("[sim:error 4022]", 400, "context_length_exceeded", False),
        ("[sim:error 4001]", 400, "invalid_request", False),
        ("[sim:error 4023]", 404, "model_not_found", False),
        ("[sim:error 4017]", 403, "permission_denied", False),
        ("[sim:error 4120]", 502, "upstream_error", False),
        ("[sim:error 5001]", 502, "upstream_error", False),
        ("[sim:error 3003] [sim:msg-variant]", 502, "upstream_error", False),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
def test_business_errors_map_to_http(
    gateway: Gateway, directive: str, status: int, code: str, retry_after: bool, stream: bool
) -> None:
    """Trae's error codes before any output become the protocol §7 status and envelope."""
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": directive}]}
    with gateway.http() as http:
        response = http.post("/v1/chat/completions", json={**body, "stream": stream})
    assert response.status_code == status
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code", "trae_code"}
    assert error["code"] == code
    assert str(error["trae_code"]) in directive  # dialect §7: Trae's code reaches the client
    assert ("retry-after" in response.headers) is retry_after
    if "4120" in directive:
        assert "IDE_VERSION" in error["message"]


@pytest.mark.slow
def test_unknown_model_is_404(client: openai.OpenAI) -> None:
    """A model Trae does not know is a 404 model_not_found through the SDK."""
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="no-such-model", messages=USER)
    assert caught.value.code == "model_not_found"  # type: ignore[attr-defined]


@pytest.mark.slow
def test_midstream_error_goes_in_band(gateway: Gateway) -> None:
    """An error after output began ends the stream with an error event and [DONE]."""
    content = "go [sim:midstream-error 5001]"
    lines = raw_stream(
        gateway, {"model": "gpt-4o", "messages": [{"role": "user", "content": content}]}
    )
    assert lines[-1] == "data: [DONE]"
    last = orjson.loads(lines[-2][6:])
    assert last["error"]["code"] == "upstream_error"
    assert "5001" in last["error"]["message"]
    first = orjson.loads(lines[0][6:])
    assert first["choices"][0]["delta"]["role"] == "assistant"


def test_stream_without_done_is_finished(client: openai.OpenAI) -> None:
    """A stream that ends without done still ends with finish stop."""
    stream = client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "x [sim:nodone]"}], stream=True
    )
    chunks = [chunk for chunk in stream if chunk.choices]
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert "".join(c.choices[0].delta.content or "" for c in chunks).startswith("Hello!")


@pytest.mark.slow
@pytest.mark.parametrize("directive", ["[sim:compact]", "[sim:noise]", "[sim:compact] [sim:noise]"])
def test_lenient_framing_and_ignored_events(client: openai.OpenAI, directive: str) -> None:
    """Compact framing and ignorable events do not change the answer."""
    text = f"hey {directive}"
    completion = client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": text}]
    )
    # The simulator echoes the text without its directives.
    assert completion.choices[0].message.content == "Hello! You said: hey (turn 0)"


@pytest.mark.slow
def test_queue_events_become_comments(gateway: Gateway) -> None:
    """While queued, the stream carries ': queued position=N' comments, never content."""
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "q [sim:queue 3]"}]}
    lines = raw_stream(gateway, body)
    comments = [line for line in lines if line.startswith(":")]
    assert comments[0].startswith(": queued position=")
    assert any("position=1" in comment for comment in comments)
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in data_chunks(lines))
    assert text == "Hello! You said: q (turn 0)"


@pytest.mark.slow
def test_queue_wait_non_stream(client: openai.OpenAI) -> None:
    """A non-streamed request waits through the queue and returns the answer."""
    completion = client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "q [sim:queue 2]"}]
    )
    assert completion.choices[0].message.content.startswith("Hello!")  # type: ignore[union-attr]


@pytest.mark.slow
def test_queue_timeout_is_503(start_gateway: Any) -> None:
    """Queued longer than QUEUE_TIMEOUT gives 503 with Retry-After."""
    gateway = start_gateway(queue_timeout=0.3)
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "q [sim:queue 8]"}]}
    with gateway.http() as http:
        response = http.post("/v1/chat/completions", json=body)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "upstream_queue_timeout"
    assert response.headers["retry-after"].isdigit()


@pytest.mark.slow
def test_keepalive_during_silence(start_gateway: Any) -> None:
    """Upstream silence longer than the keepalive interval sends SSE comments."""
    gateway = start_gateway(keepalive_interval=0.2)
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "w [sim:wait 1]"}]}
    lines = raw_stream(gateway, body)
    assert lines[0] == ": keepalive"
    assert lines[-1] == "data: [DONE]"


@pytest.mark.slow
def test_client_disconnect_cancels_upstream(gateway: Gateway, sim: SimulatedTrae) -> None:
    """Closing the client mid-stream cancels the upstream request within a second."""
    client = gateway.client()
    stream = client.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "go [sim:long 200] [sim:slow 50]"}],
        stream=True,
    )
    for index, _chunk in enumerate(stream):
        if index == 3:
            break
    assert sim.control.stats()["active_streams"] == 1
    stream.close()
    client.close()
    assert wait_for(lambda: sim.control.stats()["cancelled_streams"] == 1, timeout=1.0)
    assert sim.control.stats()["active_streams"] == 0


def active_streams(gateway: Gateway) -> float:
    with gateway.http() as http:
        text = http.get("/metrics").text
    return float(
        next(
            line for line in text.splitlines() if line.startswith("trae2api_active_streams ")
        ).split()[1]
    )


@pytest.mark.slow
def test_client_leaving_during_upstream_silence_ends_the_stream(gateway: Gateway) -> None:
    """A client that leaves while Trae is silent mid-answer ends the stream (and its upstream
    read) at once, not when Trae next speaks."""
    client = gateway.client()
    stream = client.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "go [sim:fault stall-midstream 20]"}],
        stream=True,
    )
    next(iter(stream))  # the answer has begun; Trae now says nothing for 20 s
    assert active_streams(gateway) == 1
    stream.close()
    client.close()
    # No write would reveal the closed socket for 20 s: the disconnect itself must end it.
    assert wait_for(lambda: active_streams(gateway) == 0, timeout=2.0)


@pytest.mark.slow
def test_transient_5xx_is_retried(client: openai.OpenAI, sim: SimulatedTrae) -> None:
    """A 5xx before the first byte is retried and the client sees only the success."""
    sim.control.configure(fail_next_chats=1, fail_status=503)
    completion = client.chat.completions.create(model="gpt-4o", messages=USER)
    assert completion.choices[0].message.content.startswith("Hello!")  # type: ignore[union-attr]
    assert sim.control.stats()["chats_failed_on_purpose"] == 1


@pytest.mark.slow
def test_persistent_5xx_becomes_502(client: openai.OpenAI, sim: SimulatedTrae) -> None:
    """When every retry fails the client gets a 502 upstream error envelope."""
    sim.control.configure(fail_next_chats=10, fail_status=500)
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="gpt-4o", messages=USER, stream=True)
    assert caught.value.status_code == 502
    assert sim.control.stats()["chats_failed_on_purpose"] == 3


@pytest.mark.slow
def test_connection_reset_is_retried_then_reported(client: openai.OpenAI) -> None:
    """A reset before any byte is retried, then reported as a 502 in the envelope."""
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "[sim:reset]"}]
        )
    assert caught.value.status_code == 502
    assert caught.value.code == "upstream_unreachable"  # type: ignore[attr-defined]


@pytest.mark.slow
def test_models_list_and_retrieve(client: openai.OpenAI) -> None:
    """Models come in OpenAI's shape with public names, owners and a stable created."""
    models = {model.id: model for model in client.models.list()}
    assert {"gpt-4o", "claude-3-5-sonnet", "claude-3-7-sonnet", "deepseek-R1"} <= set(models)
    assert "claude3.5" not in models
    assert models["claude-3-5-sonnet"].owned_by == "anthropic"
    assert models["gpt-4o"].owned_by == "openai"
    assert len({model.created for model in models.values()}) == 1
    again = {model.id: model.created for model in client.models.list()}
    assert again == {k: v.created for k, v in models.items()}
    assert client.models.retrieve("claude3.5").id == "claude3.5"
    assert client.models.retrieve("deepseek-reasoner").id == "deepseek-reasoner"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nope")


@pytest.mark.slow
def test_models_are_cached_and_served_stale(start_gateway: Any, sim: SimulatedTrae) -> None:
    """Within the TTL one upstream call serves all; past it a failing upstream serves stale."""
    gateway = start_gateway(models_ttl=0.2)
    client = gateway.client()
    first = [model.id for model in client.models.list()]
    calls = sim.control.stats()["model_lists"]
    assert [model.id for model in client.models.list()] == first
    assert sim.control.stats()["model_lists"] == calls
    sim.control.configure(model_list_fail=True)

    time.sleep(0.3)
    assert [model.id for model in client.models.list()] == first
    sim.control.configure(model_list_fail=False)
    time.sleep(0.3)
    assert [model.id for model in client.models.list()] == first
    assert sim.control.stats()["model_lists"] == calls + 1


@pytest.mark.slow
def test_models_without_any_copy_fail_clearly(start_gateway: Any, sim: SimulatedTrae) -> None:
    """With no cached copy and Trae failing, /v1/models is an upstream error envelope."""
    sim.control.configure(model_list_fail=True)
    gateway = start_gateway()
    with httpx.Client(base_url=gateway.url, headers={"x-api-key": CLIENT_KEY}) as http:
        response = http.get("/v1/models")
    assert response.status_code in (502, 503)
    assert response.json()["error"]["type"] == "upstream_error"


@pytest.mark.slow
def test_non_stream_disconnect_cancels_upstream(gateway: Gateway, sim: SimulatedTrae) -> None:
    """A client that gives up on a non-streamed request stops the upstream within ~a second."""
    client = gateway.client(timeout=0.5)
    with pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(
            model="gpt-4o",
            messages=[{"role": "user", "content": "go [sim:long 100] [sim:slow 50]"}],
        )
    assert wait_for(lambda: sim.control.stats()["cancelled_streams"] == 1, timeout=2.0)
    assert sim.control.stats()["active_streams"] == 0


@pytest.mark.slow
def test_quota_errors_tell_sdks_not_to_retry(gateway: Gateway) -> None:
    """An exhausted quota carries x-should-retry: false so SDKs do not hammer Trae."""
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "[sim:error 4008]"}]}
    with gateway.http() as http:
        response = http.post("/v1/chat/completions", json=body)
    assert response.headers["x-should-retry"] == "false"
    assert int(response.headers["retry-after"]) > 0


@pytest.mark.slow
def test_expired_right_after_start_needs_one_exchange(gateway: Gateway, sim: SimulatedTrae) -> None:
    """Tokens revoked just after start-up are replaced by one shared exchange for 20 requests."""
    assert wait_for(lambda: sim.control.stats()["exchanges_ok"] == 1)
    sim.control.configure(exchange_delay=0.3)
    sim.control.expire_access()
    client = gateway.client()

    def ask(index: int) -> str | None:
        completion = client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": f"n{index}"}]
        )
        return completion.choices[0].message.content

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(ask, range(20)))
    assert answers == [f"Hello! You said: n{i} (turn 0)" for i in range(20)]
    assert sim.control.stats()["exchanges_ok"] == 2


@pytest.mark.slow
def test_done_finish_reason_wins(client: openai.OpenAI) -> None:
    """done's finish_reason is the one clients see (protocol §6)."""
    completion = client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "x [sim:finish length]"}]
    )
    assert completion.choices[0].finish_reason == "length"


@pytest.mark.slow
def test_auto_is_the_account_default_on_legacy(client: openai.OpenAI, sim: SimulatedTrae) -> None:
    """``auto`` is listed first on the legacy dialect and chats with the is_default model."""
    models = [model.id for model in client.models.list()]
    assert models[0] == "auto"
    assert client.models.retrieve("auto").display_name == "Account default (claude3.5)"  # type: ignore[attr-defined]
    reply = client.chat.completions.create(
        model="auto", messages=[{"role": "user", "content": "who answers?"}]
    )
    assert "You said: who answers?" in (reply.choices[0].message.content or "")
    assert sim.control.last_chat()["body"]["model_name"] == "claude3.5"
    assert reply.model == "auto"


@pytest.mark.slow
def test_auto_without_a_default_is_the_first_model(start_gateway: Any, sim: SimulatedTrae) -> None:
    """When no entry of the legacy list is the default, ``auto`` means its first model."""
    models = [dict(model, is_default=False) for model in default_models()[::-1]]
    sim.control.configure(models=models)
    client = start_gateway().client()
    client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "hi"}])
    assert sim.control.last_chat()["body"]["model_name"] == models[0]["name"]
