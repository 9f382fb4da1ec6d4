"""The simulated Trae upstream enforces protocol §2–§7 strictly, over real loopback HTTP."""

from __future__ import annotations

import asyncio
import copy
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest

import simkit
from simkit import (
    CHAT,
    SESSION,
    VERSION_CODE,
    answer,
    chat_body,
    ide_headers,
    parse_sse,
)
from trae2api.testing import SimState, SimulatedTrae, serve_simulated_trae
from trae2api.testing.server import bind_socket

ENTITLEMENT = "your plan does not include this feature: entitlement insufficient"

EXCHANGE = "/cloudide/api/v3/trae/oauth/ExchangeToken"
MODELS = "/api/ide/v1/model_list"


shared_sim, sim, token = simkit.sim_fixtures()
shared_client, client = simkit.client_fixtures()


def exchange_body(sim: SimulatedTrae, refresh_token: str, **overrides: Any) -> dict[str, Any]:
    body = {
        "ClientID": sim.account.client_id,
        "RefreshToken": refresh_token,
        "ClientSecret": "-",
        "UserID": sim.account.user_id,
    }
    body.update(overrides)
    return body


def chat(
    client: httpx.Client, sim: SimulatedTrae, token: str, text: str, model: str = "claude3.5"
) -> httpx.Response:
    body = chat_body([("user", text)], model)
    return client.post(CHAT, headers=ide_headers(sim, token), json=body)


def names(events: list[tuple[str, Any]]) -> list[str]:
    return [name for name, _ in events]


def wait_for(predicate: Callable[[], bool], timeout: float = 1.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


# -- token exchange (§2) -----------------------------------------------------------------------


def test_exchange_rotates_and_rejects_reuse(sim: SimulatedTrae, client: httpx.Client) -> None:
    """A successful exchange returns a new pair in ms and burns the presented refresh token."""
    first = sim.account.refresh_token
    response = client.post(EXCHANGE, json=exchange_body(sim, first))
    assert response.status_code == 200
    result = response.json()["Result"]
    assert result["RefreshToken"] != first
    assert result["TokenExpireAt"] > time.time() * 1000 + 3600_000
    assert result["RefreshExpireAt"] > result["TokenExpireAt"]
    assert sim.control.stats()["current_refresh_token"] == result["RefreshToken"]
    reused = client.post(EXCHANGE, json=exchange_body(sim, first))
    assert reused.status_code == 400
    assert reused.json()["ResponseMetadata"]["Error"]["Code"] == "10002"
    again = client.post(EXCHANGE, json=exchange_body(sim, result["RefreshToken"], UserID=""))
    assert again.status_code == 200
    assert sim.control.stats()["exchanges_ok"] == 2
    assert sim.control.stats()["exchanges_rejected"] == 1


def test_exchange_rejects_unknown_client(sim: SimulatedTrae, client: httpx.Client) -> None:
    """An unknown ClientID is HTTP 400 code 10101 and leaves the refresh token usable."""
    body = exchange_body(sim, sim.account.refresh_token, ClientID="nope")
    response = client.post(EXCHANGE, json=body)
    assert response.status_code == 400
    error = response.json()["ResponseMetadata"]["Error"]
    assert error == {"Code": "10101", "Message": "Invalid client."}
    assert client.post(EXCHANGE, json=exchange_body(sim, sim.account.refresh_token)).is_success


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda b: b.pop("ClientSecret"), "ClientSecret"),
        (lambda b: b.update(ClientSecret="secret"), "ClientSecret"),
        (lambda b: b.update(client_id=b.pop("ClientID")), "ClientID"),
        (lambda b: b.update(Extra="x"), "Extra"),
        (lambda b: b.update(UserID=None), "UserID"),
        (lambda b: b.update(UserID="someone-else"), "UserID"),
    ],
)
def test_exchange_body_is_strict(
    sim: SimulatedTrae, client: httpx.Client, change: Callable[[dict[str, Any]], Any], field: str
) -> None:
    """An exchange body without exactly the four PascalCase keys is rejected naming the key."""
    body = exchange_body(sim, sim.account.refresh_token)
    change(body)
    response = client.post(EXCHANGE, json=body)
    assert response.status_code == 400
    assert field in response.json()["ResponseMetadata"]["Error"]["Message"]


