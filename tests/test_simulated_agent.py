"""The simulated Trae upstream speaks the agent dialect strictly and scripts bridged tool calls."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest

import simkit
from simkit import (
    AGENT_CHAT,
    CHAT,
    Body,
    agent_headers,
    catalogue_body,
    chat_body,
    ide_headers,
    parse_sse,
    text,
)
from trae2api.testing import SimState, SimulatedTrae

CATALOGUE = "/api/ide/v1/get_detail_param"
PRODUCT_APP_ID = "6eefa01c-1036-4c7e-9ca5-d891f63bfcd8"
WEATHER_SCHEMA = '{"type": "object", "properties": {"city": {"type": "string"}}}'


shared_sim, sim, token = simkit.sim_fixtures()
shared_client, client = simkit.client_fixtures()


def user(value: str) -> Body:
    return {"role": "user", "content": text(value)}


def weather_tool(name: str = "get_weather") -> Body:
    function = {"name": name, "description": "Weather.", "parameters": WEATHER_SCHEMA}
    return {"type": "function", "function": function}


def agent_body(message: str = "hi", model: str = "kimi-k2", **extra: Any) -> Body:
    body: Body = {"function": "chat_v3", "config_name": model, "model": model, "stream": True}
    body["messages"] = [user(message)]
    body.update(extra)
    return body


def tool_round_body() -> Body:
    """A valid body holding every message kind, one answered tool call and tools."""
    call = {
        "id": "call_abc",
        "type": "function",
        "function_call": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
    }
    messages = [
        {"role": "system", "content": text("Be brief.")},
        user("Weather in Paris?"),
        {"role": "assistant", "content": [], "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_abc", "content": text('{"temp": 21}')},
    ]
    tools = [weather_tool(), weather_tool("get_time")]
    return agent_body(model="glm-5.2", messages=messages, tools=tools, max_tokens=1000)


def agent_chat(
    client: httpx.Client, sim: SimulatedTrae, token: str, body: Body, **headers: str
) -> httpx.Response:
    merged = {**agent_headers(sim, token), **headers}
    return client.post(AGENT_CHAT, headers=merged, content=orjson.dumps(body))


def events_of(response: httpx.Response) -> list[tuple[str, Any]]:
    return parse_sse(response.text)


def outputs(events: list[tuple[str, Any]]) -> list[Body]:
    return [data for name, data in events if name == "output"]


def said(events: list[tuple[str, Any]]) -> str:
    return "".join(o["response"] for o in outputs(events))


def fragments(events: list[tuple[str, Any]]) -> list[Body]:
    found: list[Body] = []
    for output in outputs(events):
        calls = output["tool_calls"]
        if calls is not None:
            found += calls if isinstance(calls, list) else [calls]
    return found


def arguments_by_index(frags: list[Body], key: str = "function_call") -> dict[int, str]:
    joined: dict[int, str] = {}
    for frag in frags:
        joined[frag["index"]] = joined.get(frag["index"], "") + frag[key]["arguments"]
    return joined


# -- catalogue (§3) ----------------------------------------------------------------------------


def test_catalogue_lists_the_pool_with_filter_candidates(
    sim: SimulatedTrae, client: httpx.Client, token: str
) -> None:
    """chat_v3 lists the §3 shape, one default, and the entries a gateway must filter out."""
    response = client.post(CATALOGUE, headers=agent_headers(sim, token), json=catalogue_body())
    entries = {e["config_name"]: e for e in response.json()["config_info_list"]}
    assert {"glm-5.2", "claude-sonnet-4.5", "gpt-5.1", "deepseek-v3.2", "kimi-k2"} <= set(entries)
    assert {"title_generation", "fast_apply", "summary", "custom_model_x"} <= set(entries)
    assert any(e.get("config_switch") is False for e in entries.values())
    assert [n for n, e in entries.items() if e["is_default"]] == ["glm-5.2"]
    glm = entries["glm-5.2"]
    assert glm["display_config"]["model_capability"] == "reasoning_model"
    assert entries["claude-sonnet-4.5"]["display_config"]["multimodal"] is True
    detail = glm["model_detail_list"][0]
    assert (detail["model_name"], detail["max_tokens"]) == ("glm-5.2__dev", 16000)
    assert detail["prompt_max_tokens"] == 100000
    assert all(isinstance(e["extra_config"], str) for e in entries.values())
    assert isinstance(json.loads(glm["display_contact_config"]), dict)
    solo = client.post(
        CATALOGUE, headers=agent_headers(sim, token), json=catalogue_body("solo_work_lite")
    )
    solo_names = {e["config_name"] for e in solo.json()["config_info_list"]}
    assert "solo-pro" in solo_names
    assert not solo_names & set(entries)
    assert sim.control.stats()["model_lists"] == 2


def test_catalogue_unknown_pool_is_2001(
    sim: SimulatedTrae, client: httpx.Client, token: str
) -> None:
    """An unknown function is HTTP 200 with code 2001 and no config_info_list."""
    response = client.post(
        CATALOGUE, headers=agent_headers(sim, token), json=catalogue_body("inline_chat")
    )
    assert response.status_code == 200
    assert response.json()["code"] == 2001
    assert "config_info_list" not in response.json()


@pytest.mark.parametrize(
    ("field", "change"),
    [
        ("need_prompt", lambda b: b.pop("need_prompt")),
        ("extra", lambda b: b.update(extra=1)),
        ("need_prompt", lambda b: b.update(need_prompt=True)),
        ("poly_prompt", lambda b: b.update(poly_prompt=1)),
        ("config_names", lambda b: b.update(config_names=[])),
        ("function", lambda b: b.update(function=None)),
    ],
)
def test_catalogue_body_is_strict(
    sim: SimulatedTrae,
    client: httpx.Client,
    token: str,
    field: str,
    change: Callable[[Body], Any],
) -> None:
    """A catalogue body without exactly the seven §3 keys and values is a 400 naming the key."""
    body = catalogue_body()
    change(body)
    response = client.post(CATALOGUE, headers=agent_headers(sim, token), json=body)
    assert response.status_code == 400
    assert response.json()["field"] == field


def test_catalogue_needs_app_id(sim: SimulatedTrae, client: httpx.Client, token: str) -> None:
    """A catalogue request without x-app-id is HTTP 400 naming expr_path=app_id."""
    headers = agent_headers(sim, token)
    del headers["x-app-id"]
    response = client.post(CATALOGUE, headers=headers, json=catalogue_body())
    assert response.status_code == 400
    assert response.json()["message"] == "expr_path=app_id"


def test_catalogue_is_configurable(sim: SimulatedTrae, client: httpx.Client, token: str) -> None:
    """agent_models replaces the catalogue for both listing and chat."""
    entry = copy.deepcopy(sim.state.agent_models()["chat_v3"][4])
    entry["config_name"] = "mini-1"
    sim.control.configure(agent_models={"chat_v3": [entry]})
    response = client.post(CATALOGUE, headers=agent_headers(sim, token), json=catalogue_body())
    assert [e["config_name"] for e in response.json()["config_info_list"]] == ["mini-1"]
    assert said(events_of(agent_chat(client, sim, token, agent_body(model="mini-1")))) != ""
    failed = events_of(agent_chat(client, sim, token, agent_body(model="kimi-k2")))
    assert failed[0][1]["code"] == 4023


# -- headers (§2) ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("authorization", None),
        ("authorization", "Bearer {token}"),
        ("authorization", "Cloud-IDE-JWT other"),
        ("x-cloudide-token", None),
        ("x-cloudide-token", "other"),
        ("x-ide-token", None),
    ],
)
def test_token_triple_is_required(
    sim: SimulatedTrae, client: httpx.Client, token: str, header: str, value: str | None
) -> None:
    """All three token headers must carry the same valid token, else HTTP 401 code 1001."""
    headers = agent_headers(sim, token)
    if value is None:
        del headers[header]
    else:
        headers[header] = value.format(token=token)
    for path, body in ((AGENT_CHAT, agent_body()), (CATALOGUE, catalogue_body())):
        response = client.post(path, headers=headers, json=body)
        assert response.status_code == 401
        assert response.json() == {"code": 1001, "message": "not authenticated"}


def test_expired_token_is_401(sim: SimulatedTrae, client: httpx.Client, token: str) -> None:
    """After expire_access the triple of a once-valid token is HTTP 401."""
    assert agent_chat(client, sim, token, agent_body()).status_code == 200
    sim.control.expire_access()
    assert agent_chat(client, sim, token, agent_body()).status_code == 401


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("x-ide-version", None),
        ("x-ide-version-code", "2026.08"),
        ("x-request-id", None),
        ("x-device-id", "abc"),
        ("x-machine-id", "abc"),
        ("x-device-type", None),
        ("x-uid", "someone-else"),
        ("x-app-version-code", "1"),
        ("content-type", "text/plain"),
    ],
)
def test_bad_header_is_400_naming_it(
    sim: SimulatedTrae, client: httpx.Client, token: str, header: str, value: str | None
) -> None:
    """Each missing or malformed §2 header is HTTP 400 naming it."""
    headers = agent_headers(sim, token)
    if value is None:
        del headers[header]
    else:
        headers[header] = value
    response = client.post(AGENT_CHAT, headers=headers, content=orjson.dumps(agent_body()))
    assert response.status_code == 400
    assert response.json()["header"] == header


@pytest.mark.parametrize("app_id", [None, "another-app"])
def test_chat_app_id_is_in_stream_4001(
    sim: SimulatedTrae, client: httpx.Client, token: str, app_id: str | None
) -> None:
    """A missing or foreign x-app-id is an HTTP 200 stream with error 4001 expr_path=app_id."""
    headers = agent_headers(sim, token)
    headers.pop("x-app-id")
    if app_id is not None:
        headers["x-app-id"] = app_id
    response = client.post(AGENT_CHAT, headers=headers, content=orjson.dumps(agent_body()))
    assert response.status_code == 200
    assert events_of(response) == [("error", {"code": 4001, "message": "expr_path=app_id"})]


def test_account_and_product_app_ids_are_accepted() -> None:
    """Both the account's own app id and Trae's product app id are accepted."""
    with SimulatedTrae(SimState(app_id="own-app")) as sim, httpx.Client(base_url=sim.url) as http:
        token = sim.state.mint_access_token()
        for app_id in ("own-app", PRODUCT_APP_ID):
            response = agent_chat(http, sim, token, agent_body(), **{"x-app-id": app_id})
            assert events_of(response)[-1] == ("done", {"finish_reason": "stop"})


def test_request_id_reuse_is_counted(sim: SimulatedTrae, client: httpx.Client, token: str) -> None:
    """A repeated X-Request-ID is accepted but counted."""
    for request_id in ("a", "b", "a"):
        agent_chat(client, sim, token, agent_body(), **{"x-request-id": request_id})
    assert sim.control.stats()["request_id_reuses"] == 1


# -- chat body (§4) ----------------------------------------------------------------------------


def _message(index: int, change: Callable[[Body], Any]) -> Callable[[Body], Any]:
    return lambda body: change(body["messages"][index])


def _tool(change: Callable[[Body], Any]) -> Callable[[Body], Any]:
    return lambda body: change(body["tools"][0]["function"])


def _call(change: Callable[[Body], Any]) -> Callable[[Body], Any]:
    return lambda body: change(body["messages"][2]["tool_calls"][0])


BODY_VIOLATIONS: list[tuple[str, int, Callable[[Body], Any]]] = [
    ("function missing", 2001, lambda b: b.pop("function")),
    ("function unknown", 2001, lambda b: b.update(function="chat_v9")),
    ("model of another pool", 4001, lambda b: b.update(config_name="solo-pro", model="solo-pro")),
    ("model unknown", 4023, lambda b: b.update(config_name="gpt-9", model="gpt-9")),
    ("model suffixed", 4023, lambda b: b.update(config_name="glm-5.2__dev", model="glm-5.2__dev")),
    (
        "model switched off",
        4023,
        lambda b: b.update(config_name="gemini-2.0-flash", model="gemini-2.0-flash"),
    ),
    ("model only", 4001, lambda b: b.pop("config_name")),
    ("names differ", 4001, lambda b: b.update(model="kimi-k2")),
    ("inline with model", 4001, lambda b: b.update(function="inline_chat")),
    ("agent_type", 4023, lambda b: b.update(agent_type="chat")),
    ("device_id", 4023, lambda b: b.update(device_id="1")),
    ("ide_version", 4023, lambda b: b.update(ide_version="3.0.0")),
    ("unknown field", 4001, lambda b: b.update(max_completion_tokens=10)),
    ("stream false", 4001, lambda b: b.update(stream=False)),
    ("stream missing", 4001, lambda b: b.pop("stream")),
    ("no messages", 4001, lambda b: b.update(messages=[])),
    ("developer role", 4001, _message(0, lambda m: m.update(role="developer"))),
    ("string content", 4001, _message(1, lambda m: m.update(content="Weather?"))),
    ("null content", 4001, _message(2, lambda m: m.update(content=None))),
    ("odd part", 4001, _message(1, lambda m: m.update(content=[{"type": "input_text"}]))),
    ("bad image part", 4001, _message(1, lambda m: m["content"].append({"type": "image_url"}))),
    ("function key", 4027, _call(lambda c: c.update(function=c.pop("function_call")))),
    ("call without id", 4027, _call(lambda c: c.pop("id"))),
    ("object arguments", 4001, _call(lambda c: c["function_call"].update(arguments={}))),
    ("unknown tool_call_id", 4027, _message(3, lambda m: m.update(tool_call_id="call_x"))),
    ("no tool_call_id", 4027, _message(3, lambda m: m.pop("tool_call_id"))),
    ("call not answered", 4027, lambda b: b["messages"].pop(3)),
    ("tool after user", 4027, lambda b: b["messages"].insert(3, user("x"))),
    ("tool_calls on user", 4001, _message(1, lambda m: m.update(tool_calls=[]))),
    ("object parameters", 4001, _tool(lambda f: f.update(parameters={"type": "object"}))),
    ("parameters not JSON", 4001, _tool(lambda f: f.update(parameters="{not json"))),
    ("double-encoded", 4001, _tool(lambda f: f.update(parameters=json.dumps(WEATHER_SCHEMA)))),
    ("empty tools", 4001, lambda b: b.update(tools=[])),
    ("duplicate tool", 4001, lambda b: b["tools"].append(weather_tool())),
    ("tool_choice object", 4001, lambda b: b.update(tool_choice={"type": "function"})),
    ("tool_choice none", 4001, lambda b: b.update(tool_choice="none")),
    ("tool_choice unknown", 4001, lambda b: b.update(tool_choice="get_news")),
    ("tool_choice no tools", 4001, lambda b: b.pop("tools") and b.update(tool_choice="auto")),
    ("max_tokens too big", 4001, lambda b: b.update(max_tokens=16001)),
    ("max_tokens string", 4001, lambda b: b.update(max_tokens="100")),
    ("temperature string", 4001, lambda b: b.update(temperature="hot")),
    ("stop number", 4001, lambda b: b.update(stop=1)),
]


@pytest.mark.parametrize(
    ("code", "change"), [v[1:] for v in BODY_VIOLATIONS], ids=[v[0] for v in BODY_VIOLATIONS]
)
def test_invalid_chat_body_is_an_in_stream_error(
    sim: SimulatedTrae, client: httpx.Client, token: str, code: int, change: Callable[[Body], Any]
) -> None:
    """Each §4 violation is an HTTP 200 stream holding one error event with the expected code."""
    body = tool_round_body()
    assert events_of(agent_chat(client, sim, token, body))[-1][0] == "done"
    change(body)
    response = agent_chat(client, sim, token, body)
    assert response.status_code == 200
    events = events_of(response)
    assert [name for name, _ in events] == ["error"]
    assert events[0][1]["code"] == code
    assert sim.control.stats()["body_rejections"] == 1


@pytest.mark.parametrize(
    "change",
    [
        lambda b: b.update(function="inline_chat") or (b.pop("config_name") and b.pop("model")),
        lambda b: b.update(tool_choice="required", stop=["x"], temperature=0.2, seed=1),
        lambda b: b["tools"][0]["function"].pop("parameters"),
        lambda b: b.update(max_tokens=16000, top_p=1),
    ],
)
def test_valid_variants_are_accepted(
    sim: SimulatedTrae, client: httpx.Client, token: str, change: Callable[[Body], Any]
) -> None:
    """inline_chat without a model, sampling keys and limits at the edge pass."""
    body = tool_round_body()
    change(body)
    events = events_of(agent_chat(client, sim, token, body))
    assert events[-1] == ("done", {"finish_reason": "stop"})
    assert dict(events)["timing_cost"] == {"provider_model_name": "glm-5.2-0915"}


# -- stream (§5) -------------------------------------------------------------------------------


def test_valid_chat_uses_agent_framing(
    sim: SimulatedTrae, client: httpx.Client, token: str
) -> None:
    """A valid chat streams event:/data: lines without spaces or blank lines, in §5 order."""
    response = agent_chat(client, sim, token, agent_body("Hi there"))
    raw = response.content
    assert response.headers["content-type"].startswith("text/event-stream")
    assert raw.startswith(b"event:metadata\ndata:{")
    assert b"\n\n" not in raw
    assert b"event: " not in raw
    assert b"data: " not in raw
    assert b"\nevent:output\ndata:{" in raw
    events = events_of(response)
    order = [name for name, _ in events if name != "output"]
    assert order == [
        "metadata",
        "timing_cost",
        "progress_notice",
        "extra_info",
        "token_usage",
        "notify_usage",
        "done",
    ]
    assert dict(events)["timing_cost"] == {"provider_model_name": "kimi-k2-0905-preview"}
    assert isinstance(dict(events)["progress_notice"], str)
    assert all(o["tool_calls"] is None and o["reasoning_content"] == "" for o in outputs(events))
    assert said(events) == "Hello! You said: Hi there (turn 0)"
    usage = dict(events)["token_usage"]
    assert set(usage) == {
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "reasoning_tokens",
        "cache_read_input_tokens",
    }
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert events[-1] == ("done", {"finish_reason": "stop"})
    assert sim.control.last_agent_chat()["body"] == agent_body("Hi there")
    assert sim.control.last_chat()["dialect"] == "agent"
    assert sim.control.stats()["agent_chats"] == 1


def test_reasoning_model_streams_reasoning_first(
    sim: SimulatedTrae, client: httpx.Client, token: str
) -> None:
    """glm-5.2 streams reasoning_content before the answer and counts reasoning tokens."""
    events = events_of(agent_chat(client, sim, token, agent_body("why", model="glm-5.2")))
    outs = outputs(events)
    first_answer = next(i for i, o in enumerate(outs) if o["response"])
    assert "".join(o["reasoning_content"] for o in outs[:first_answer]) == "Let me think about why."
    assert dict(events)["token_usage"]["reasoning_tokens"] == 5


def test_queue_comes_after_timing_cost(
    sim: SimulatedTrae, client: httpx.Client, token: str
) -> None:
    """[sim:queue 2] puts the queue events between timing_cost and progress_notice."""
    names = [n for n, _ in events_of(agent_chat(client, sim, token, agent_body("[sim:queue 2]")))]
    assert names[:7] == [
        "metadata",
        "timing_cost",
        "queue_begin",
        "request_wait_in_queue",
        "request_wait_in_queue",
        "queue_end",
        "progress_notice",
    ]


@pytest.mark.parametrize(
    ("message", "check"),
    [
        (
            "[sim:error 4011]",
            lambda ev: (
                ev
                == [
                    (
                        "error",
                        {"code": 4011, "message": "request rate limited, please try again later"},
                    )
                ]
            ),
        ),
        ("[sim:midstream-error 5001] [sim:long 8]", lambda ev: ev[-1][1]["code"] == 5001),
        ("[sim:nodone]", lambda ev: ev[-1][0] == "notify_usage"),
        ("[sim:long 5]", lambda ev: len(outputs(ev)) == 5),
        ("[sim:frobnicate]", lambda ev: ev[0][1]["code"] == 4001 and len(ev) == 1),
        ("[sim:call get_weather {}]", lambda ev: "needs tools" in ev[0][1]["message"]),
        ("[sim:call get_weather {oops]", lambda ev: ev[0][1]["code"] == 4001),
        ("[sim:compact]", lambda ev: ev[0][1]["code"] == 4001),
    ],
)
def test_directives(
    sim: SimulatedTrae,
    client: httpx.Client,
    token: str,
    message: str,
    check: Callable[[list[tuple[str, Any]]], bool],
) -> None:
    """The reused directives shape the agent stream; unknown or misplaced ones are 4001."""
    assert check(events_of(agent_chat(client, sim, token, agent_body(message))))


def test_empty_http_reset_and_stale_version(
    sim: SimulatedTrae, client: httpx.Client, token: str
) -> None:
    """[sim:empty] is a 200 with no bytes, [sim:http] an HTML status, [sim:reset] a transport
    error, and a stale version code the in-stream 4120."""
    empty = agent_chat(client, sim, token, agent_body("[sim:empty]"))
    assert (empty.status_code, empty.content) == (200, b"")
    assert empty.headers["content-type"].startswith("text/event-stream")
    assert agent_chat(client, sim, token, agent_body("[sim:http 503]")).status_code == 503
    with pytest.raises(httpx.TransportError):
        agent_chat(client, sim, token, agent_body("[sim:reset]"))
    sim.control.configure(min_version_code=20260812)
    stale = events_of(agent_chat(client, sim, token, agent_body()))
    assert stale == [("error", {"code": 4120, "message": ""})]


def test_script_uses_agent_framing(sim: SimulatedTrae, client: httpx.Client, token: str) -> None:
    """A scripted answer to an agent chat is sent verbatim in the agent framing."""
    sim.control.script([{"event": "done", "data": {"finish_reason": "stop"}}])
    response = agent_chat(client, sim, token, agent_body())
    assert response.text == 'event:done\ndata:{"finish_reason":"stop"}\n'


# -- tool calls --------------------------------------------------------------------------------


def call_body(message: str, **extra: Any) -> Body:
    return agent_body(message, tools=[weather_tool(), weather_tool("get_time")], **extra)


def test_call_directive_streams_fragments(
    sim: SimulatedTrae, client: httpx.Client, token: str
) -> None:
    """[sim:call] streams ≥3 fragments: id, type and name on the first only; done says stop."""
    message = 'Weather? [sim:call get_weather {"city": "Paris"}]'
    events = events_of(agent_chat(client, sim, token, call_body(message)))
    frags = fragments(events)
    assert len(frags) >= 3
    assert all(isinstance(o["tool_calls"], list) for o in outputs(events))
    first, *rest = frags
    assert first["id"] == "call_1_0"
    assert first["type"] == "function"
    assert first["function_call"]["name"] == "get_weather"
    assert all(f["id"] == "" and f["function_call"]["name"] == "" for f in rest)
    assert {f["index"] for f in frags} == {0}
    assert arguments_by_index(frags) == {0: '{"city": "Paris"}'}
    assert said(events) == ""
    assert events[-1] == ("done", {"finish_reason": "stop"})


def test_parallel_calls_contiguous_or_interleaved(
    sim: SimulatedTrae, client: httpx.Client, token: str
) -> None:
    """Parallel calls stream one after another, or alternate with [sim:interleave]."""
    message = '[sim:call get_weather {"city": "Paris"}] [sim:call get_time {"tz": "UTC"}]'
    frags = fragments(events_of(agent_chat(client, sim, token, call_body(message))))
    indices = [f["index"] for f in frags]
    assert indices == sorted(indices)
    assert set(indices) == {0, 1}
    interleaved = fragments(
        events_of(agent_chat(client, sim, token, call_body(message + " [sim:interleave]")))
    )
    assert [f["index"] for f in interleaved][:4] == [0, 1, 0, 1]
    assert arguments_by_index(interleaved) == {0: '{"city": "Paris"}', 1: '{"tz": "UTC"}'}
    names = [f["function_call"]["name"] for f in interleaved if f["id"]]
    assert names == ["get_weather", "get_time"]


def test_fragment_variant_and_solo_extras(
    sim: SimulatedTrae, client: httpx.Client, token: str
) -> None:
    """[sim:fragment-variant] uses function and single objects; [sim:solo-extras] adds keys."""
    call = '[sim:call get_weather {"city": "Oslo"}]'
    events = events_of(agent_chat(client, sim, token, call_body(call + " [sim:fragment-variant]")))
    calls = [o["tool_calls"] for o in outputs(events) if o["tool_calls"] is not None]
    assert all(isinstance(c, dict) and "function" in c for c in calls)
    assert arguments_by_index(calls, "function") == {0: '{"city": "Oslo"}'}
    solo = fragments(
        events_of(agent_chat(client, sim, token, call_body(call + " [sim:solo-extras]")))
    )
    assert all("namespace" in f and "partial_arguments" in f for f in solo)
    assert solo[-1]["partial_arguments"] == '{"city": "Oslo"}'


def test_text_then_call(sim: SimulatedTrae, client: httpx.Client, token: str) -> None:
    """[sim:text-then-call] streams text before the call fragments."""
    message = "[sim:text-then-call] [sim:call get_time {}]"
    events = events_of(agent_chat(client, sim, token, call_body(message)))
    outs = outputs(events)
    first_call = next(i for i, o in enumerate(outs) if o["tool_calls"])
    assert "".join(o["response"] for o in outs[:first_call]) == "Let me use a tool for that."
    assert all(o["response"] == "" for o in outs[first_call:])


@pytest.mark.parametrize(
    ("choice", "expected"), [("required", "get_weather"), ("get_time", "get_time"), ("auto", None)]
)
def test_tool_choice_decides(
    sim: SimulatedTrae, client: httpx.Client, token: str, choice: str, expected: str | None
) -> None:
    """required calls the first tool, a name calls that tool (both with {}), auto answers text."""
    events = events_of(agent_chat(client, sim, token, call_body("hi", tool_choice=choice)))
    frags = fragments(events)
    if expected is None:
        assert frags == []
        assert said(events).startswith("Hello!")
    else:
        assert [f["function_call"]["arguments"] for f in frags] == ["", "{", "}"]
        assert frags[0]["function_call"]["name"] == expected


def test_tool_results_are_answered_with_text(
    sim: SimulatedTrae, client: httpx.Client, token: str
) -> None:
    """When the conversation ends with tool results the answer quotes them, ending the loop."""
    body = tool_round_body()
    body["messages"][1] = user('Weather? [sim:call get_weather {"city": "Paris"}]')
    events = events_of(agent_chat(client, sim, token, body))
    assert fragments(events) == []
    assert said(events) == 'Tool results: get_weather → {"temp": 21}'
    assert dict(events)["token_usage"]["cache_read_input_tokens"] > 0


# -- legacy bridged tool calls -----------------------------------------------------------------


def legacy(client: httpx.Client, sim: SimulatedTrae, token: str, message: str) -> list[Body]:
    body = chat_body([("system", "Use tools."), ("user", message)])
    response = client.post(CHAT, headers=ide_headers(sim, token), json=body)
    return [data for name, data in parse_sse(response.text) if name == "output"]


def test_bridge_call_is_streamed_split_awkwardly(
    sim: SimulatedTrae, client: httpx.Client, token: str
) -> None:
    """[sim:bridge-call] answers the exact block, cut inside the tags and the JSON."""
    outs = legacy(client, sim, token, 'Paris? [sim:bridge-call get_weather {"city": "Paris"}]')
    pieces = [o["response"] for o in outs]
    block = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    assert "".join(pieces) == block
    assert pieces[0] == "<to"
    assert pieces[1].startswith("ol_call>")
    assert pieces[-1] == "call>"
    assert pieces[-2].endswith("</tool_")
    assert not any('{"city": "Paris"}' in piece for piece in pieces)


def test_parallel_bridge_calls_with_lead_in(
    sim: SimulatedTrae, client: httpx.Client, token: str
) -> None:
    """Several bridge-call directives give one block per line after the optional lead-in."""
    message = "[sim:text-then-call] [sim:bridge-call a {}] [sim:bridge-call b {}]"
    joined = "".join(o["response"] for o in legacy(client, sim, token, message))
    assert joined == (
        "Let me use a tool for that.\n"
        '<tool_call>\n{"name": "a", "arguments": {}}\n</tool_call>\n'
        '<tool_call>\n{"name": "b", "arguments": {}}\n</tool_call>'
    )


@pytest.mark.parametrize(
    ("directive", "expected"),
    [
        (
            "[sim:bridge-malformed]",
            '<tool_call>\n{"name": "get_weather", "arguments": {broken\n</tool_call>',
        ),
        (
            "[sim:bridge-unterminated]",
            '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n',
        ),
    ],
)
def test_broken_bridge_blocks(
    sim: SimulatedTrae, client: httpx.Client, token: str, directive: str, expected: str
) -> None:
    """bridge-malformed and bridge-unterminated answer the broken blocks, split up."""
    outs = legacy(client, sim, token, directive)
    assert "".join(o["response"] for o in outs) == expected
    assert outs[0]["response"] == "<to"


def test_bridged_tool_response_is_answered(
    sim: SimulatedTrae, client: httpx.Client, token: str
) -> None:
    """A last user text holding <tool_response> blocks is answered by quoting each result."""
    message = (
        '<tool_response name="get_weather" id="call_abc">\n{"temp": 21}\n</tool_response>\n'
        '<tool_response name="get_time" id="call_def">\n12:00\n</tool_response>'
    )
    joined = "".join(o["response"] for o in legacy(client, sim, token, message))
    assert joined == 'Tool results: get_weather → {"temp": 21}; get_time → 12:00'


def test_agent_directives_are_unknown_on_legacy(
    sim: SimulatedTrae, client: httpx.Client, token: str
) -> None:
    """[sim:call] and [sim:empty] belong to the agent dialect: on legacy they are 4001."""
    for message in ("[sim:call get_weather {}]", "[sim:empty]"):
        body = chat_body([("user", message)])
        response = client.post(CHAT, headers=ide_headers(sim, token), json=body)
        assert parse_sse(response.text)[0][1]["code"] == 4001
