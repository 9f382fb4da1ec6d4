"""The simulated upstream's credits (dialect §7): notify_usage, 4008 at zero, the balance call."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

import simkit
from simkit import AGENT_CHAT, agent_chat_body, agent_headers, parse_sse
from trae2api.testing import SimulatedTrae
from trae2api.testing.credit_ledger import pack_list

shared_sim, sim, token = simkit.sim_fixtures()
shared_client, client = simkit.client_fixtures()
BALANCE = "/trae/api/v2/pay/ide_user_ent_usage"


def chat(client: httpx.Client, sim: SimulatedTrae, token: str, text: str) -> list[tuple[str, Any]]:
    body = orjson.dumps(agent_chat_body(text))
    return parse_sse(client.post(AGENT_CHAT, headers=agent_headers(sim, token), content=body).text)


def remain(events: list[tuple[str, Any]]) -> dict[str, int]:
    notify = dict(events)["notify_usage"]
    assert notify["billing_mode"] == "credits"
    return notify["cn_credits_remain_info"]  # type: ignore[no-any-return]


def balance(client: httpx.Client, token: str) -> int:
    response = client.post(
        BALANCE, headers={"authorization": f"Cloud-IDE-JWT {token}"}, json={"require_usage": True}
    )
    assert response.status_code == 200
    packs = response.json()["user_entitlement_pack_list"]
    limit = sum(p["entitlement_base_info"]["quota"]["credits_limit"] for p in packs)
    return limit - sum(p["usage"]["credits_amount"] for p in packs)


@pytest.mark.parametrize(
    ("limit", "remaining", "limits", "used"),
    [
        (1000, 1000, [600, 400], [0, 0]),
        (1000, 700, [600, 400], [300, 0]),
        (1000, 100, [600, 400], [600, 300]),
        (1000, 0, [600, 400], [600, 400]),
        (5, 5, [3, 2], [0, 0]),
    ],
)
def test_pack_list(limit: int, remaining: int, limits: list[int], used: list[int]) -> None:
    """Two packs split 3/5 and 2/5, the first used up first; limits minus usage is what remains."""
    packs = pack_list(limit, remaining)
    assert [p["entitlement_base_info"]["quota"]["credits_limit"] for p in packs] == limits
    assert [p["usage"]["credits_amount"] for p in packs] == used


def test_notify_usage_counts_down(sim: SimulatedTrae, client: httpx.Client, token: str) -> None:
    """Each chat ends with notify_usage in the §7 shape, ide_credits one lower each time."""
    first = chat(client, sim, token, "a")
    assert dict(first)["notify_usage"] == {
        "billing_mode": "credits",
        "cn_credits_remain_info": {"ide_credits": 999, "work_credits": 200},
    }
    assert remain(chat(client, sim, token, "b"))["ide_credits"] == 998
    assert [n for n, _ in first][-2:] == ["notify_usage", "done"]


def test_failed_chats_cost_nothing(sim: SimulatedTrae, client: httpx.Client, token: str) -> None:
    """An error answer carries no notify_usage and leaves the balance alone."""
    assert chat(client, sim, token, "[sim:error 4011]")[0][0] == "error"
    assert chat(client, sim, token, "[sim:midstream-error 5001] [sim:long 6]")[-1][0] == "error"
    assert sim.control.stats()["ide_credits"] == 1000


def test_zero_credits_is_4008(sim: SimulatedTrae, client: httpx.Client, token: str) -> None:
    """With ide_credits at 0 every agent chat is in-stream 4008 saying the credits ran out."""
    sim.control.configure(ide_credits=2, work_credits=7, credits_per_chat=1)
    assert remain(chat(client, sim, token, "a")) == {"ide_credits": 1, "work_credits": 7}
    assert remain(chat(client, sim, token, "b")) == {"ide_credits": 0, "work_credits": 7}
    events = chat(client, sim, token, "c")
    assert [(n, d["code"]) for n, d in events] == [("error", 4008)]
    assert "credits exhausted" in events[0][1]["message"]
    assert balance(client, token) == 0
    sim.control.configure(ide_credits=5)
    assert remain(chat(client, sim, token, "d"))["ide_credits"] == 4


def test_balance_matches_notify_usage(sim: SimulatedTrae, client: httpx.Client, token: str) -> None:
    """The balance endpoint's limits minus usage equal the ide_credits notify_usage reports."""
    assert balance(client, token) == 1000
    sim.control.configure(credits_per_chat=250)
    left = remain(chat(client, sim, token, "a"))["ide_credits"]
    left = remain(chat(client, sim, token, "b"))["ide_credits"]
    left = remain(chat(client, sim, token, "c"))["ide_credits"]
    assert left == 250
    assert balance(client, token) == 250
    sim.control.configure(ide_credits=5000)
    assert balance(client, token) == 5000
    assert sim.control.stats()["balance_checks"] == 3


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"authorization": "Bearer {token}"}, 401),
        ({"authorization": "Cloud-IDE-JWT nope"}, 401),
        ({"authorization": "Cloud-IDE-JWT {token}", "x-ide-token": "other"}, 401),
        ({"authorization": "Cloud-IDE-JWT {token}", "x-cloudide-token": "{token}"}, 200),
    ],
)
def test_balance_needs_the_token(
    sim: SimulatedTrae, client: httpx.Client, token: str, headers: dict[str, str], status: int
) -> None:
    """The balance call is authenticated like the agent calls."""
    filled = {k: v.format(token=token) for k, v in headers.items()}
    response = client.post(BALANCE, headers=filled, json={"require_usage": True})
    assert response.status_code == status
    if status == 401:
        assert response.json()["code"] == 1001


@pytest.mark.parametrize(
    "body", [{}, {"require_usage": False}, {"require_usage": 1}, {"require_usage": True, "x": 1}]
)
def test_balance_body_is_strict(
    sim: SimulatedTrae, client: httpx.Client, token: str, body: dict[str, Any]
) -> None:
    """Only {"require_usage": true} is accepted."""
    headers = {"authorization": f"Cloud-IDE-JWT {token}"}
    response = client.post(BALANCE, headers=headers, json=body)
    assert response.status_code == 400
    assert response.json()["field"] == "require_usage"


def test_bad_credit_values_are_refused(sim: SimulatedTrae) -> None:
    """Negative or non-numeric credit switches are a 400 from the admin API."""
    for change in ({"ide_credits": -1}, {"credits_per_chat": "many"}):
        with pytest.raises(httpx.HTTPStatusError):
            sim.control.configure(**change)