def test_exchange_needs_json(sim: SimulatedTrae, client: httpx.Client) -> None:
    """An exchange sent as a form is rejected as an invalid parameter."""
    response = client.post(EXCHANGE, data=exchange_body(sim, sim.account.refresh_token))
    assert response.status_code == 400
    assert response.json()["ResponseMetadata"]["Error"]["Code"] == "10001"


def test_refresh_token_expires_on_the_clock() -> None:
    """A refresh token presented after refresh_ttl seconds is rejected."""
    now = [1_000_000.0]
    state = SimState(clock=lambda: now[0], refresh_ttl=60, access_ttl=10)
    with SimulatedTrae(state) as sim, httpx.Client(base_url=sim.url) as client:
        now[0] += 61
        response = client.post(EXCHANGE, json=exchange_body(sim, sim.account.refresh_token))
        assert response.status_code == 400
        assert "expired" in response.json()["ResponseMetadata"]["Error"]["Message"]


def test_concurrent_exchanges_with_one_token_lose_one(sim: SimulatedTrae) -> None:
    """With exchange_delay two exchanges overlap, and only the first use of the token wins."""
    sim.control.configure(exchange_delay=0.3)
    results: list[tuple[int, float, float]] = []
    barrier = threading.Barrier(2)

    def run() -> None:
        with httpx.Client(base_url=sim.url) as http:
            body = exchange_body(sim, sim.account.refresh_token)
            barrier.wait()
            started = time.monotonic()
            status = http.post(EXCHANGE, json=body).status_code
            results.append((status, started, time.monotonic()))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(status for status, _, _ in results) == [200, 400]
    assert max(start for _, start, _ in results) < min(end for _, _, end in results)
    assert all(end - start >= 0.25 for _, start, end in results)


# -- authentication and headers (§3) -----------------------------------------------------------


def test_expired_access_token_is_401(sim: SimulatedTrae, client: httpx.Client, token: str) -> None:
    """After expire_access the same token gets HTTP 401 code 1001 on chat and model list."""
    assert chat(client, sim, token, "hi").status_code == 200
    sim.control.expire_access()
    response = chat(client, sim, token, "hi")
    assert response.status_code == 401
    assert response.json() == {"code": 1001, "message": "not authenticated"}
    models = client.get(MODELS, params={"type": "chat"}, headers=ide_headers(sim, token))
    assert models.status_code == 401


def test_access_token_expires_on_the_clock() -> None:
    """An access token stops working access_ttl seconds after the exchange."""
    now = [1_000_000.0]
    state = SimState(clock=lambda: now[0], access_ttl=30)
    with SimulatedTrae(state) as sim, httpx.Client(base_url=sim.url) as client:
        result = client.post(EXCHANGE, json=exchange_body(sim, sim.account.refresh_token))
        token = result.json()["Result"]["Token"]
        assert result.json()["Result"]["TokenExpireAt"] == 1_000_030_000
        assert chat(client, sim, token, "hi").status_code == 200
        now[0] += 31
        assert chat(client, sim, token, "hi").status_code == 401


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("x-app-id", "another-app"),
        ("x-ide-version", None),
        ("x-ide-version-code", "2025.03"),
        ("x-ide-version-type", ""),
        ("x-device-id", "abc123"),
        ("x-machine-id", "abc"),
        ("x-device-cpu", None),
        ("x-device-brand", None),
        ("x-device-type", None),
        ("content-type", "text/plain"),
    ],
)
def test_bad_header_is_400_naming_it(
    sim: SimulatedTrae, client: httpx.Client, token: str, header: str, value: str | None
) -> None:
    """Each missing or malformed §3 header is HTTP 400 with a body naming that header."""
    headers = {k.lower(): v for k, v in ide_headers(sim, token).items()}
    if value is None:
        del headers[header]
    else:
        headers[header] = value
    body = orjson.dumps(chat_body([("user", "hi")]))
    response = client.post(CHAT, headers=headers, content=body)
    assert response.status_code == 400
    assert response.json()["header"] == header
    assert header in response.json()["message"]


