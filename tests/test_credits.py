"""Credits (dialect §7): notify_usage and the balance endpoint on /status, /metrics and the log."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
from structlog.testing import capture_logs

from conftest import Gateway, wait_for
from trae2api.errors import UpstreamUnavailable
from trae2api.status.credits import Credits, poll_balance
from trae2api.status.metrics import Metrics
from trae2api.testing import SimulatedTrae
from trae2api.upstream.balance import balance_hosts, parse_balance
from trae2api.wire.events import CreditsReport, interpret
from trae2api.wire.sse import SSEEvent

pytestmark = pytest.mark.timeout(60)


def pack(limit: Any, used: Any) -> dict[str, Any]:
    return {
        "entitlement_base_info": {"quota": {"credits_limit": limit}},
        "usage": {"credits_amount": used},
    }


@pytest.mark.parametrize(
    ("payload", "remaining"),
    [
        ({"user_entitlement_pack_list": [pack(600, 100.5), pack(400, 0)]}, 899.5),
        ({"user_entitlement_pack_list": []}, 0.0),
        ({"data": {"user_entitlement_pack_list": [pack("300", "20")]}}, 280.0),
        ({"user_entitlement_pack_list": [pack(100, None), "junk", {"usage": {}}]}, 100.0),
        ({"user_entitlement_pack_list": [pack(True, 1)]}, -1.0),
        ({"code": 1001, "message": "no"}, None),
        ([1, 2], None),
        (None, None),
    ],
)
def test_balance_is_limits_minus_usage(payload: Any, remaining: float | None) -> None:
    """The balance sums every pack's credits_limit minus its usage.credits_amount."""
    assert parse_balance(payload) == remaining


@pytest.mark.parametrize(
    ("urls", "hosts"),
    [
        ("https://api.trae.ai", ["https://api.trae.ai"]),
        ("https://api.trae.com.cn", ["https://api.trae.com.cn", "https://api.trae.cn"]),
        (
            "https://api.trae.com.cn,https://api.trae.cn/",
            ["https://api.trae.com.cn", "https://api.trae.cn"],
        ),
    ],
)
def test_balance_hosts_follow_the_exchange_hosts(urls: str, hosts: list[str]) -> None:
    """The balance is asked of REFRESH_TOKEN_URL's hosts, CN's sibling included once."""
    assert balance_hosts(urls) == hosts


@pytest.mark.parametrize(
    ("data", "report"),
    [
        (
            '{"billing_mode": "credits", "cn_credits_remain_info": '
            '{"ide_credits": 12.5, "work_credits": 200}}',
            CreditsReport(12.5, 200.0, "credits"),
        ),
        ('{"cn_credits_remain_info": {"ide_credits": "7"}}', CreditsReport(7.0, None, None)),
        (
            '"{\\"cn_credits_remain_info\\": {\\"work_credits\\": 3}}"',
            CreditsReport(None, 3.0, None),
        ),
        ('{"billing_mode": "credits"}', None),
        ('{"cn_credits_remain_info": {"ide_credits": true}}', None),
        ('{"cn_credits_remain_info": {"ide_credits": "nan"}}', None),
        ("not json", None),
    ],
)
def test_notify_usage_is_read(data: str, report: CreditsReport | None) -> None:
    """notify_usage becomes a credits report; events without numbers carry nothing."""
    assert interpret(SSEEvent("notify_usage", data)) == report


def test_low_credits_warn_once_per_fall() -> None:
    """Falling under the threshold warns once; rising above it re-arms the warning."""
    now = [1_800_000_000.0]
    credits = Credits(low_threshold=10, metrics=Metrics(), clock=lambda: now[0])
    with capture_logs() as logs:
        for left in (12, 9, 8, 15, 5):
            credits.observe_report(left, 100, "credits")
    assert [entry["ide_credits"] for entry in logs if entry["event"] == "trae_credits_low"] == [
        9,
        5,
    ]
    assert (
        credits.left_note()
        == "5 ide credits were left at the last report (notify_usage, 2027-01-15T08:00:00Z)"
    )


