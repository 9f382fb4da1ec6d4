"""The simulated upstream's dialect availability modes (dialect §7) and its command line."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

import httpx
import orjson
import pytest

import simkit
from simkit import (
    AGENT_CHAT,
    CATALOGUE,
    CHAT,
    agent_chat_body,
    agent_headers,
    catalogue_body,
    chat_body,
    ide_headers,
    parse_sse,
)
from trae2api.testing import SimState, SimulatedTrae

shared_sim, sim, token = simkit.sim_fixtures()
shared_client, client = simkit.client_fixtures()
MODEL_LIST = "/api/ide/v1/model_list?type=chat"


def legacy(client: httpx.Client, sim: SimulatedTrae, token: str, model: str) -> list[Any]:
    body = chat_body([("user", "hi")], model=model)
    response = client.post(CHAT, headers=ide_headers(sim, token), json=body)
    assert response.status_code == 200
    return parse_sse(response.text)


def agent_statuses(client: httpx.Client, headers: dict[str, str]) -> tuple[int, int]:
    listing = client.post(CATALOGUE, headers=headers, json=catalogue_body())
    chat = client.post(AGENT_CHAT, headers=headers, content=orjson.dumps(agent_chat_body("hi")))
    return listing.status_code, chat.status_code


def test_agent_endpoints_can_be_absent(
    sim: SimulatedTrae, client: httpx.Client, token: str
) -> None:
    """agent_endpoints=false makes both agent endpoints 404 pages while legacy keeps working."""
    assert agent_statuses(client, agent_headers(sim, token)) == (200, 200)
    sim.control.configure(agent_endpoints=False)
    assert agent_statuses(client, agent_headers(sim, token)) == (404, 404)
    assert agent_statuses(client, {}) == (404, 404)
    response = client.post(CATALOGUE, headers=agent_headers(sim, token), json=catalogue_body())
    assert response.headers["content-type"].startswith("text/html")
    assert client.get(MODEL_LIST, headers=ide_headers(sim, token)).status_code == 200
    assert legacy(client, sim, token, "gpt-4o")[-1][0] == "done"
    assert sim.control.stats()["agent_endpoints"] is False


@pytest.mark.parametrize(
    ("mode", "model", "code"),
    [
        ("ok", "gpt-4o", None),
        ("busy", "gpt-4o", 3003),
        ("busy", "glm-5.2", 3003),
        ("dying", "gpt-4o", 3003),
        ("dying", "glm-5.2", 4023),
        ("dying", "glm-5.3", 4023),
        ("dying", "no-such-model", 3003),
    ],
)
def test_legacy_chat_modes(
    sim: SimulatedTrae, client: httpx.Client, token: str, mode: str, model: str, code: int | None
) -> None:
    """busy answers 3003 to everything; dying 4023 to current names and 3003 to the rest."""
    sim.control.configure(legacy_chat=mode)
    events = legacy(client, sim, token, model)
    if code is None:
        assert events[-1][0] == "done"
    else:
        assert [(n, d["code"]) for n, d in events] == [("error", code)]
    assert agent_statuses(client, agent_headers(sim, token)) == (200, 200)


@pytest.mark.parametrize(
    "change", [{"legacy_chat": "gone"}, {"agent_endpoints": "no"}, {"table_code_floor": "x"}]
)
def test_bad_modes_are_refused(sim: SimulatedTrae, change: dict[str, Any]) -> None:
    """An unknown legacy_chat mode or a non-boolean agent_endpoints is a 400."""
    with pytest.raises(httpx.HTTPStatusError):
        sim.control.configure(**change)


def test_initial_modes_survive_reset() -> None:
    """Modes given to SimState are where reset() returns to."""
    state = SimState(agent_endpoints=False, legacy_chat="dying", ide_credits=3)
    state.configure(agent_endpoints=True, legacy_chat="ok", ide_credits=9)
    state.reset()
    stats = state.stats()
    assert (stats["agent_endpoints"], stats["legacy_chat"], stats["ide_credits"]) == (
        False,
        "dying",
        3,
    )
    with pytest.raises(ValueError, match="legacy_chat"):
        SimState(legacy_chat="sometimes")


def test_command_line_switches() -> None:
    """python -m trae2api.testing takes the availability, table and credit switches."""
    command = [
        *(sys.executable, "-m", "trae2api.testing", "--port", "0"),
        *("--no-agent-endpoints", "--legacy-chat", "dying"),
        *("--ide-credits", "5", "--table-code-floor", "20260901"),
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        lines = dict(process.stdout.readline().strip().split("=", 1) for _ in range(6))
        stats = _stats(lines["BASE_URL"])
        assert stats["agent_endpoints"] is False
        assert stats["legacy_chat"] == "dying"
        assert stats["ide_credits"] == 5
        assert stats["table_code_floor"] == 20260901
    finally:
        process.terminate()
        process.wait(10)
        if process.stdout is not None:
            process.stdout.close()


def _stats(url: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while True:
        try:
            return httpx.get(f"{url}/_sim/stats").json()  # type: ignore[no-any-return]
        except httpx.ConnectError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_legacy_and_exchange_routes_can_be_absent(
    sim: SimulatedTrae, client: httpx.Client, token: str
) -> None:
    """legacy_endpoints=false and exchange_endpoint=false turn those routes into 404 pages."""
    sim.control.configure(legacy_endpoints=False, exchange_endpoint=False)
    assert client.get(MODEL_LIST, headers=ide_headers(sim, token)).status_code == 404
    body = chat_body([("user", "hi")])
    assert client.post(CHAT, headers=ide_headers(sim, token), json=body).status_code == 404
    exchange = client.post("/cloudide/api/v3/trae/oauth/ExchangeToken", json={})
    assert exchange.status_code == 404
    assert agent_statuses(client, agent_headers(sim, token)) == (200, 200)
    stats = sim.control.stats()
    assert (stats["legacy_endpoints"], stats["exchange_endpoint"], stats["chats"]) == (
        False,
        False,
        1,
    )