def test_device_change_is_counted(sim: SimulatedTrae, client: httpx.Client, token: str) -> None:
    """Seeing the account with a second machine id counts one device change."""
    headers = ide_headers(sim, token)
    client.get(MODELS, params={"type": "chat"}, headers=headers)
    client.get(MODELS, params={"type": "chat"}, headers=headers)
    assert sim.control.stats()["device_changes"] == 0
    client.get(MODELS, params={"type": "chat"}, headers={**headers, "x-machine-id": "b" * 64})
    assert sim.control.stats()["device_changes"] == 1


# -- model list (§4) ---------------------------------------------------------------------------


def test_model_list(sim: SimulatedTrae, client: httpx.Client, token: str) -> None:
    """Both type values list the catalogue with exactly one default; other types are 400."""
    for kind in ("chat", "llm_raw_chat"):
        response = client.get(MODELS, params={"type": kind}, headers=ide_headers(sim, token))
        configs = response.json()["model_configs"]
        assert {"claude3.5", "deepseek-R1", "gpt-4o"} <= {m["name"] for m in configs}
        assert sum(m["is_default"] for m in configs) == 1
        assert all(isinstance(m["custom_config"], str) for m in configs)
    bad = client.get(MODELS, params={"type": "agent"}, headers=ide_headers(sim, token))
    assert bad.status_code == 400


def test_model_list_can_fail(sim: SimulatedTrae, client: httpx.Client, token: str) -> None:
    """With model_list_fail the model list answers 503 with an HTML body."""
    sim.control.configure(model_list_fail=True)
    response = client.get(MODELS, params={"type": "chat"}, headers=ide_headers(sim, token))
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("text/html")


# -- chat (§5, §6) -----------------------------------------------------------------------------


def test_valid_chat_streams_output_and_done(
    sim: SimulatedTrae, client: httpx.Client, token: str
) -> None:
    """A valid body gets 200 text/event-stream: metadata, outputs, token_usage, done."""
    response = chat(client, sim, token, "Hi there")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert "event: output\ndata: {" in response.text
    events = parse_sse(response.text)
    assert names(events)[0] == "metadata"
    assert names(events)[-2:] == ["token_usage", "done"]
    assert answer(events) == "Hello! You said: Hi there (turn 0)"
    assert names(events).count("output") > 3
    assert events[-1][1] == {"finish_reason": "stop"}
    usage = events[-2][1]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    stats = sim.control.stats()
    assert (stats["chats"], stats["completed_streams"], stats["active_streams"]) == (1, 1, 0)


def test_multi_turn_history_arrives(sim: SimulatedTrae, client: httpx.Client, token: str) -> None:
    """A history ending with an assistant message is valid and the reply counts it."""
    messages = [("system", "Be brief."), ("user", "One"), ("assistant", "Two"), ("user", "Three")]
    body = chat_body(messages)
    assert body["last_llm_response_info"] == {"turn": 2, "is_error": False, "response": "Two"}
    response = client.post(CHAT, headers=ide_headers(sim, token), json=body)
    assert answer(parse_sse(response.text)) == "Hello! You said: Three (turn 3)"
    assert sim.control.last_chat()["body"] == body
    assert sim.control.last_chat()["headers"]["x-ide-token"] == token


def _variables(change: Callable[[dict[str, Any]], Any]) -> Callable[[dict[str, Any]], Any]:
    def apply(body: dict[str, Any]) -> None:
        variables = orjson.loads(body["variables"])
        change(variables)
        body["variables"] = orjson.dumps(variables).decode()

    return apply


def _history(change: Callable[[dict[str, Any]], Any]) -> Callable[[dict[str, Any]], Any]:
    return lambda body: change(body["chat_history"][0])


