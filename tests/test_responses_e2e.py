"""The OpenAI Responses API end to end with the official ``openai`` SDK, on both dialects."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import httpx
import openai
import orjson
import pytest

from conftest import CLIENT_KEY, REDIS_TEST_URL, Gateway, closed_after_test, model_for
from pngkit import png
from trae2api.testing import SimulatedTrae

pytestmark = pytest.mark.timeout(30)

SHELL = {
    "type": "function",
    "name": "exec_command",
    "description": "Run a shell command",
    "parameters": {
        "type": "object",
        "properties": {"cmd": {"type": "string"}},
        "required": ["cmd"],
    },
}


def client(gateway: Gateway) -> openai.OpenAI:
    """The official OpenAI client for ``gateway``, without its own retries."""
    made = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=CLIENT_KEY, max_retries=0)
    return closed_after_test(made)  # type: ignore[no-any-return]


def call_directive(dialect: str, name: str, arguments: dict[str, Any]) -> str:
    kind = "call" if dialect == "agent" else "bridge-call"
    return f"[sim:{kind} {name} {json.dumps(arguments)}]"


def raw_events(gateway: Gateway, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The data of each SSE event of a streamed ``/v1/responses``, checked against its name."""
    headers = {"authorization": f"Bearer {CLIENT_KEY}"}
    with (
        httpx.Client(base_url=gateway.url, timeout=30) as http,
        http.stream("POST", "/v1/responses", json={**body, "stream": True}, headers=headers) as r,
    ):
        assert r.status_code == 200
        text = r.read().decode()
    events = []
    for frame in text.split("\n\n"):
        if not frame.strip() or frame.startswith(":"):
            continue
        name_line, data_line = frame.split("\n")
        data = orjson.loads(data_line.removeprefix("data: "))
        assert data["type"] == name_line.removeprefix("event: ")
        events.append(data)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    return events


def _of_reasoning(event: dict[str, Any]) -> bool:
    """Whether ``event`` belongs to a reasoning item (glm-5.2 always reasons)."""
    item = event.get("item") or {}
    return str(event.get("item_id", "")).startswith("rs_") or item.get("type") == "reasoning"


def test_create_plain_response(gw: Gateway, dialect: str) -> None:
    """responses.create answers with one message item, completed status and usage."""
    response = client(gw).responses.create(
        model=model_for(dialect), instructions="be brief", input="hi"
    )
    assert response.status == "completed"
    assert [item.type for item in response.output if item.type != "reasoning"] == ["message"]
    assert response.output_text.startswith("Hello! You said: hi (turn ")
    assert response.usage is not None
    assert response.usage.input_tokens > 0
    assert response.usage.output_tokens > 0


def test_stream_event_grammar(gw: Gateway, dialect: str) -> None:
    """A streamed answer follows the Responses event order, and the SDK folds it."""
    body = {"model": model_for(dialect), "input": [{"role": "user", "content": "hello there"}]}
    events = [e for e in raw_events(gw, body) if not _of_reasoning(e)]
    kinds = [event["type"] for event in events]
    deltas = kinds.count("response.output_text.delta")
    assert deltas >= 2
    assert kinds == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * deltas,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert text == "Hello! You said: hello there (turn 0)"
    done = events[-1]["response"]
    assert done["status"] == "completed"
    assert [i for i in done["output"] if i["type"] != "reasoning"] == [events[-2]["item"]]
    assert done["output"][-1]["content"][0]["text"] == text
    assert done["usage"]["total_tokens"] > 0
    with client(gw).responses.stream(**body) as stream:  # type: ignore[arg-type]
        streamed = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        final = stream.get_final_response()
    assert streamed == text == final.output_text


@pytest.mark.parametrize("stream", [False, True])
def test_function_call_round_trip(
    gw: Gateway, dialect: str, sim: SimulatedTrae, stream: bool
) -> None:
    """The model calls a function, the client sends its output, the model answers with it."""
    sdk = client(gw)
    ask = f"list files {call_directive(dialect, 'exec_command', {'cmd': 'ls'})}"
    kwargs: dict[str, Any] = {"model": model_for(dialect), "tools": [SHELL]}
    history: list[Any] = [{"role": "user", "content": ask}]
    if stream:
        with sdk.responses.stream(input=history, **kwargs) as events:
            first = events.get_final_response()
    else:
        first = sdk.responses.create(input=history, **kwargs)
    calls = [item for item in first.output if item.type == "function_call"]
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [("exec_command", {"cmd": "ls"})]
    history += [item.model_dump(exclude_none=True) for item in first.output]
    history.append(
        {"type": "function_call_output", "call_id": calls[0].call_id, "output": "a.txt b.txt"}
    )
    second = sdk.responses.create(input=history, store=False, **kwargs)
    assert "exec_command → a.txt b.txt" in second.output_text
    assert "a.txt b.txt" in json.dumps(sim.control.last_chat()["body"])