def test_recent_report_wins_over_the_balance() -> None:
    """The balance (all packs) stands for ide_credits only when no chat reported lately."""
    now = [1000.0]
    metrics = Metrics()
    credits = Credits(low_threshold=0, metrics=metrics, clock=lambda: now[0])
    credits.observe_balance(500)
    assert (credits.ide_credits, credits.source) == (500, "balance")
    credits.observe_report(90, 20, "credits")
    credits.observe_balance(480)
    assert (credits.ide_credits, credits.balance, credits.source) == (90, 480, "notify_usage")
    now[0] += 7200
    credits.observe_balance(470)
    assert (credits.ide_credits, credits.source) == (470, "balance")
    assert b'trae2api_credits_remaining{kind="ide"} 470.0' in metrics.render()


def test_balance_failures_are_logged_once_and_never_raised() -> None:
    """A failing balance query logs one line until it works again, then records the balance."""
    credits = Credits(low_threshold=0)
    calls: list[int] = []
    enough = asyncio.Event()

    async def fetch() -> float:
        calls.append(1)
        if len(calls) >= 5:
            enough.set()
        if len(calls) < 4:
            raise UpstreamUnavailable("the account host is down")
        return 42.0

    async def run() -> None:
        task = asyncio.create_task(poll_balance(credits, fetch, 0.001))
        await enough.wait()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    with capture_logs() as logs:
        asyncio.run(run())
    assert [entry["event"] for entry in logs] == ["trae_balance_unavailable"]
    assert credits.balance == 42.0


@pytest.fixture
def agent(start_gateway: Any) -> Gateway:
    return start_gateway(upstream_dialect="agent")  # type: ignore[no-any-return]


def credits_of(gateway: Gateway) -> dict[str, Any]:
    with gateway.http() as http:
        return http.get("/status").json()["credits"]  # type: ignore[no-any-return]


@pytest.mark.slow
def test_balance_is_asked_at_start_up(agent: Gateway, sim: SimulatedTrae) -> None:
    """Before any chat, /status shows the account host's balance."""
    assert wait_for(lambda: credits_of(agent)["balance"] is not None)
    credits = credits_of(agent)
    assert credits["balance"] == 1000
    assert (credits["ide_credits"], credits["source"]) == (1000, "balance")
    assert credits["updated_at"].endswith("Z")
    assert sim.control.stats()["balance_checks"] >= 1


@pytest.mark.slow
@pytest.mark.parametrize("stream", [False, True])
def test_chat_reports_credits(agent: Gateway, sim: SimulatedTrae, stream: bool) -> None:
    """After a chat, /status and /metrics show the credits its notify_usage reported."""
    with agent.client() as client:
        reply = client.chat.completions.create(
            model="glm-5.2", messages=[{"role": "user", "content": "hi"}], stream=stream
        )
        if stream:
            list(reply)  # type: ignore[arg-type]
    credits = credits_of(agent)
    assert (credits["ide_credits"], credits["work_credits"]) == (999, 200)
    assert (credits["source"], credits["billing_mode"]) == ("notify_usage", "credits")
    with agent.http() as http:
        metrics = http.get("/metrics").text
    assert 'trae2api_credits_remaining{kind="ide"} 999.0' in metrics
    assert 'trae2api_credits_remaining{kind="work"} 200.0' in metrics


@pytest.mark.slow
def test_low_credits_are_logged(start_gateway: Any, sim: SimulatedTrae) -> None:
    """Credits falling under CREDITS_LOW_THRESHOLD give one warning naming the count."""
    gateway = start_gateway(upstream_dialect="agent", credits_low_threshold=999.5)
    assert wait_for(lambda: credits_of(gateway)["balance"] is not None)
    with capture_logs() as logs, gateway.client() as client:
        for text in ("one", "two"):
            client.chat.completions.create(
                model="glm-5.2", messages=[{"role": "user", "content": text}]
            )
    warnings = [entry for entry in logs if entry["event"] == "trae_credits_low"]
    assert [(entry["ide_credits"], entry["log_level"]) for entry in warnings] == [(999, "warning")]


@pytest.mark.slow
def test_balance_query_can_be_turned_off(start_gateway: Any, sim: SimulatedTrae) -> None:
    """CREDITS_REFRESH_INTERVAL=0 never asks the account host."""
    gateway = start_gateway(upstream_dialect="agent", credits_refresh_interval=0)
    with gateway.client() as client:
        client.models.list()
    assert sim.control.stats()["balance_checks"] == 0
    assert credits_of(gateway)["source"] is None