BODY_VIOLATIONS: list[tuple[str, Callable[[dict[str, Any]], Any]]] = [
    ("user_input", lambda b: b.pop("user_input")),
    ("intent_name", lambda b: b.update(intent_name="chat")),
    ("variables", lambda b: b.update(variables=orjson.loads(b["variables"]))),
    ("variables", lambda b: b.update(variables="{not json")),
    ("context_resolvers", lambda b: b.update(context_resolvers=None)),
    ("generate_suggested_questions", lambda b: b.update(generate_suggested_questions=0)),
    ("chat_history", lambda b: b.update(chat_history={})),
    ("conversation_id", lambda b: b.update(conversation_id="other")),
    ("current_turn", lambda b: b.update(current_turn=b["current_turn"] + 1)),
    ("current_turn", lambda b: b.update(current_turn=str(b["current_turn"]))),
    ("valid_turns", lambda b: b.update(valid_turns=list(range(1, 4)))),
    ("multi_media", lambda b: b.update(multi_media=None)),
    ("model_name", lambda b: b.update(model_name="")),
    ("is_preset", lambda b: b.update(is_preset=1)),
    ("provider", lambda b: b.update(provider="openai")),
    ("messages", lambda b: b.update(messages=[])),
    ("last_llm_response_info", lambda b: b.pop("last_llm_response_info")),
    ("last_llm_response_info.turn", lambda b: b["last_llm_response_info"].update(turn=True)),
    ("last_llm_response_info.response", lambda b: b["last_llm_response_info"].update(response="")),
    ("chat_history[0].status", _history(lambda h: h.update(status="error"))),
    ("chat_history[0].role", _history(lambda h: h.update(role="tool"))),
    ("chat_history[0].content", _history(lambda h: h.update(content=[{"text": "x"}]))),
    ("chat_history[0].name", _history(lambda h: h.update(name="x"))),
    ("chat_history[0].session_id", _history(lambda h: h.pop("session_id"))),
    ("chat_history[0].session_id", _history(lambda h: h.update(session_id="x"))),
    ("variables.version_code", _variables(lambda v: v.update(version_code=1))),
    ("variables.version_code", _variables(lambda v: v.update(version_code=VERSION_CODE))),
    ("variables.input", _variables(lambda v: v.update(input="other"))),
    ("variables.raw_input", _variables(lambda v: v.pop("raw_input"))),
    ("variables.last_turn_session", _variables(lambda v: v.update(last_turn_session=""))),
    ("variables.locale", _variables(lambda v: v.update(locale="fr"))),
    ("variables.system_type", _variables(lambda v: v.update(system_type="Plan9"))),
    ("variables.is_command", _variables(lambda v: v.update(is_command="false"))),
    ("variables.brand", _variables(lambda v: v.update(brand="VS Code"))),
]


@pytest.mark.parametrize(("field", "change"), BODY_VIOLATIONS, ids=[f for f, _ in BODY_VIOLATIONS])
def test_invalid_chat_body_is_400_naming_the_field(
    sim: SimulatedTrae,
    client: httpx.Client,
    token: str,
    field: str,
    change: Callable[[dict[str, Any]], Any],
) -> None:
    """Each violation of the §5 body shape is HTTP 400 with a body naming the field."""
    body = copy.deepcopy(chat_body([("user", "a"), ("assistant", "b"), ("user", "c")]))
    change(body)
    response = client.post(CHAT, headers=ide_headers(sim, token), json=body)
    assert response.status_code == 400, response.text
    assert response.json()["field"] == field
    assert sim.control.stats()["body_rejections"] == 1


def test_last_turn_session_must_be_empty_after_user(
    sim: SimulatedTrae, client: httpx.Client, token: str
) -> None:
    """When the last history item is not an assistant, last_turn_session must be empty."""
    body = chat_body([("user", "a"), ("user", "b")])
    assert client.post(CHAT, headers=ide_headers(sim, token), json=body).status_code == 200
    _variables(lambda v: v.update(last_turn_session=SESSION))(body)
    response = client.post(CHAT, headers=ide_headers(sim, token), json=body)
    assert response.json()["field"] == "variables.last_turn_session"


def test_unknown_model_is_4023_in_stream(
    sim: SimulatedTrae, client: httpx.Client, token: str
) -> None:
    """An unknown model_name gets HTTP 200 with a single error event code 4023."""
    response = chat(client, sim, token, "hi", model="gpt-9")
    assert response.status_code == 200
    assert parse_sse(response.text) == [("error", {"code": 4023, "message": "model not found"})]