def test_reasoning_summary_item(start_gateway: Any) -> None:
    """A reasoning model's thinking streams first as a reasoning item; the effort reaches Trae."""
    gateway = start_gateway(upstream_dialect="agent")
    body = {"model": "glm-5.2", "input": "ponder", "reasoning": {"effort": "high"}}
    events = raw_events(gateway, body)
    kinds = [event["type"] for event in events]
    assert kinds[2:4] == ["response.output_item.added", "response.reasoning_summary_part.added"]
    assert "response.reasoning_summary_text.done" in kinds
    output = events[-1]["response"]["output"]
    assert [item["type"] for item in output] == ["reasoning", "message"]
    assert output[0]["summary"] == [
        {"type": "summary_text", "text": "Let me think about ponder with extra_high effort."}
    ]
    again = client(gateway).responses.create(
        model="glm-5.2", input=[{"role": "user", "content": "ponder"}, *output]
    )
    assert again.output_text.startswith("Hello! You said: ")


def test_custom_tool_call(start_gateway: Any, sim: SimulatedTrae) -> None:
    """A custom tool is offered as a function and its call comes back with the raw input."""
    gateway = start_gateway(upstream_dialect="agent")
    patch = "*** Begin Patch\n*** End Patch"
    tools = [{"type": "custom", "name": "apply_patch", "description": "edit files"}]
    body = {
        "model": "glm-5.2",
        "tools": tools,
        "input": call_directive("agent", "apply_patch", {"input": patch}),
    }
    events = raw_events(gateway, body)
    done = next(e for e in events if e["type"] == "response.custom_tool_call_input.done")
    assert done["input"] == patch
    item = events[-1]["response"]["output"][-1]
    assert (item["type"], item["name"], item["input"]) == ("custom_tool_call", "apply_patch", patch)
    offered = json.dumps(sim.control.last_chat()["body"])
    assert "apply_patch" in offered
    followup = client(gateway).responses.create(
        model="glm-5.2",
        tools=tools,  # type: ignore[arg-type]
        input=[
            {"role": "user", "content": "patch it"},
            item,
            {"type": "custom_tool_call_output", "call_id": item["call_id"], "output": "Done!"},
        ],  # type: ignore[list-item]
    )
    assert "apply_patch → Done!" in followup.output_text


def test_previous_response_id_chains(gw: Gateway, dialect: str, sim: SimulatedTrae) -> None:
    """A stored response's items precede the next input; an unknown id is a 404."""
    sdk = client(gw)
    first = sdk.responses.create(model=model_for(dialect), input="remember kiwi")
    assert sdk.responses.retrieve(first.id).id == first.id
    second = sdk.responses.create(
        model=model_for(dialect), input="and now?", previous_response_id=first.id
    )
    assert "(turn 0)" not in second.output_text  # the earlier turns came along
    assert "remember kiwi" in json.dumps(sim.control.last_chat()["body"])
    unstored = sdk.responses.create(model=model_for(dialect), input="x", store=False)
    with pytest.raises(openai.NotFoundError) as missing:
        sdk.responses.create(model=model_for(dialect), input="y", previous_response_id=unstored.id)
    assert missing.value.body["code"] == "previous_response_not_found"  # type: ignore[index]


def test_errors_use_openai_envelope(gw: Gateway, dialect: str) -> None:
    """Unknown models are 404, bad requests 400, in OpenAI's envelope; unknown tools tolerated."""
    sdk = client(gw)
    with pytest.raises(openai.NotFoundError) as unknown:
        sdk.responses.create(model="no-such-model", input="hi")
    assert unknown.value.body["code"] == "model_not_found"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError):
        sdk.responses.create(model=model_for(dialect), input=[{"role": "robot", "content": "x"}])
    tolerated = sdk.responses.create(
        model=model_for(dialect),
        input=[
            {"type": "message", "role": "developer", "content": "sys"},
            {"role": "user", "content": "hi"},
        ],
        tools=[{"type": "web_search"}, {"type": "namespace", "name": "ns", "tools": [SHELL]}],  # type: ignore[list-item]
        include=["reasoning.encrypted_content"],
        text={"format": {"type": "json_object"}},
        max_output_tokens=10**6,
        extra_body={"prompt_cache_key": "k", "client_metadata": {"a": "b"}},
    )
    assert tolerated.status in ("completed", "incomplete")