def test_stale_version_is_4120_in_stream(
    sim: SimulatedTrae, client: httpx.Client, token: str
) -> None:
    """Below min_version_code the chat stream is one error event 4120 with an empty message."""
    sim.control.configure(min_version_code=int(VERSION_CODE) + 1)
    response = chat(client, sim, token, "hi")
    assert parse_sse(response.text) == [("error", {"code": 4120, "message": ""})]


def test_reasoning_model_streams_reasoning_first(
    sim: SimulatedTrae, client: httpx.Client, token: str
) -> None:
    """deepseek-R1 streams reasoning_content deltas with empty responses before the answer."""
    events = parse_sse(chat(client, sim, token, "why", model="deepseek-R1").text)
    outputs = [data for name, data in events if name == "output"]
    reasoning = "".join(o["reasoning_content"] for o in outputs)
    assert reasoning == "Let me think about why."
    first_answer = next(i for i, o in enumerate(outputs) if o["response"])
    assert all(o["response"] == "" for o in outputs[:first_answer])
    assert all(o["reasoning_content"] == "" for o in outputs[first_answer:])
    assert "reasoning_tokens" in dict(events)["token_usage"]


# -- directives --------------------------------------------------------------------------------


def test_queue_directive(sim: SimulatedTrae, client: httpx.Client, token: str) -> None:
    """[sim:queue 3] sends queue_begin, positions 3..1 0.2 s apart, queue_end, then a reply."""
    started = time.monotonic()
    events = parse_sse(chat(client, sim, token, "[sim:queue 3] hi").text)
    assert time.monotonic() - started >= 0.6
    queued = [data["position"] for name, data in events if name == "request_wait_in_queue"]
    assert queued == [3, 2, 1]
    assert names(events)[0] == "queue_begin"
    assert names(events).index("queue_end") < names(events).index("output")
    assert answer(events) == "Hello! You said: hi (turn 0)"


@pytest.mark.slow
def test_wait_and_slow_directives(sim: SimulatedTrae, client: httpx.Client, token: str) -> None:
    """[sim:wait S] delays the first event and [sim:slow MS] spaces the output events."""
    with client.stream(
        "POST",
        CHAT,
        headers=ide_headers(sim, token),
        json=chat_body([("user", "[sim:wait 0.3] [sim:slow 100] [sim:long 3]")]),
    ) as response:
        started = time.monotonic()
        chunks = [(time.monotonic() - started, chunk) for chunk in response.iter_text()]
    assert chunks[0][0] >= 0.25
    assert chunks[-1][0] >= 0.25 + 0.3 - 0.05


def test_long_directive(sim: SimulatedTrae, client: httpx.Client, token: str) -> None:
    """[sim:long N] answers exactly N output chunks."""
    events = parse_sse(chat(client, sim, token, "[sim:long 40]").text)
    assert names(events).count("output") == 40
    assert answer(events).split() == [f"word{i}" for i in range(1, 41)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "[sim:error 4011]",
            [("error", {"code": 4011, "message": "request rate limited, please try again later"})],
        ),
        (
            "[sim:error 1005] [sim:msg-variant]",
            [("error", {"code": 1005, "msg": ENTITLEMENT})],
        ),
    ],
)
def test_error_directive(
    sim: SimulatedTrae, client: httpx.Client, token: str, text: str, expected: Any
) -> None:
    """[sim:error CODE] is a 200 stream holding only one error event (msg-variant uses msg)."""
    response = chat(client, sim, token, text)
    assert response.status_code == 200
    assert parse_sse(response.text) == expected


def test_midstream_error_directive(sim: SimulatedTrae, client: httpx.Client, token: str) -> None:
    """[sim:midstream-error CODE] sends some output, then the error, and no done."""
    events = parse_sse(chat(client, sim, token, "[sim:midstream-error 5001] [sim:long 10]").text)
    assert names(events)[0] == "metadata"
    assert 1 <= names(events).count("output") < 10
    assert events[-1] == ("error", {"code": 5001, "message": "internal error"})
    assert "done" not in names(events)


@pytest.mark.parametrize(
    ("text", "check"),
    [
        ("[sim:nodone]", lambda ev: "done" not in names(ev) and "token_usage" in names(ev)),
        ("[sim:nousage]", lambda ev: "token_usage" not in names(ev) and names(ev)[-1] == "done"),
        ("[sim:finish length]", lambda ev: ev[-1] == ("done", {"finish_reason": "length"})),
        ("[sim:done-empty]", lambda ev: ev[-1] == ("done", {})),
        ("[sim:frobnicate]", lambda ev: ev[0][1]["code"] == 4001 and len(ev) == 1),
        ("[sim:http 42]", lambda ev: "[sim:http 42]" in ev[0][1]["message"]),
        ("[sim:wait nan]", lambda ev: ev[0][0] == "error"),
        ("[sim:nodone] [sim:nousage] x", lambda ev: names(ev)[-1] == "output"),
    ],
)
def test_ending_directives(
    sim: SimulatedTrae,
    client: httpx.Client,
    token: str,
    text: str,
    check: Callable[[list[tuple[str, Any]]], bool],
) -> None:
    """nodone, nousage, finish, done-empty and unknown directives shape the end of the stream."""
    assert check(parse_sse(chat(client, sim, token, text).text))


def test_compact_directive(sim: SimulatedTrae, client: httpx.Client, token: str) -> None:
    """[sim:compact] uses space-less fields, id and comment lines and no blank lines."""
    text = chat(client, sim, token, "[sim:compact] hi").text
    assert text.startswith(": ")
    assert "\n\n" not in text
    assert "event:output\ndata:{" in text
    assert "\nid:2\n" in text
    events = parse_sse(text)
    assert answer(events) == "Hello! You said: hi (turn 0)"
    assert names(events)[-1] == "done"


def test_noise_directive(sim: SimulatedTrae, client: httpx.Client, token: str) -> None:
    """[sim:noise] adds ignorable events, progress_notice carrying a bare JSON string."""
    events = parse_sse(chat(client, sim, token, "[sim:noise] hi").text)
    assert {"timing_cost", "extra_info", "heartbeat", "ping", "progress_notice"} <= set(
        names(events)
    )
    assert isinstance(dict(events)["progress_notice"], str)
    assert answer(events) == "Hello! You said: hi (turn 0)"


def test_http_directive(sim: SimulatedTrae, client: httpx.Client, token: str) -> None:
    """[sim:http 502] answers HTTP 502 with an HTML body."""
    response = chat(client, sim, token, "[sim:http 502]")
    assert response.status_code == 502
    assert response.text.startswith("<html>")


def test_reset_directive(sim: SimulatedTrae, client: httpx.Client, token: str) -> None:
    """[sim:reset] drops the connection before any byte: the client sees a transport error."""
    with pytest.raises(httpx.TransportError):
        chat(client, sim, token, "[sim:reset]")
    assert chat(client, sim, token, "still alive").status_code == 200


# -- admin API ---------------------------------------------------------------------------------


def test_script_is_sent_verbatim(sim: SimulatedTrae, client: httpx.Client, token: str) -> None:
    """A scripted event list answers the next valid chat only, raw data included."""
    sim.control.script(
        [
            {"event": "output", "data": {"response": "A", "reasoning_content": ""}},
            {"event": "queue_position", "data": {"position": 2}, "delay": 0.05},
            {"event": "progress_notice", "raw": "not json at all"},
            {"event": "done", "data": {}},
        ]
    )
    text = chat(client, sim, token, "[sim:error 4011]").text
    assert text == (
        'event: output\ndata: {"response":"A","reasoning_content":""}\n\n'
        'event: queue_position\ndata: {"position":2}\n\n'
        "event: progress_notice\ndata: not json at all\n\n"
        "event: done\ndata: {}\n\n"
    )
    assert answer(parse_sse(chat(client, sim, token, "hi").text)).startswith("Hello!")


def test_fail_next_chats(sim: SimulatedTrae, client: httpx.Client, token: str) -> None:
    """fail_next_chats makes exactly the next N chats answer the configured HTML status."""
    sim.control.configure(fail_next_chats=2, fail_status=503)
    statuses = [chat(client, sim, token, "hi").status_code for _ in range(3)]
    assert statuses == [503, 503, 200]
    assert sim.control.stats()["chats_failed_on_purpose"] == 2