def test_midstream_failure_silence_and_docs(start_gateway: Any) -> None:
    """A failure mid-stream is response.failed; silence sends comments; /docs lists the routes."""
    gateway = start_gateway(keepalive_interval=0.2)
    failed = raw_events(gateway, {"model": "gpt-4o", "input": "go [sim:midstream-error 5001]"})
    assert failed[0]["type"] == "response.created"
    assert failed[-1]["type"] == "response.failed"
    assert failed[-1]["response"]["status"] == "failed"
    assert failed[-1]["response"]["error"]["message"]
    assert "response.completed" not in [event["type"] for event in failed]
    headers = {"authorization": f"Bearer {CLIENT_KEY}"}
    body = {"model": "gpt-4o", "input": "w [sim:wait 1]", "stream": True}
    with httpx.Client(base_url=gateway.url, timeout=30, headers=headers) as http:
        text = http.post("/v1/responses", json=body).text
        paths = http.get("/openapi.json").json()["paths"]
    assert text.count(": keepalive\n\n") >= 3
    assert text.rstrip().splitlines()[0] == "event: response.created"
    assert "/v1/responses" in paths
    assert "/v1/responses/{response_id}" in paths


def test_store_false_stream_is_not_kept_and_errors_midflight_are_openai(
    start_gateway: Any,
) -> None:
    """A streamed store-false response is not kept; upstream errors use OpenAI's envelope."""
    gateway = start_gateway(upstream_dialect="agent")
    events = raw_events(gateway, {"model": "glm-5.2", "input": "x", "store": False})
    response_id = events[-1]["response"]["id"]
    sdk = client(gateway)
    with pytest.raises(openai.NotFoundError):
        sdk.responses.retrieve(response_id)
    kept = raw_events(gateway, {"model": "glm-5.2", "input": "x"})[-1]["response"]
    assert (
        sdk.responses.retrieve(kept["id"]).output_text == kept["output"][-1]["content"][0]["text"]
    )
    with pytest.raises(openai.RateLimitError) as limited:
        sdk.responses.create(model="glm-5.2", input="[sim:error 4011]")
    assert limited.value.body["type"] == "rate_limit_error"  # type: ignore[index]


@pytest.mark.parametrize(
    ("dialect", "model"), [("legacy", "claude-3-5-sonnet"), ("agent", "claude-sonnet-4.5")]
)
def test_input_image_arrives(start_gateway: Any, dialect: str, model: str) -> None:
    """An input_image data URL reaches Trae intact on both dialects."""
    image = png(3, 2)
    data_url = "data:image/png;base64," + base64.b64encode(image).decode()
    response = client(start_gateway(upstream_dialect=dialect)).responses.create(
        model=model,
        input=[
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "what is this?"},
                    {"type": "input_image", "image_url": data_url, "detail": "auto"},
                ],
            }
        ],
    )
    digest = hashlib.sha256(image).hexdigest()[:12]
    assert f"3x2 png sha256:{digest}" in response.output_text


def test_chaining_across_replicas_through_redis(
    start_gateway: Any, sim: SimulatedTrae, redis_prefix: str
) -> None:
    """With REDIS_URL a response stored by one gateway chains on another; without, it does not."""
    shared = {"redis_url": REDIS_TEST_URL, "redis_key_prefix": redis_prefix}
    first, second = start_gateway(**shared), start_gateway(**shared)
    stored = client(first).responses.create(model="gpt-4o", input="remember kiwi")
    chained = client(second).responses.create(
        model="gpt-4o", input="and now?", previous_response_id=stored.id
    )
    assert "remember kiwi" in json.dumps(sim.control.last_chat()["body"])
    assert client(second).responses.retrieve(stored.id).output_text == stored.output_text
    assert chained.previous_response_id == stored.id
    # Started last: its own credential store holds the seed token the shared pair already
    # rotated, so it must not race them for the exchange; a lookup needs no Trae anyway.
    alone = start_gateway()
    with pytest.raises(openai.NotFoundError):
        client(alone).responses.retrieve(stored.id)