def test_config_rejects_unknown_keys(sim: SimulatedTrae, client: httpx.Client) -> None:
    """POST /_sim/config with an unknown key is 400 and changes nothing."""
    response = client.post("/_sim/config", json={"acces_ttl": 5})
    assert response.status_code == 400
    assert "acces_ttl" in response.json()["error"]


def test_reset_counters(sim: SimulatedTrae, client: httpx.Client, token: str) -> None:
    """reset_counters zeroes the counters but keeps tokens and switches."""
    sim.control.configure(exchange_delay=0.01)
    client.post(EXCHANGE, json=exchange_body(sim, sim.account.refresh_token))
    chat(client, sim, token, "hi")
    stats = sim.control.reset_counters()
    assert stats["chats"] == stats["completed_streams"] == stats["exchanges_ok"] == 0
    assert stats["current_refresh_token"] != sim.account.refresh_token
    assert stats["exchange_delay"] == 0.01
    assert chat(client, sim, token, "hi").status_code == 200


def test_full_reset(sim: SimulatedTrae, client: httpx.Client, token: str) -> None:
    """reset restores the initial refresh token and forgets access tokens and switches."""
    client.post(EXCHANGE, json=exchange_body(sim, sim.account.refresh_token))
    sim.control.configure(fail_next_chats=1, exchange_delay=0.01)
    stats = sim.control.reset()
    assert stats["current_refresh_token"] == sim.account.refresh_token
    assert (stats["fail_next_chats"], stats["exchange_delay"], stats["exchanges_ok"]) == (0, 0, 0)
    assert chat(client, sim, token, "hi").status_code == 401
    assert client.post(EXCHANGE, json=exchange_body(sim, sim.account.refresh_token)).is_success


def test_client_disconnect_is_counted_promptly(sim: SimulatedTrae, token: str) -> None:
    """Closing the connection mid-stream cancels the stream and counts it within a second."""
    body = chat_body([("user", "[sim:slow 2000] [sim:long 5]")])
    with httpx.Client(base_url=sim.url) as http:
        with http.stream("POST", CHAT, headers=ide_headers(sim, token), json=body) as response:
            lines = response.iter_lines()  # dropping this iterator would close the connection
            assert next(lines) == "event: metadata"
            assert sim.control.stats()["active_streams"] == 1
        closed = time.monotonic()
    assert wait_for(lambda: sim.control.stats()["cancelled_streams"] == 1)
    assert time.monotonic() - closed < 1.0
    stats = sim.control.stats()
    assert (stats["active_streams"], stats["completed_streams"]) == (0, 0)


# -- runners -----------------------------------------------------------------------------------


async def test_serve_simulated_trae_on_a_loop() -> None:
    """serve_simulated_trae serves on the caller's loop and stops cleanly when cancelled."""
    sock = bind_socket()
    port = sock.getsockname()[1]
    sock.close()
    task = asyncio.ensure_future(serve_simulated_trae("127.0.0.1", port, SimState()))
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        for _ in range(100):
            try:
                response = await http.get("/_sim/stats")
                break
            except httpx.ConnectError:
                await asyncio.sleep(0.02)
        assert response.json()["chats"] == 0
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.slow
def test_module_prints_credentials() -> None:
    """python -m trae2api.testing prints KEY=value credentials and serves them."""
    command = [sys.executable, "-m", "trae2api.testing", "--port", "0", "--access-ttl", "60"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        lines = dict(process.stdout.readline().strip().split("=", 1) for _ in range(6))
        assert lines["CLIENT_ID"] == "ono9krqynydwx5"
        assert lines["BASE_URL"] == lines["REFRESH_TOKEN_URL"]
        body = {
            "ClientID": lines["CLIENT_ID"],
            "RefreshToken": lines["REFRESH_TOKEN"],
            "ClientSecret": "-",
            "UserID": lines["USER_ID"],
        }
        ok = wait_for(lambda: _try_exchange(lines["REFRESH_TOKEN_URL"], body), timeout=5.0)
        assert ok
    finally:
        process.terminate()
        process.wait(10)
        if process.stdout is not None:
            process.stdout.close()


def _try_exchange(url: str, body: dict[str, Any]) -> bool:
    try:
        return httpx.post(url + EXCHANGE, json=body).status_code == 200
    except httpx.ConnectError:
        return False
